"""Start-up and big tables (issue 12): a command loads only what it uses, the
root's help builds no group, and the line-by-line renderer for big tables
draws exactly what rich draws. Speed itself is measured by
benchmarks/startup.py, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpctl.cli import COMMANDS, GROUPS, app, output

# What `account list --json` must not load: the other groups, the hashers,
# the table renderer, the writer library, the default-path lookup (--db is
# given) and the modules of other use cases.
NOT_FOR_ACCOUNT_LIST = [
    *(f"smtpctl.cli.{m}" for m in ("agency", "apply", "audit", "domain", "export", "imap", "password_input",
                                   "pricing", "serve", "settings", "store", "usage", "user")),
    *(f"smtpctl.core.{m}" for m in ("adopt", "billing", "credits", "export", "imap", "ingest", "passwords",
                                    "provisioning", "usage")),
    "smtpctl.servers", "rich", "sqlite_utils", "platformdirs", "passlib", "argon2", "hashlib", "secrets", "pydantic",
]

_PROBE = """
import json, sys
args, fast_rows = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["smtpctl", *args]
if fast_rows is not None:
    import smtpctl.cli.output
    smtpctl.cli.output.FAST_ROWS = fast_rows
from smtpctl.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def modules_after(*args: str, fast_rows: int | None = None) -> tuple[int, str, set[str]]:
    """Run smtpctl ``args`` in a fresh interpreter (``fast_rows`` replacing
    ``output.FAST_ROWS``); its exit code, stdout and every module loaded by
    the end of the run."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(fast_rows)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    report = json.loads(proc.stderr.rsplit("\nMODULES ", 1)[1])
    return report["code"], proc.stdout, set(report["modules"])


def loaded(modules: set[str], names: list[str]) -> list[str]:
    return sorted(name for name in names if any(m == name or m.startswith(name + ".") for m in modules))


def test_account_list_json_loads_only_what_it_uses(isolated_store, run):
    run("store", "set", "timezone", "UTC", check_rc=0)  # a write creates the store: the probe reads it
    code, stdout, modules = modules_after("--db", str(isolated_store), "account", "list", "--json")
    assert (code, stdout) == (0, "[]\n")
    assert "smtpctl.cli.account" in modules and "smtpctl.core.services" in modules
    assert loaded(modules, NOT_FOR_ACCOUNT_LIST) == []


def test_root_help_builds_no_group():
    code, stdout, modules = modules_after("--help")
    assert code == 0
    for name in [*COMMANDS, *GROUPS]:
        assert f"\n│ {name} " in stdout, name
    assert loaded(modules, [f"smtpctl.cli.{m}" for m, _, _ in [*COMMANDS.values(), *GROUPS.values()]]) == []
    assert loaded(modules, ["smtpctl.core.services", "smtpctl.core.store", "sqlite3"]) == []


def test_version_builds_no_command():
    code, stdout, modules = modules_after("--version")
    assert (code, stdout) == (0, "smtpctl 0.1.0\n")
    assert [m for m in modules if m.startswith("smtpctl.cli.") and m not in (
        "smtpctl.cli.state", "smtpctl.cli.examples")] == []


def test_a_long_report_off_a_terminal_is_drawn_without_rich(run):
    run("agency", "add", "Acme Agency", check_rc=0)
    args = ("usage", "report", "--by", "day", "--since", "150d")
    code, stdout, modules = modules_after(*args)
    assert code == 0 and len(stdout.splitlines()) == 3 + 151 + 1  # title, header, rule; every day; the total
    # rich.cells measures the bar's blocks (~2 ms); the console and the table (~25 ms) stay out
    assert loaded(modules, ["rich.console", "rich.table", "rich.text"]) == []
    code, by_rich, modules = modules_after(*args, fast_rows=10**9)
    assert code == 0 and "rich" in modules
    assert stdout == by_rich


def test_a_group_builds_only_the_command_that_runs():
    code, stdout, modules = modules_after("imap", "list", "--json")
    assert code == 0 and json.loads(stdout)
    assert loaded(modules, ["smtpctl.cli.account", "smtpctl.cli.usage", "smtpctl.core.services"]) == []


def test_root_help_lines_are_the_commands_own_help():
    """The table the root's help is drawn from says what each command's
    own help says (its first paragraph), in the order typer lists them."""
    root = typer.main.get_command(app)
    assert list(root.commands) == [*COMMANDS, *GROUPS]
    for name, (_, _, line) in {**COMMANDS, **GROUPS}.items():
        command = root.commands[name]
        assert command.help.split("\n\n")[0] == line, name
        assert (command.short_help, command.hidden, command.deprecated) == (None, False, False), name
        assert not getattr(command, "rich_help_panel", None), name  # the default panel, "Commands"


def test_unknown_command_still_suggests(run):
    result = run("acount", "list")
    assert (result.returncode, result.stderr) == (2, "Error: No such command 'acount'. Did you mean 'account'?\n")
    result = run("account", "lst")
    assert (result.returncode, result.stderr) == (2, "Error: No such command 'lst'. Did you mean 'list'?\n")


# -- big tables -------------------------------------------------------------

def draw(capsys, monkeypatch, rows, columns, *, title=None, fast: bool, width: int = 200, env=None,
         drop=None) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(output, "FAST_ROWS", 0 if fast else 10**9)
    output.render_list(rows, columns, output="table", title=title, drop=drop)
    return capsys.readouterr().out


@pytest.fixture
def rich_rows(monkeypatch):
    """How many rows rich itself was given to draw, call by call."""
    drawn: list[int] = []
    real = output._rich_table

    def spy(texts, *args, **kwargs):
        drawn.append(len(texts[0]) if texts else 0)
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(output, "_rich_table", spy)
    return drawn


ROWS = [
    {"name": f"acct{i:03d}", "agency": "Acme Agency" if i % 2 else "Zeta", "emails": i * 37, "blocked": i % 3 == 0,
     "cost": Decimal("0.675") * i, "block_reason": "compliance review" if i == 3 else None, "bar": "█" * (i % 7),
     "note": "名前 wide" if i == 5 else ""}
    for i in range(12)
]
COLUMNS = [("name", "Account"), ("agency", "Agency"), ("emails", "Emails\nsent"), ("blocked", "Blocked"),
           ("cost", "Cost"), ("block_reason", "Why"), ("note", "Note"), ("bar", "█ = 5 emails")]


@pytest.mark.parametrize("width", [200, 80, 60, 30])
@pytest.mark.parametrize("title", [None, "Usage 2026-11-01 to 2026-11-28 (UTC) at $0.675/1,000", "A [b]title[/b]"])
def test_plain_table_is_what_rich_draws(capsys, monkeypatch, width, title):
    fast = draw(capsys, monkeypatch, ROWS, COLUMNS, title=title, fast=True, width=width)
    assert fast == draw(capsys, monkeypatch, ROWS, COLUMNS, title=title, fast=False, width=width)
    if width == 200 and title and "[" not in title:
        assert fast.splitlines()[4].startswith(" acct000 │ Zeta        │ 0      │ yes     │ 0.000 ")


BLOCKED = [
    {"name": f"acct{i}", "agency": "Acme Agency", "block_kind": "manual",
     "block_reason": " ".join(["compliance review, then a long explanation"] * (i % 3)) or None,
     "note": "x" * (i * 5) + " tail words here"}
    for i in range(9)
]
BLOCKED_COLUMNS = [("name", "Account"), ("agency", "Agency"), ("block_kind", "By"), ("block_reason", "Why"),
                   ("note", "Note")]


@pytest.mark.parametrize("width", [80, 65])
def test_plain_table_wraps_free_text_as_rich_does(capsys, monkeypatch, rich_rows, width):
    fast = draw(capsys, monkeypatch, BLOCKED, BLOCKED_COLUMNS, title="Blocked", fast=True, width=width, drop=[])
    assert rich_rows == []  # drawn line by line, wrapping included: rich drew no row
    assert fast == draw(capsys, monkeypatch, BLOCKED, BLOCKED_COLUMNS, title="Blocked", fast=False, width=width,
                        drop=[])
    assert rich_rows == [len(BLOCKED)]
    if width == 80:
        assert fast.splitlines()[4:7] == [
            " acct1   │ Acme Agency │ manual │ compliance review,    │ xxxxx tail words here ",
            "         │             │        │ then a long           │                       ",
            "         │             │        │ explanation           │                       ",
        ]


def test_plain_table_on_a_terminal_lets_rich_style_the_header(capsys, monkeypatch):
    env = {"TTY_COMPATIBLE": "1"}  # rich treats the stream as a terminal: bold header, styled title
    fast = draw(capsys, monkeypatch, ROWS, COLUMNS, title="Usage", fast=True, env=env)
    assert "\x1b[1m" in fast
    assert fast == draw(capsys, monkeypatch, ROWS, COLUMNS, title="Usage", fast=False, env=env)


cell_text = st.text(st.sampled_from(list("ab Z09-.@é█名\t\n[]:/")), max_size=12)


# capsys and monkeypatch are shared by the examples: each draw sets what it uses and reads what it drew
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({"name": cell_text, "why": st.one_of(st.none(), cell_text),
                                            "n": st.integers(-5, 10**6)}), min_size=1, max_size=6),
       width=st.sampled_from([200, 40, 24]), title=st.one_of(st.none(), cell_text))
def test_plain_table_matches_rich_for_any_cells(capsys, monkeypatch, rows, width, title):
    columns = [("name", "Name"), ("block_reason", "Why"), ("n", "N")]
    rows = [{"name": r["name"], "block_reason": r["why"], "n": r["n"]} for r in rows]
    fast = draw(capsys, monkeypatch, rows, columns, title=title, fast=True, width=width)
    assert fast == draw(capsys, monkeypatch, rows, columns, title=title, fast=False, width=width)
