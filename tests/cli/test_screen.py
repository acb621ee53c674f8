"""Reading the screen (issue 11, section 3): tables at 80 columns, the day
chart, money that adds up as printed, the agency's credits view, monitoring
exits, help that prints once with examples, completion scripts."""

from __future__ import annotations

import json
import shlex
from datetime import date, timedelta

import pytest
import typer.main

from smtpctl.cli.examples import _EXAMPLES, NAMES
from smtpctl.cli.output import bar, bar_scale
from smtpctl.cli.typer_app import app
from smtpctl.core.model.clock import utc_now

AGENCY = "Northwind Traders"
ACCOUNT = "northwind-marketing"
DOMAIN = "mail.northwind-traders.example"
LOGINS = ["notifications@mail.northwind-traders.example", "billing-reminders@mail.northwind-traders.example"]
NARROW = {"COLUMNS": "80"}


def today() -> date:
    return utc_now().date()


@pytest.fixture
def northwind(run):
    """A store with long, real-looking names, set up through the installed CLI."""
    run("agency", "add", AGENCY, check_rc=0)
    run("account", "add", ACCOUNT, "--agency", AGENCY, check_rc=0)
    run("domain", "add", DOMAIN, "--account", ACCOUNT, check_rc=0)
    for login in LOGINS:
        run("user", "create", login, "--generate", check_rc=0)
    run("usage", "record", "--user", LOGINS[0], "--recipients", "7", check_rc=0)


def whole_on_one_line(text: str, identifier: str) -> bool:
    return any(identifier in line for line in text.splitlines())


@pytest.mark.parametrize("args, identifiers", [
    (["user", "list"], LOGINS + [ACCOUNT]),
    (["domain", "list"], [DOMAIN, ACCOUNT]),
    (["account", "list"], [ACCOUNT, AGENCY]),
    (["agency", "list"], [AGENCY]),
    (["usage", "status"], [ACCOUNT, today().isoformat()]),
    (["usage", "report", "--by", "user"], [LOGINS[0]]),
    (["usage", "report", "--by", "domain", "--by", "account"], [DOMAIN, ACCOUNT]),
])
def test_tables_at_80_columns_keep_identifiers_whole(northwind, run, args, identifiers):
    result = run(*args, env=NARROW, check_rc=0)
    for identifier in identifiers:
        assert whole_on_one_line(result.stdout, identifier), (identifier, result.stdout)
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout


def test_timestamps_stay_whole_at_80_columns(northwind, run):
    created = json.loads(run("agency", "list", "--json").stdout)[0]["created_at"]
    assert whole_on_one_line(run("agency", "list", env=NARROW).stdout, created)
    audit = run("audit", env=NARROW, check_rc=0).stdout
    at = json.loads(run("audit", "--json").stdout)[0]["at"]
    assert whole_on_one_line(audit, at) and whole_on_one_line(audit, LOGINS[1]) and "…" not in audit


def test_low_value_columns_go_first_on_a_narrow_terminal(northwind, run):
    wide = run("user", "list", check_rc=0).stdout
    narrow = run("user", "list", env=NARROW, check_rc=0).stdout
    assert ["Login", "Domain", "Account", "Agency", "Hash", "Created", "Updated"] == [
        h for h in ["Login", "Domain", "Account", "Agency", "Hash", "Created", "Updated"] if h in wide.splitlines()[0]]
    header = narrow.splitlines()[0].split()
    assert "Login" in header and "Account" in header
    assert "Updated" not in narrow and "Hash" not in narrow and "Domain" not in narrow
    assert narrow.splitlines()[2].split() == [LOGINS[1], "│", ACCOUNT]


def test_rows_too_wide_for_any_table_become_blocks(run):
    domain = "transactional-mail.northwind-traders-international.example"
    login = f"notifications.billing-reminders@{domain}"
    run("agency", "add", AGENCY, check_rc=0)
    run("account", "add", ACCOUNT, "--agency", AGENCY, check_rc=0)
    run("domain", "add", domain, "--account", ACCOUNT, check_rc=0)
    run("user", "create", login, "--generate", check_rc=0)
    result = run("user", "list", env=NARROW, check_rc=0)
    lines = result.stdout.splitlines()
    assert lines[0] == f"Login:         {login}"
    assert lines[1] == f"Domain:        {domain}"
    assert lines[2] == f"Account:       {ACCOUNT}"


def test_bar_scale_is_a_round_number_and_the_peak_fits():
    assert [bar_scale(n) for n in (0, 1, 20, 21, 40, 41, 100, 101, 1500, 1_000_000)] == [
        1, 1, 1, 2, 2, 5, 5, 10, 100, 50_000]
    assert (bar(0, 5), bar(1, 5), bar(100, 5)) == ("", "█", "█" * 20)


def test_day_chart_has_a_scale_and_every_day(northwind, run):
    two_ago = (today() - timedelta(days=2)).isoformat()
    run("usage", "record", "--user", LOGINS[1], "--recipients", "40", "--at", f"{two_ago}T12:00:00Z", check_rc=0)
    result = run("usage", "report", "--by", "day", "--since", "4d", check_rc=0)
    lines = result.stdout.splitlines()
    assert "█ = 2 emails" in lines[1]
    days = [(today() - timedelta(days=n)).isoformat() for n in range(4, -1, -1)]
    body = [line.split() for line in lines[3:]]
    assert [row[0] for row in body] == days + ["Total"]
    assert body[0] == [days[0], "│", "0", "│", "0", "│", "0", "│", "0", "│", "$0.00", "│"]
    assert body[2][-1] == "█" * 20 and body[4][-1] == "█" * 4  # 40 and 7 emails at 2 a block
    assert body[5][:7] == ["Total", "│", "2", "│", "47", "│", "47"]


def test_report_rows_and_total_agree_or_say_why(northwind, run):
    run("store", "set", "price_per_1000", "5", check_rc=0)  # 1 email = $0.005, shown as $0.01
    run("usage", "record", "--user", LOGINS[1], "--recipients", "1", check_rc=0)
    run("usage", "record", "--inbound", "--domain", DOMAIN, "--recipients", "1", check_rc=0)
    result = run("usage", "report", "--by", "user", check_rc=0)
    rows = [line.split() for line in result.stdout.splitlines()[3:]]
    assert [(r[0], r[-1]) for r in rows] == [("(inbound)", "$0.01"), (LOGINS[1], "$0.01"), (LOGINS[0], "$0.04"),
                                             ("Total", "$0.05")]
    assert result.stderr == ("Note: the rows, each rounded to the cent, add up to $0.06; the total $0.05 is the "
                             "exact sum $0.045 rounded once, which is what is billed.\n")
    data = json.loads(run("usage", "report", "--by", "user", "--json").stdout)
    assert data["total"] == {"messages": 3, "emails": 9, "outbound": 8, "inbound": 1, "cost": "0.045",
                             "cost_rounded": "0.05"}
    assert run("usage", "report", "--by", "account", check_rc=0).stderr == ""  # $0.05 = $0.04 + $0.01


def test_pricing_you_save_is_the_difference_of_the_printed_costs(run):
    result = run("pricing", "estimate", "--emails", "1000", check_rc=0)
    assert result.stdout.splitlines()[3].split() == ["this", "service", "│", "$0.675", "│", "$0.675", "│", "$0.68",
                                                     "│"]
    assert result.stdout.splitlines()[4].split() == ["Mailgun", "│", "$0.80", "│", "$0.80", "│", "$0.80", "│",
                                                     "$0.12"]
    assert result.stderr.splitlines()[-1] == ("Note: against Mailgun, the exact saving $0.125 rounds to $0.13; "
                                              "the amounts you would pay differ by $0.12.")
    cheaper = run("pricing", "estimate", "--emails", "45000", "--compare", "SES=0.10", check_rc=0)
    assert cheaper.stdout.splitlines()[4].split()[-1] == "-$25.88"  # $4.50 - $30.38, as printed
    data = json.loads(run("pricing", "estimate", "--emails", "1000", "--json").stdout)
    assert [(c["saving"], c["saving_rounded"], c["saving_as_billed"]) for c in data["comparisons"]] == [
        ("0.125", "0.13", "0.12")]


def test_agency_show_is_the_credits_view(northwind, run):
    run("domain", "add", "shared.northwind.example", "--agency", AGENCY, check_rc=0)
    run("account", "add", "quiet", "--agency", AGENCY, check_rc=0)
    run("usage", "record", "--inbound", "--domain", "shared.northwind.example", "--recipients", "3", check_rc=0)
    last = today().replace(day=1) - timedelta(days=1)
    for hour in (11, 12):  # two messages of 1,000 (the per-message cap): 2,000 emails last month
        run("usage", "record", "--user", LOGINS[0], "--recipients", "1000", "--at", f"{last.isoformat()}T{hour}:00:00Z",
            check_rc=0)
    this_m, last_m = today().strftime("%Y-%m"), last.strftime("%Y-%m")
    result = run("agency", "show", AGENCY, env=NARROW, check_rc=0)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", *AGENCY.split()]
    assert f"Credits: {today().replace(day=1).isoformat()} to {today().isoformat()} and {last_m} (UTC)" in result.stdout
    table = [line.split("│") for line in lines if "│" in line]
    assert [[c.strip() for c in row] for row in table] == [
        [ACCOUNT, "7", "$0.00", "2,000", "$1.35"],
        ["quiet", "0", "$0.00", "0", "$0.00"],
        ["(agency-assigned domains)", "3", "$0.00", "0", "$0.00"],
        ["Total", "10", "$0.01", "2,000", "$1.35"],
    ]
    assert result.stderr == (f"Note ({this_m}): the rows, each rounded to the cent, add up to $0.00; the total "
                             "$0.01 is the exact sum $0.00675 rounded once, which is what is billed.\n")
    data = json.loads(run("agency", "show", AGENCY, "--json", check_rc=0).stdout)
    assert data["accounts"] == [ACCOUNT, "quiet"]
    credits = data["credits"]
    assert (credits["this_month"]["month"], credits["last_month"]["month"]) == (this_m, last_m)
    assert credits["last_month"]["until"] == last.isoformat()
    assert [(r["account"], r["agency_assigned"], r["this_month"]["emails"], r["last_month"]["cost"])
            for r in credits["accounts"]] == [(ACCOUNT, False, 7, "1.35"), ("quiet", False, 0, "0.00"),
                                              (None, True, 3, "0.00")]
    assert credits["total"]["this_month"] == {"messages": 2, "emails": 10, "outbound": 7, "inbound": 3,
                                              "cost": "0.00675", "cost_rounded": "0.01"}
    missing = run("agency", "show", "ghost")
    assert (missing.returncode, missing.stderr) == (3, "Error: agency 'ghost' not found\n")


def test_usage_status_fail_at_exits_5_and_still_prints(northwind, run):
    run("account", "set-limit", ACCOUNT, "10", check_rc=0)  # 7 of 10 sent
    ok = run("usage", "status", "--fail-at", "71", check_rc=0)
    assert ACCOUNT in ok.stdout
    over = run("usage", "status", "--fail-at", "70", "--json")
    assert over.returncode == 5
    assert json.loads(over.stdout)[0]["sent"] == 7
    assert over.stderr == f"Error: 1 account at or over 70% of the daily limit: {ACCOUNT} (70.0%)\n"
    assert run("usage", "status", ACCOUNT, "--fail-at", "69.9").returncode == 5
    for bad in ("0", "-5", "abc", "nan"):
        result = run("usage", "status", "--fail-at", bad)
        assert (result.returncode, result.stderr) == (
            2, f"Error: --fail-at must be a percentage above 0, like 80 or 95.5, not {bad!r}\n")


def test_account_list_blocked(northwind, run):
    run("account", "add", "other", "--agency", AGENCY, check_rc=0)
    assert run("account", "list", "--blocked", "--json").stdout == "[]\n"
    assert run("account", "list", "--blocked").stderr == "No blocked accounts.\n"
    run("account", "block", "other", "--reason", "compliance review", check_rc=0)
    rows = json.loads(run("account", "list", "--blocked", "--json").stdout)
    assert [(r["name"], r["block_kind"], r["block_reason"]) for r in rows] == [
        ("other", "manual", "compliance review")]
    table = run("account", "list", "--blocked", env=NARROW).stdout.splitlines()
    assert [c.strip() for c in table[0].split("┃")] == ["Account", "Agency", "Blocked since (UTC)", "By", "Why"]
    assert [c.strip() for c in table[2].split("│")] == ["other", AGENCY, rows[0]["blocked_at"], "manual",
                                                        "compliance"]  # free text wraps; the rest stays whole
    assert [c.strip() for c in table[3].split("│")] == ["", "", "", "", "review"]


@pytest.mark.parametrize("word, days_ago", [("today", 0), ("yesterday", 1), ("7d", 7), ("0d", 0), ("Today", 0)])
def test_relative_days(run, word, days_ago):
    data = json.loads(run("usage", "report", "--since", word, "--json", check_rc=0).stdout)
    assert data["since"] == (today() - timedelta(days=days_ago)).isoformat()
    until = json.loads(run("usage", "report", "--since", "30d", "--until", word, "--json", check_rc=0).stdout)
    assert until["until"] == (today() - timedelta(days=days_ago)).isoformat()
    assert run("audit", "--since", word, "--json", check_rc=0).stdout.startswith("[")


def test_relative_days_in_the_store_zone():
    from smtpctl.core.model.clock import parse_day

    current = date(2026, 3, 1)
    assert parse_day("yesterday", "--since", current) == date(2026, 2, 28)
    assert parse_day("30d", "--since", current) == date(2026, 1, 30)
    assert parse_day(" 2026-11-26 ", "--since", current) == date(2026, 11, 26)
    from smtpctl.core.model.errors import InvalidInput

    for bad in ("d", "-1d", "1w", "1000000d", "tomorrow"):
        with pytest.raises(InvalidInput):
            parse_day(bad, "--since", current)


GROUPS = ["agency", "account", "domain", "user", "usage", "pricing", "imap", "store", "policy"]


@pytest.mark.parametrize("group", [None, *GROUPS])
def test_bare_group_prints_its_help_once(run, group):
    result = run(*([group] if group else []))
    assert result.returncode == 0
    assert result.stdout.count("Usage: smtpctl") == 1, result.stdout
    assert result.stdout.count("Examples") == 1
    assert result.stderr == ""
    assert result.stdout == run(*([group] if group else []), "--help").stdout


@pytest.mark.parametrize("shell, start", [
    ("zsh", "#compdef smtpctl"), ("fish", "complete --command smtpctl"), ("bash", "_smtpctl_completion() {"),
])
def test_show_completion_prints_the_named_shells_script(run, shell, start):
    result = run("--show-completion", shell, check_rc=0)
    assert result.stdout.strip().splitlines()[0] == start or result.stdout.startswith(start)
    assert "_SMTPCTL_COMPLETE=complete_" + shell in result.stdout


def test_show_completion_refuses_an_unknown_shell(run):
    result = run("--show-completion", "tcsh")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: Invalid value for '--show-completion': 'tcsh' is not one of")


def test_completion_answers_the_shell(run):
    env = {"_SMTPCTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "smtpctl ag"}
    result = run(env=env, check_rc=0)
    assert '"agency"' in result.stdout and "usage" not in result.stdout
    bash = run(env={"_SMTPCTL_COMPLETE": "complete_bash", "COMP_WORDS": "smtpctl us", "COMP_CWORD": "1"},
               check_rc=0)
    assert bash.stdout.split() == ["user", "usage"]


def _walk(command, path):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


def test_every_option_and_argument_has_help():
    missing = [f"{' '.join(path)} {param.name}" for path, command in _walk(typer.main.get_command(app), ("smtpctl",))
               for param in command.params if not (getattr(param, "help", None) or "").strip()]
    assert missing == []


def test_every_group_shows_real_examples():
    root = typer.main.get_command(app)
    groups = {" ".join(path[1:]) or "smtpctl" for path, command in _walk(root, ("smtpctl",))
              if len(path) <= 2}
    assert groups == set(NAMES), "a group without examples, or examples of no group"
    for name in NAMES:
        node = root if name == "smtpctl" else root.commands[name]
        assert node.epilog and "Examples" in node.epilog, name
        assert 2 <= len(_EXAMPLES[name]) <= 4
        for example in _EXAMPLES[name]:
            words = shlex.split(example.split(" > ")[0])
            assert words[0] == "smtpctl"
            command, rest = root, words[1:]
            while rest and getattr(command, "commands", None) and rest[0] in command.commands:
                command, rest = command.commands[rest[0]], rest[1:]
            options = {opt for param in command.params for opt in param.opts}
            used = {w.split("=")[0] for w in rest if w.startswith("--")}
            assert used <= options, (example, used - options)
            assert not getattr(command, "commands", None) or name == "smtpctl", example


def test_examples_show_in_help(run):
    result = run("usage", "--help", check_rc=0)
    assert "smtpctl usage status --fail-at 90" in result.stdout


def test_export_json_is_format_json(northwind, run):
    as_json = run("export", "--json", check_rc=0).stdout
    assert json.loads(as_json) == json.loads(run("export", "--format", "json", check_rc=0).stdout)
    assert run("export", "--json", "--format", "json", check_rc=0).stdout == as_json
    clash = run("export", "--json", "--format", "toml")
    assert (clash.returncode, clash.stdout, clash.stderr) == (
        2, "", "Error: --json is --format json; it cannot be combined with --format toml\n")
    assert run("export", check_rc=0).stdout.startswith("version = 1")


def test_imap_marks_pop3s_and_drops_the_article(run):
    listed = json.loads(run("imap", "list", "--json", check_rc=0).stdout)
    assert [(p["provider"], p["port"], p["protocol"]) for p in listed[:3]] == [
        ("Gmail", 993, "IMAPS"), ("Verizon", 995, "POP3S"), ("AOL", 993, "IMAPS")]
    verizon = run("imap", "lookup", "verizon", check_rc=0)
    assert "POP3S" in verizon.stdout and "not an IMAP one" in verizon.stdout
    for args in (["imap", "list"], ["imap", "lookup", "titan"], ["imap", "--help"], ["imap", "list", "--help"]):
        result = run(*args, check_rc=0)
        assert "article" not in (result.stdout + result.stderr).lower(), args


def test_day_and_percent_parsers_take_any_text():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from smtpctl.core.model.clock import parse_day
    from smtpctl.core.model.errors import InvalidInput
    from smtpctl.core.reporting.status import parse_percent

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=30))
    def check(text):
        for parse in (lambda t: parse_day(t, "--since", date(2026, 11, 28)), lambda t: parse_percent(t, "--fail-at")):
            try:
                parse(text)
            except InvalidInput as exc:
                assert "\n" not in exc.message.replace(repr(text), "")

    check()
