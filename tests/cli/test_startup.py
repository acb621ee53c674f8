"""Start-up and big tables: a command loads only what it uses (its own group,
no rich for --json, no PostgreSQL driver for an SQLite store), the root's
help builds no group, and the line-by-line renderer for big tables draws
exactly what rich draws. Speed itself is measured (docs/performance.md),
never asserted here."""

from __future__ import annotations

import importlib.util
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

from smtpctl.cli import output, table
from smtpctl.cli.typer_app import COMMANDS, GROUPS, app
from tests.conftest import smtpctl_binary

_PROBE = """
import json, sys
args, fast_rows = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["smtpctl", *args]
if fast_rows is not None:
    import smtpctl.cli.table
    smtpctl.cli.table.FAST_ROWS = fast_rows
from smtpctl.cli.typer_app import main
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


# The modules of the command tree (smtpctl.cli.settings is also the user
# group's: `user show` prints the settings block).
TREE = sorted({module for module, _, _ in [*COMMANDS.values(), *GROUPS.values()]})
COMMON = {  # the common read commands, as scripts run them: the tree modules each may load
    ("agency", "list", "--json"): {"agency"},
    ("account", "list", "--json"): {"account"},
    ("user", "list", "--json"): {"user", "settings"},
    ("domain", "list", "--json"): {"domain"},
    ("settings", "--json"): {"settings"},
    ("usage", "status", "--json"): {"usage"},
    ("account", "list", "--csv"): {"account"},
}


@pytest.fixture(scope="module")
def small_db(tmp_path_factory) -> Path:
    """A small store: two agencies, accounts with and without their own limit,
    a domain, a credential, a message, and a manual block with a reason (made
    once: the tests only read)."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "empty.toml").write_text("")
    env = {**os.environ, "SMTPCTL_DB": str(folder / "small.db"), "SMTPCTL_CONFIG": str(folder / "empty.toml"),
           "SMTPCTL_ACTOR": "tester"}
    for args in (("agency", "add", "Acme Agency"), ("agency", "add", "Zeta"),
                 ("account", "add", "shop", "--agency", "Acme Agency"),
                 ("account", "add", "news", "--agency", "Acme Agency", "--daily-limit", "250"),
                 ("account", "add", "blog", "--agency", "Zeta", "--daily-limit", "7"),
                 ("domain", "add", "shop.example", "--account", "shop"),
                 ("user", "create", "app@shop.example", "--generate"),
                 ("usage", "record", "--user", "app@shop.example", "--to", "a@example.org"),
                 ("account", "block", "news", "--reason", "compliance review, then a long explanation")):
        subprocess.run([smtpctl_binary(), *args], env=env, check=True, capture_output=True, timeout=120)
    return folder / "small.db"


@pytest.mark.parametrize("args", list(COMMON), ids=" ".join)
def test_a_common_command_loads_its_own_group_and_no_rich(small_db, args):
    """What a script's run of a common command loads: its own module of the
    command tree and no other, no rich (nothing is drawn), and no PostgreSQL
    driver (the store is SQLite)."""
    code, stdout, modules = modules_after("--db", str(small_db), *args)
    assert code == 0
    if "--json" in args:
        assert json.loads(stdout)
    assert {m for m in TREE if f"smtpctl.cli.{m}" in modules} == COMMON[args]
    assert loaded(modules, ["rich", "psycopg", "psycopg_binary", "psycopg_c", "smtpctl.core.store.postgresql",
                            "smtpctl.servers"]) == []
    if importlib.util.find_spec("typer._click"):  # typer vendors click: the click package is no dependency of ours
        assert loaded(modules, ["click"]) == []


def test_a_table_loads_rich(small_db):
    """The other side of the test above: drawing for people does load rich."""
    code, stdout, modules = modules_after("--db", str(small_db), "account", "list")
    assert code == 0 and "shop" in stdout
    assert "rich.table" in modules


def test_root_help_builds_no_group():
    code, stdout, modules = modules_after("--help")
    assert code == 0
    for name in [*COMMANDS, *GROUPS]:
        assert f"\n│ {name} " in stdout, name
    assert loaded(modules, [f"smtpctl.cli.{m}" for m in TREE]) == []
    assert loaded(modules, ["smtpctl.core.store", "sqlite3"]) == []


def test_version_builds_no_command_and_opens_no_store():
    code, stdout, modules = modules_after("--version")
    assert (code, stdout) == (0, "smtpctl 0.1.0\n")
    assert loaded(modules, [f"smtpctl.cli.{m}" for m in TREE]) == []
    assert loaded(modules, ["smtpctl.core.store", "sqlite3", "rich"]) == []


def test_a_long_report_off_a_terminal_is_drawn_without_rich(isolated_store, run):
    run("agency", "add", "Acme Agency", check_rc=0)
    args = ("usage", "report", "--by", "day", "--since", "150d")
    code, stdout, modules = modules_after(*args)
    assert code == 0 and len(stdout.splitlines()) == 3 + 151 + 1  # title, header, rule; every day; the total
    # rich.cells measures the bar's blocks (~2 ms); the console and the table (~19 ms) stay out
    assert loaded(modules, ["rich.console", "rich.table", "rich.text"]) == []
    code, by_rich, modules = modules_after(*args, fast_rows=10**9)
    assert code == 0 and "rich" in modules
    assert stdout == by_rich


def test_a_group_builds_only_the_command_that_runs():
    code, stdout, modules = modules_after("imap", "list", "--json")
    assert code == 0 and json.loads(stdout)
    assert {m for m in TREE if f"smtpctl.cli.{m}" in modules} == {"imap"}
    assert loaded(modules, ["smtpctl.core.store"]) == []  # imap list reads no store


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
    assert (result.returncode, result.stderr) == (2, "Error: No such command 'acount'. Did you mean 'account', 'auth'?\n")
    result = run("account", "lst")
    assert (result.returncode, result.stderr) == (2, "Error: No such command 'lst'. Did you mean 'list'?\n")


# -- account list: its options, and the store named every way ---------------

@pytest.fixture
def small_store(small_db, isolated_store, tmp_path):
    """The small store at this test's default path, and a config file naming it."""
    if isinstance(isolated_store, str):
        pytest.skip("reads a copy of one SQLite store")
    isolated_store.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(small_db) as source, sqlite3.connect(isolated_store) as copy:
        source.backup(copy)
    source.close()
    copy.close()
    config = tmp_path / "named.toml"
    config.write_text(f'db = "{isolated_store}"\nactor = "someone"\n')
    return isolated_store, config


def smtpctl(args: list, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """The installed smtpctl's exit code, stdout and stderr, as bytes."""
    proc = subprocess.run([smtpctl_binary(), *args], capture_output=True, env={**os.environ, **(env or {})},
                          timeout=120, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


ALL = {"shop", "news", "blog"}
LIST_CASES = [  # (arguments, the accounts listed or the exit code)
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


def check_listing(answer: tuple, args: list[str], expected: set[str] | int) -> None:
    code, stdout, stderr = answer
    if isinstance(expected, int):
        assert (code, stdout, stderr.count(b"\n")) == (expected, b"", 1) and stderr.startswith(b"Error: ")
        return
    assert code == 0, answer
    if "--json" in args:
        listed = {row["name"] for row in json.loads(stdout)}
    else:
        listed = {name for name in ALL if f"{name} ".encode() in stdout or f"{name},".encode() in stdout}
    assert listed == expected
    if not expected and "--csv" not in args:
        assert stderr == b"No blocked accounts.\n"


@pytest.mark.parametrize("args, expected", LIST_CASES, ids=[" ".join(args) for args, _ in LIST_CASES])
def test_account_list_options(small_store, args, expected):
    answer = smtpctl(["--db", str(small_store[0]), *args], {"SMTPCTL_DB": "/nonexistent/the-option-wins.db"})
    check_listing(answer, args, expected)


@pytest.mark.parametrize("args", [["account", "list", "--json"], ["account", "list", "--blocked"]], ids=" ".join)
@pytest.mark.parametrize("where", ["--db=", "SMTPCTL_DB", "--config", "--config=", "SMTPCTL_CONFIG",
                                   "default path"])
def test_account_list_finds_the_store_every_way(small_store, args, where):
    """The store named every way the root allows (an option before its
    variable, an empty variable is unset)."""
    db, config = small_store
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
    check_listing(smtpctl([*root, *args], env), args, ALL if "--json" in args else {"news"})


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
def test_account_list_errors_are_one_line(small_store, tmp_path, args, env):
    if env.get("SMTPCTL_CONFIG") == "BAD":
        (tmp_path / "bad.toml").write_text("db = [unclosed\n")
        env = {"SMTPCTL_CONFIG": str(tmp_path / "bad.toml")}
    code, stdout, stderr = smtpctl(args, env)
    assert code in (2, 3, 7) and stdout == b"" and stderr.startswith(b"Error: ") and stderr.count(b"\n") == 1


def test_a_closed_pipe_is_no_traceback(small_store):
    """stdout already closed by its reader: exit 1, nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([smtpctl_binary(), "--db", str(small_store[0]), "account", "list", "--json"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (1, b"")


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
        assert fast.splitlines()[4].startswith(" acct000 │ Zeta        │      0 │ yes     │ 0.000 ")


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
