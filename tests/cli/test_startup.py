"""Start-up and big tables (issue 12): a command loads only what it uses, the
root's help builds no group, ``account list`` runs without typer and prints
what the typer command prints, and the line-by-line renderer for big tables
draws exactly what rich draws. Speed itself is measured by
benchmarks/startup.py, never asserted here."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpctl.cli import COMMANDS, GROUPS, app, fastpath, output, table
from smtpctl.core.store import is_dsn
from tests.conftest import smtpctl_binary

# What `account list --json` must not load: typer and what only typer needs
# (the fast path runs it), the command groups (its own too: the fast path
# calls the body they share), the hashers, the table renderer, the writer
# library, the default-path lookup (--db is given) and the modules of other
# use cases.
TYPER_AND_ITS_IMPORTS = ["typer", "click", "shellingham", "annotated_doc", "subprocess", "platform", "difflib",
                         "uuid", "shutil", "gettext", "traceback"]
NOT_FOR_ACCOUNT_LIST = [
    *TYPER_AND_ITS_IMPORTS,
    *(f"smtpctl.cli.{m}" for m in ("account", "agency", "apply", "audit", "domain", "export", "imap", "options",
                                   "password_input", "pricing", "serve", "settings", "store", "table", "typer_app",
                                   "usage", "user")),
    *(f"smtpctl.core.{m}" for m in ("adopt", "billing", "credits", "export", "imap", "ingest", "passwords",
                                    "provisioning", "services", "usage")),
    "smtpctl.servers", "rich", "sqlite_utils", "platformdirs", "passlib", "argon2", "hashlib", "secrets", "pydantic",
    # what the records, the one setting read and the type names no longer load (docs/performance.md, round 4)
    "dataclasses", "inspect", "typing", "zoneinfo",
]

_PROBE = """
import json, sys
args, fast_rows = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["smtpctl", *args]
if fast_rows is not None:
    import smtpctl.cli.table
    smtpctl.cli.table.FAST_ROWS = fast_rows
from smtpctl.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def modules_after(*args: str, fast_rows: int | None = None) -> tuple[int, str, set[str]]:
    """Run smtpctl ``args`` in a fresh interpreter (``fast_rows`` replacing
    ``table.FAST_ROWS``); its exit code, stdout and every module loaded by
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
    assert "smtpctl.cli.fastpath" in modules and "smtpctl.core.reads" in modules
    if is_dsn(str(isolated_store)):  # what psycopg imports itself (shutil, subprocess...) is the driver's, not ours
        modules -= driver_modules()
    assert loaded(modules, NOT_FOR_ACCOUNT_LIST) == []


def driver_modules() -> set[str]:
    """The modules ``import psycopg`` loads in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", "import json, sys, psycopg; print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(proc.stdout))


def test_smtpctl_cli_imports_no_typer():
    """The entry point's package, the fast path and the renderer import no
    typer: ``app`` and the typer root are built on first use."""
    probe = ("import sys, smtpctl.cli, smtpctl.cli.fastpath, smtpctl.cli.output, smtpctl.cli.state\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')))\n"
             "from smtpctl.cli import app\n"
             "from smtpctl.cli.output import JsonOption\n"
             "print(type(app).__name__, type(JsonOption.__metadata__[0]).__name__, JsonOption.__metadata__[0].help)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout == "[]\nTyper OptionInfo Print one JSON document on stdout.\n"


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
        "smtpctl.cli.fastpath", "smtpctl.cli.typer_app", "smtpctl.cli.state", "smtpctl.cli.examples")] == []


def test_a_long_report_off_a_terminal_is_drawn_without_rich(isolated_store, run):
    run("agency", "add", "Acme Agency", check_rc=0)
    args = ("usage", "report", "--by", "day", "--since", "150d")
    code, stdout, modules = modules_after(*args)
    assert code == 0 and len(stdout.splitlines()) == 3 + 151 + 1  # title, header, rule; every day; the total
    if is_dsn(str(isolated_store)):  # psycopg imports dataclasses itself: the driver's, not ours
        modules -= driver_modules()
    # rich.cells measures the bar's blocks (~2 ms); the console and the table (~25 ms) stay out
    assert loaded(modules, ["rich.console", "rich.table", "rich.text"]) == []
    # a report runs core/report.py and reads through core.reads: neither services, nor the import parsers, nor
    # core.usage's metering (its dataclasses) are loaded
    assert "smtpctl.core.report" in modules
    assert loaded(modules, ["smtpctl.core.services", "smtpctl.core.ingest", "dataclasses"]) == []
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


# -- the fast path ----------------------------------------------------------

_THROUGH_TYPER = "import sys; from smtpctl.cli import typer_main; typer_main()"


def both_ways(args: list, env: dict[str, str] | None = None) -> tuple[tuple, tuple]:
    """``args`` run by the installed smtpctl (where the fast path claims what it
    can) and by the typer application alone: each run's exit code, stdout and
    stderr, as bytes."""
    full_env = {**os.environ, **(env or {})}
    answers = []
    for command in ([smtpctl_binary()], [sys.executable, "-c", _THROUGH_TYPER]):
        proc = subprocess.run([*command, *args], capture_output=True, env=full_env, timeout=120,
                              stdin=subprocess.DEVNULL)
        answers.append((proc.returncode, proc.stdout, proc.stderr))
    return answers[0], answers[1]


@pytest.fixture(scope="module")
def accounts_db(tmp_path_factory) -> Path:
    """A store with two agencies, accounts with and without their own limit,
    a domain, and a manual block with a reason (made once: the tests only read)."""
    folder = tmp_path_factory.mktemp("accounts")
    (folder / "empty.toml").write_text("")
    env = {**os.environ, "SMTPCTL_DB": str(folder / "accounts.db"), "SMTPCTL_CONFIG": str(folder / "empty.toml"),
           "SMTPCTL_ACTOR": "tester"}
    for args in (("agency", "add", "Acme Agency"), ("agency", "add", "Zeta"),
                 ("account", "add", "shop", "--agency", "Acme Agency"),
                 ("account", "add", "news", "--agency", "Acme Agency", "--daily-limit", "250"),
                 ("account", "add", "blog", "--agency", "Zeta", "--daily-limit", "7"),
                 ("domain", "add", "shop.example", "--account", "shop"),
                 ("account", "block", "news", "--reason", "compliance review, then a long explanation")):
        subprocess.run([smtpctl_binary(), *args], env=env, check=True, capture_output=True, timeout=120)
    return folder / "accounts.db"


@pytest.fixture
def accounts_store(accounts_db, isolated_store, tmp_path):
    """That store at this test's default path, and a config file naming it."""
    if isinstance(isolated_store, str):
        pytest.skip("reads a copy of one SQLite store")
    isolated_store.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(accounts_db) as source, sqlite3.connect(isolated_store) as copy:
        source.backup(copy)
    source.close()
    copy.close()
    config = tmp_path / "named.toml"
    config.write_text(f'db = "{isolated_store}"\nactor = "someone"\n')
    return isolated_store, config


ALL = {"shop", "news", "blog"}
FAST_CASES = [  # (arguments, the accounts listed or the exit code)
    (["account", "list"], ALL), (["account", "list", "--json"], ALL), (["account", "list", "--csv"], ALL),
    (["account", "list", "--blocked"], {"news"}), (["account", "list", "--blocked", "--json"], {"news"}),
    (["account", "list", "--blocked", "--csv"], {"news"}),
    (["account", "list", "--agency", "Acme Agency"], {"shop", "news"}),
    (["account", "list", "--agency=Zeta", "--json"], {"blog"}),
    (["account", "list", "--json", "--agency", "Zeta", "--agency", "Acme Agency", "--json"], {"shop", "news"}),
    (["account", "list", "--blocked", "--agency", "Zeta", "--csv"], set()),
    (["account", "list", "--blocked", "--agency", "Zeta"], set()),
    (["account", "list", "--agency", "Nobody"], 3), (["account", "list", "--agency", "Zeta=x"], 3),
    (["account", "list", "--agency=a=b"], 3), (["account", "list", "--json", "--csv"], 2),
]


def check_listing(run: tuple, args: list[str], expected: set[str] | int) -> None:
    code, stdout, stderr = run
    if isinstance(expected, int):
        assert (code, stdout, stderr.count(b"\n")) == (expected, b"", 1) and stderr.startswith(b"Error: ")
        return
    assert code == 0, run
    if "--json" in args:
        listed = {row["name"] for row in json.loads(stdout)}
    else:
        listed = {name for name in ALL if f"{name} ".encode() in stdout or f"{name},".encode() in stdout}
    assert listed == expected
    if not expected and "--csv" not in args:
        assert stderr == b"No blocked accounts.\n"


@pytest.mark.parametrize("args, expected", FAST_CASES, ids=[" ".join(args) for args, _ in FAST_CASES])
def test_fast_path_prints_what_typer_prints(accounts_store, args, expected):
    """Every option the fast path claims: byte for byte the typer command's
    stdout, stderr and exit code."""
    argv = ["--db", str(accounts_store[0]), *args]
    assert fastpath.parse(argv) is not None  # the installed smtpctl runs these without typer
    fast, typer_run = both_ways(argv, {"SMTPCTL_DB": "/nonexistent/the-option-wins.db"})
    assert fast == typer_run
    check_listing(fast, args, expected)


@pytest.mark.parametrize("args", [["account", "list", "--json"], ["account", "list", "--blocked"]], ids=" ".join)
@pytest.mark.parametrize("where", ["--db=", "SMTPCTL_DB", "--config", "--config=", "SMTPCTL_CONFIG",
                                   "default path"])
def test_fast_path_finds_the_store_as_typer_does(accounts_store, args, where):
    """The store named every way the root allows, as typer reads it (an
    option before its variable, an empty variable is unset)."""
    db, config = accounts_store
    env: dict[str, str] = {}
    root: list[str] = []
    if where == "--db=":
        root, env["SMTPCTL_DB"] = [f"--db={db}"], "/nonexistent/the-option-wins.db"
    elif where == "SMTPCTL_DB":
        env["SMTPCTL_DB"] = str(db)
    elif where.startswith("--config"):
        root = ["--config", str(config)] if where == "--config" else [f"--config={config}"]
        env["SMTPCTL_CONFIG"] = "/nonexistent/the-option-wins.toml"
    elif where == "SMTPCTL_CONFIG":
        env["SMTPCTL_CONFIG"] = str(config)
    else:  # the isolated default path
        env["SMTPCTL_DB"] = ""
    argv = [*root, *args]
    assert fastpath.parse(argv) is not None
    fast, typer_run = both_ways(argv, env)
    assert fast == typer_run
    check_listing(fast, args, ALL if "--json" in args else {"news"})


@pytest.mark.parametrize("args, env", [
    (["--db", "/nonexistent/store.db", "account", "list", "--json"], {}),  # a named store that is not there
    (["account", "list"], {"SMTPCTL_DB": "/nonexistent/store.db"}),
    (["--config", "/nonexistent/config.toml", "account", "list"], {}),  # an explicit config that is not there
    (["--db", ".", "account", "list"], {}),  # a directory is no store
    (["account", "list", "--json"], {"SMTPCTL_ACTOR": "x" * 101}),  # the actor is checked before the store opens
    (["--db", "bad-config-follows", "account", "list"], {"SMTPCTL_CONFIG": "BAD"}),
    (["--db", "fresh.db", "account", "list", "--agency", b"\xff"], {}),  # not UTF-8
    (["--db", b"\xfe.db", "account", "list"], {}),
])
def test_fast_path_errors_are_typers(accounts_store, tmp_path, args, env):
    if env.get("SMTPCTL_CONFIG") == "BAD":
        (tmp_path / "bad.toml").write_text("db = [unclosed\n")
        env = {"SMTPCTL_CONFIG": str(tmp_path / "bad.toml")}
    assert fastpath.parse([a.decode(errors="surrogateescape") if isinstance(a, bytes) else a for a in args])
    fast, typer_run = both_ways(args, env)
    assert fast == typer_run
    assert fast[0] in (2, 3, 7) and fast[1] == b"" and fast[2].startswith(b"Error: ") and fast[2].count(b"\n") == 1


@pytest.mark.parametrize("args", [
    [], ["--help"], ["account", "list", "--help"], ["account", "list", "-h"], ["-h", "account", "list"],
    ["--version", "account", "list"], ["account"], ["account", "lst"], ["account", "list", "extra"],
    ["account", "list", "--agency"], ["account", "list", "--agency", "--json"], ["account", "list", "--agency="],
    ["account", "list", "--json=1"], ["account", "list", "--blocke"], ["account", "list", "--"],
    ["account", "--json", "list"], ["--db", "--json", "account", "list"], ["--db"], ["--db=", "account", "list"],
    ["--json", "account", "list"], ["account", "show", "shop"], ["account", "list", "-"],
    ["--show-completion", "bash", "account", "list"],
])
def test_fast_path_leaves_the_rest_to_typer(accounts_store, args):
    """Help, completion, a typo, a missing or dash-led value, another command:
    the fast path does not claim them, and what runs is typer's own answer."""
    assert fastpath.parse(args) is None
    fast, typer_run = both_ways(args)
    assert fast == typer_run


def test_fast_path_on_a_closed_pipe_exits_as_typer_does(accounts_store):
    """stdout already closed by its reader: typer's exit 1, nothing on stderr."""
    argv = ["--db", str(accounts_store[0]), "account", "list", "--json"]
    answers = []
    for command in ([smtpctl_binary()], [sys.executable, "-c", _THROUGH_TYPER]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = subprocess.run([*command, *argv], stdout=write_end, stderr=subprocess.PIPE, timeout=120,
                                  stdin=subprocess.DEVNULL)
        finally:
            os.close(write_end)
        answers.append((proc.returncode, proc.stderr))
    assert answers[0] == answers[1] == (1, b"")


def test_fast_path_takes_no_unreadable_config(tmp_path, monkeypatch):
    """click refuses a --config it cannot read with its own message: the fast
    path leaves that file to typer (a test of the check itself: root reads any
    file)."""
    config = tmp_path / "c.toml"
    config.write_text("")
    assert fastpath.parse(["--config", str(config), "account", "list"]) is not None
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert fastpath.parse(["--config", str(config), "account", "list"]) is None
    assert fastpath.parse(["--config", str(tmp_path / "missing.toml"), "account", "list"]) is not None


# -- big tables -------------------------------------------------------------

def draw(capsys, monkeypatch, rows, columns, *, title=None, fast: bool, width: int = 200, env=None,
         drop=None) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(table, "FAST_ROWS", 0 if fast else 10**9)
    output.render_list(rows, columns, output="table", title=title, drop=drop)
    return capsys.readouterr().out


@pytest.fixture
def rich_rows(monkeypatch):
    """How many rows rich itself was given to draw, call by call."""
    drawn: list[int] = []
    real = table._rich_table

    def spy(texts, *args, **kwargs):
        drawn.append(len(texts[0]) if texts else 0)
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(table, "_rich_table", spy)
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
