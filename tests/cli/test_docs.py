"""Docs are part of the feature: these tests keep them true."""

import re
from pathlib import Path

import typer.main

from smtpctl.cli.typer_app import app
from smtpctl.core.model.errors import ExitCode

DOCS = Path(__file__).resolve().parents[2] / "docs"


def all_commands(command=None, prefix=("smtpctl",)):
    command = command or typer.main.get_command(app)
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield " ".join(prefix)
        return
    for name, sub in subcommands.items():
        yield from all_commands(sub, (*prefix, name))


def test_every_command_is_documented():
    text = (DOCS / "commands.md").read_text()
    headings = set(re.findall(r"^### (smtpctl .+)$", text, flags=re.M))
    commands = set(all_commands())
    assert commands, "no commands found"
    assert commands - headings == set(), "undocumented commands"
    assert headings - commands == set(), "documented commands that do not exist"


def test_every_command_has_help_text():
    for command in all_commands():
        parts = command.split()[1:]
        node = typer.main.get_command(app)
        for part in parts:
            node = node.commands[part]
        assert node.help and node.help.strip(), command


def test_exit_code_table_matches_the_code():
    text = (DOCS / "exit-codes.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", text, flags=re.M)
    assert [(int(code), name) for code, name in rows] == [(int(c), c.name) for c in ExitCode]


def test_readme_quickstart_commands_are_the_ci_commands():
    readme = (DOCS.parent / "README.md").read_text()
    ci = (DOCS.parent / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && python -m pytest" in readme
    assert "pip install -e '.[test]'" in ci and "python -m pytest" in ci
    # The PostgreSQL pass the README and docs/store.md show is the one CI runs.
    store = (DOCS / "store.md").read_text()
    for text in (readme, store, ci):
        assert "SMTPCTL_TEST_BACKEND=postgresql python -m pytest" in text


def test_docs_index_links_resolve():
    index = (DOCS / "index.md").read_text()
    for target in re.findall(r"\]\(([\w.-]+\.md)\)", index):
        assert (DOCS / target).exists(), target


def test_store_md_lists_every_setting_with_its_default():
    from smtpctl.core.model.rules import SETTINGS

    text = (DOCS / "store.md").read_text().split("## Settings", 1)[1]
    table = re.findall(r"^\| `([a-z_0-9]+)` \| `([^`]*)` \|", text, flags=re.M)
    assert table == [(key, str(setting.default)) for key, setting in SETTINGS.items()]


def test_man_pages_are_generated_from_the_help_and_installed():
    import tomllib

    from smtpctl.cli.manpages import pages

    root = DOCS.parent
    committed = {path.name: path.read_text() for path in (root / "man").glob("*.1")}
    generated = pages()
    stale = sorted(name for name in set(committed) | set(generated) if committed.get(name) != generated.get(name))
    assert stale == [], f"man pages out of date: run python -m smtpctl.cli.manpages man/ ({stale[:5]})"
    assert "smtpctl-account-add.1" in generated and ".SH EXAMPLES" in generated["smtpctl-account-add.1"]
    wheel = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["shared-data"] == {"man": "share/man/man1"}


def test_the_test_command_prints_a_short_summary():
    import tomllib

    root = DOCS.parent
    addopts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    report = "".join(option[2:] for option in addopts.split() if option.startswith("-r"))
    assert "s" not in report and "a" not in report and "A" not in report, addopts  # no line per skipped test
    readme = (root / "README.md").read_text()
    assert "-rs" in readme and "no PostgreSQL for the tests" in readme and ".ci/pg start" in readme
