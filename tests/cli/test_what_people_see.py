"""What a person sees (issue 26): figures in tables, typed counts, the order
of questions, help, completion, pager and progress, and the docs that say so."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def busy(cli, tmp_path):
    """An account with a limit of 5,000 a day that sent 2,997 emails today."""
    cli("agency", "add", "acme")
    cli("account", "add", "shop", "--agency", "acme", "--daily-limit", "5000")
    cli("domain", "add", "d.example", "--account", "shop")
    cli("user", "create", "a@d.example", "--generate")
    lines = [json.dumps({"user": "a@d.example", "recipients": n}) for n in (999, 999, 999)]
    src = tmp_path / "u.jsonl"
    src.write_text("\n".join(lines) + "\n")
    assert cli("usage", "import", str(src)).exit_code == 0


def cells(stdout: str) -> list[list[str]]:
    return [line.split("│") for line in stdout.splitlines() if "│" in line]


def test_tables_print_figures_with_separators_right_aligned(busy, cli):
    report = cli("usage", "report")
    assert cells(report.stdout) == [
        [" shop    ", "        3 ", "  2,997 ", "    2,997 ", "       0 ", " $2.02 "],
        [" Total   ", "        3 ", "  2,997 ", "    2,997 ", "       0 ", " $2.02 "],
    ]
    header = report.stdout.splitlines()[1]
    assert header.split("┃")[2] == " Emails " and header.split("┃")[-1].startswith("  Cost")
    status = cli("usage", "status")
    assert [c.strip() for c in cells(status.stdout)[0][2:5]] == ["2,997", "5,000", "2,003"]
    assert cells(status.stdout)[0][3] == " 5,000 "  # right-aligned under "Limit"
    assert "│       5,000 │" in cli("account", "list").stdout  # under "Daily limit"
    # JSON and CSV keep plain numbers
    assert json.loads(cli("usage", "report", "--json").stdout)["total"]["emails"] == 2997
    assert cli("usage", "report", "--csv").stdout.splitlines()[1].startswith("shop,3,2997,2997,0,")


def test_agency_show_and_store_copy_print_separators(busy, cli, tmp_path):
    show = cli("agency", "show", "acme")
    assert "│   2,997 │" in show.stdout
    copied = cli("store", "copy", str(tmp_path / "copy.db"))
    assert copied.exit_code == 0, copied.stderr
    assert "3 usage events (2,997 emails)" in copied.stderr


def test_big_amounts_read_with_separators():
    from smtpctl.cli.table import figure_text

    assert [figure_text(v) for v in (1598813, "$1079.20", "-$1079.20", "0.675", "1234567.5", "x1", True)] == [
        "1,598,813", "$1,079.20", "-$1,079.20", "0.675", "1,234,567.5", None, None]


@pytest.mark.parametrize("args", [
    ["account", "add", "big", "--agency", "acme", "--daily-limit", "1,500"],
    ["account", "add", "big", "--agency", "acme", "--daily-limit", "1_500"],
    ["account", "add", "big", "--agency", "acme", "--daily-limit", " 1500 "],
])
def test_a_typed_count_takes_the_forms_set_limit_takes(cli, args):
    cli("agency", "add", "acme")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(cli("account", "show", "big", "--json").stdout)["daily_limit"] == 1500
    set_limit = cli("account", "set-limit", "big", "1,500")
    assert set_limit.exit_code == 0


def test_pricing_and_other_counts_take_separators(cli):
    data = json.loads(cli("pricing", "estimate", "--emails", "1,000,000", "--json").stdout)
    assert data["emails"] == 1_000_000
    data = json.loads(cli("pricing", "estimate", "--per-day", "1,500", "--days", "30", "--json").stdout)
    assert data["emails"] == 45_000
    assert cli("audit", "--limit", "1,000").exit_code == 0
    bad = cli("account", "add", "x", "--agency", "acme", "--daily-limit", "1.5")
    assert (bad.exit_code, bad.stderr) == (2, "Error: daily limit must be a whole number from 1 to 100,000,000, "
                                              "not '1.5'\n")


def test_create_checks_the_login_before_asking_for_a_password(cli, isolated_store):
    result = cli("user", "create", "bad")
    assert (result.exit_code, result.stderr) == (2, "Error: invalid login 'bad': use the form name@domain\n")


def test_reset_on_a_terminal_refuses_a_short_password_at_the_first_prompt(cli):
    from tests.conftest import on_terminal

    cli("agency", "add", "acme")
    cli("account", "add", "shop", "--agency", "acme")
    cli("domain", "add", "d.example", "--account", "shop")
    cli("user", "create", "a@d.example", "--generate")
    good = "a long enough password"
    rc, screen = on_terminal(["user", "reset", "a@d.example"], [
        ("Password:", "short"), ("Password:", good), ("Repeat for confirmation:", good + "x"),
        ("Password:", good), ("Repeat for confirmation:", good)])
    assert rc == 0, screen
    lines = [line.strip() for line in screen.replace("\r", "").splitlines() if line.strip()]
    assert lines == [
        "Password:", "Error: the password is too short: it needs at least 12 characters; try again.",
        "Password:", "Repeat for confirmation:", "Error: the two entered values do not match; try again.",
        "Password:", "Repeat for confirmation:", "SMTP credential a@d.example reset."]
    verify = cli("user", "verify", "a@d.example", "--password-stdin", input=good + "\n")
    assert verify.exit_code == 0


def test_settings_say_where_the_host_comes_from(cli):
    shown = cli("settings")
    assert shown.stdout.startswith("Server:   smtp.mailgun.org\n")
    assert shown.stderr == ("Note: the server is the store setting smtp_host (smtp.mailgun.org, the default); set the "
                            "host your users connect to with: smtpctl store set smtp_host HOST\n")
    cli("store", "set", "smtp_host", "mail.example.net")
    assert "(mail.example.net, set in this store)" in cli("settings").stderr
    assert cli("settings", "--json").stderr == ""


def test_readme_first_session_sets_the_host():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    session = readme.split("## A first session", 1)[1].split("```", 2)[1]
    assert "smtpctl store set smtp_host" in session


def test_defaults_are_named_with_their_number(cli, tmp_path):
    cli("agency", "add", "acme")
    cli("account", "add", "shop", "--agency", "acme")
    cli("account", "add", "big", "--agency", "acme", "--daily-limit", "3000")
    listed = cli("account", "list").stdout
    assert "│ 1,500 (default) │" in listed and "│           3,000 │" in listed
    assert cli("account", "list", "--csv").stdout.splitlines()[1].startswith("big,acme,3000,")
    assert cli("account", "set-limit", "shop", "2000").stderr == (
        "Account 'shop' daily limit set to 2,000 emails a day (was the default, 1,500 emails).\n")
    audit = cli("audit").stdout
    assert "new=2,000, old=1,500 (default)" in audit and "agency=acme, daily_limit=3,000" in audit
    assert "agency=acme, daily_limit=1,500 (default)" in audit and "default_daily_limit" not in audit
    doc = tmp_path / "plan.toml"
    doc.write_text('version = 1\n[[accounts]]\nname = "shop"\nagency = "acme"\n'
                   '[[accounts]]\nname = "new"\nagency = "acme"\n')
    plan = cli("apply", str(doc), "--dry-run").stdout
    assert "daily_limit=2,000 → 1,500 (default)" in plan and "agency=acme, daily_limit=1,500 (default)" in plan


def test_store_show_has_a_default_column(cli):
    cli("store", "set", "timezone", "Europe/Berlin")
    shown = cli("store", "show").stdout
    assert shown.splitlines()[0].split("┃")[2].strip() == "Default"
    assert [c.strip() for c in cells(shown)[1][:4]] == ["timezone", "Europe/Berlin", "UTC", "set"]


@pytest.mark.parametrize("width", [80, 120])
def test_audit_blocks_wrap_between_fields(cli, tmp_path, monkeypatch, width):
    doc = tmp_path / "n.toml"
    doc.write_text('version = 1\n[[agencies]]\nname = "Northwind Traders"\n[[accounts]]\nname = "northwind-marketing"\n'
                   'agency = "Northwind Traders"\n[[domains]]\nname = "mail.northwind-traders.example"\n'
                   'account = "northwind-marketing"\n[[credentials]]\n'
                   'login = "billing-reminders@mail.northwind-traders.example"\ngenerate = true\n')
    assert cli("apply", str(doc), "--secrets-out", str(tmp_path / "s.toml")).exit_code == 0
    monkeypatch.setenv("COLUMNS", str(width))
    lines = cli("audit").stdout.splitlines()
    assert "Details:" in "\n".join(lines)  # block form
    assert max(map(len, lines)) <= width
    assert not any(line.strip().startswith(",") for line in lines)
    details = [line for line in lines if line.startswith(("Details:", " " * 12))]
    text = " ".join(line[12:] for line in details)
    assert "domain=mail.northwind-traders.example, generated=yes, hash_scheme=argon2id, via=apply" in text
    for line in details:  # every line holds whole fields
        assert all("=" in field for field in line[12:].rstrip(",").split(", ")), line


PAGER = {"PAGER": "sed 's/^/P:/'", "SMTPCTL_PAGER": "", "LINES": "10", "COLUMNS": "100"}


def _many_audit_entries(cli, count=12):
    for n in range(count):
        cli("agency", "add", f"agency-{n:02d}")


def test_long_tables_go_through_the_pager_on_a_terminal(cli, monkeypatch):
    from tests.conftest import on_terminal

    _many_audit_entries(cli)
    env = {**PAGER, "SMTPCTL_PAGER": "sed 's/^/P:/'"}
    rc, screen = on_terminal(["audit", "--limit", "0"], env=env)
    lines = screen.replace("\r", "").splitlines()
    assert rc == 0 and lines and all(line.startswith("P:") for line in lines), screen
    assert sum("agency.create" in line for line in lines) == 12
    rc, screen = on_terminal(["--no-pager", "audit", "--limit", "0"], env=env)
    assert rc == 0 and "agency.create" in screen and "P:" not in screen
    rc, screen = on_terminal(["audit", "--limit", "2"], env=env)  # fits the screen: printed directly
    assert rc == 0 and "agency.create" in screen and "P:" not in screen
    rc, screen = on_terminal(["audit", "--limit", "0"], env={**env, "SMTPCTL_PAGER": "cat"})  # cat: no pager
    assert rc == 0 and "P:" not in screen
    # not a terminal: never paged
    monkeypatch.setenv("PAGER", "sed 's/^/P:/'")
    assert "P:" not in cli("audit", "--limit", "0").stdout


def test_store_copy_shows_progress_on_a_terminal_only(cli, tmp_path):
    from tests.conftest import on_terminal

    _many_audit_entries(cli, 2)
    rc, screen = on_terminal(["store", "copy", str(tmp_path / "copy.db")])
    assert rc == 0, screen
    assert "Copying the store" in screen and "100%" in screen and "; verified." in screen
    piped = cli("store", "copy", str(tmp_path / "copy2.db"))
    assert piped.exit_code == 0 and "Copying" not in piped.stderr


def _leaves():
    import typer.main

    from smtpctl.cli.typer_app import app

    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        subs = getattr(command, "commands", None)
        if not subs:
            yield name, command
        else:
            for sub in subs:
                yield f"{name} {sub}", subs[sub]


def test_every_leaf_command_has_a_real_example():
    import shlex

    for path, command in _leaves():
        assert command.epilog and "Examples" in command.epilog, path
        if command.hidden:  # the other verb (agency delete): the examples use the listed one
            continue
        for line in command.epilog.splitlines()[1:]:
            words = shlex.split(line.replace("\\[", "[").split(" > ")[0].split(" | ")[-1])
            assert words[:1 + len(path.split())] == ["smtpctl", *path.split()], (path, line)
            options = {opt for param in command.params for opt in param.opts}
            used = {w.split("=")[0] for w in words if w.startswith("--")}
            assert used <= options, (line, used - options)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_help_reads_well(cli, monkeypatch, width):
    import re

    monkeypatch.setenv("COLUMNS", str(width))
    for path, _ in _leaves():
        out = cli(*path.split(), "--help").stdout
        assert not re.search(r"\{[a-z_]+\}", out), path  # placeholders are upper case
        assert not re.search(r"(?:\s|^)--[a-z-]+\s+(?:-\w\s+)?<[a-z]", out), path  # no <str> for an option
        assert "<toml|json" not in out and "postfix-sender-log " not in out, path  # choices never cut mid-word
    # a command's summary is one paragraph: a hard line break shows in its group's listing
    for path, command in _leaves():
        assert "\n" not in (command.help or "").strip().split("\n\n")[0], path
    policy = cli("policy", "--help").stdout
    assert "foreign senders and too many" in " ".join(line.strip(" │") for line in policy.splitlines())


def test_completion_offers_stored_names_and_choices(cli, run):
    def complete(words):
        env = {"_SMTPCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
        return run(env=env, check_rc=0).stdout.split()

    cli("agency", "add", "acme")
    cli("agency", "add", "zeta")
    cli("account", "add", "shop", "--agency", "acme")
    cli("domain", "add", "d.example", "--account", "shop")
    cli("user", "create", "app@d.example", "--generate")
    assert complete("smtpctl agency show ") == ["acme", "zeta"]
    assert complete("smtpctl account add x --agency a") == ["acme"]
    assert complete("smtpctl account set-limit ") == ["shop"]
    assert complete("smtpctl domain show ") == ["d.example"]
    assert complete("smtpctl user reset ") == ["app@d.example"]
    assert complete("smtpctl usage report --by d") == ["day", "domain", "direction"]
    assert complete("smtpctl export --format ") == ["toml", "json", "dovecot",
                                                                       "postfix-sender-logins"]


def test_install_completion_zsh_writes_no_zstyle(cli, isolated_store):
    import os
    from pathlib import Path

    home = Path(os.environ["HOME"])
    (home / ".zshrc").write_text("export EDITOR=vi\n")
    result = cli("--install-completion", "zsh")
    assert result.exit_code == 0, result.stderr
    zshrc = (home / ".zshrc").read_text()
    assert "zstyle" not in zshrc
    assert zshrc == "export EDITOR=vi\nfpath+=~/.zfunc; autoload -Uz compinit; compinit\n"
    assert (home / ".zfunc" / "_smtpctl").read_text().startswith("#compdef smtpctl")
    cli("--install-completion", "zsh")
    assert (home / ".zshrc").read_text() == zshrc  # once
