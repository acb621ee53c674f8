"""Exact exit codes and output of the foundation commands, as a script sees them."""

import json

import pytest

import smtpctl.cli.agency as agency_cli


def test_version(cli):
    from smtpctl import __version__

    result = cli("--version")
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"smtpctl {__version__}\n", "")


def test_agency_add_then_duplicate(cli):
    first = cli("agency", "add", "Acme")
    assert (first.exit_code, first.stdout, first.stderr) == (0, "", "Agency 'Acme' created.\n")
    dup = cli("agency", "add", "acme")
    assert (dup.exit_code, dup.stdout, dup.stderr) == (4, "", "Error: agency 'Acme' already exists\n")
    ok = cli("agency", "add", "acme", "--exist-ok")
    assert (ok.exit_code, ok.stderr) == (0, "Agency 'Acme' already exists (unchanged).\n")


def test_agency_add_json(cli):
    result = cli("agency", "add", "Acme", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0
    assert set(data) == {"name", "created_at", "status"}
    assert (data["name"], data["status"]) == ("Acme", "created")
    assert data["created_at"].endswith("Z")
    again = json.loads(cli("agency", "add", "Acme", "--json", "--exist-ok").stdout)
    assert again["status"] == "unchanged"


def test_lists_as_json_and_csv(cli):
    cli("agency", "add", "acme")
    cli("account", "add", "shop", "--agency", "acme")
    cli("domain", "add", "Bücher.example", "--account", "shop")
    cli("domain", "add", "shared.example", "--agency", "acme")
    agencies = json.loads(cli("agency", "list", "--json").stdout)
    assert [(a["name"], a["accounts"], a["domains"]) for a in agencies] == [("acme", 1, 2)]
    accounts = json.loads(cli("account", "list", "--json").stdout)
    assert len(accounts) == 1
    assert set(accounts[0]) == {"name", "agency", "daily_limit", "effective_daily_limit", "blocked",
                                "blocked_at", "block_kind", "block_reason", "domains", "created_at", "updated_at"}
    assert (accounts[0]["daily_limit"], accounts[0]["effective_daily_limit"]) == (None, 1500)
    domains = json.loads(cli("domain", "list", "--json").stdout)
    assert [(d["name"], d["unicode_name"], d["kind"], d["account"], d["agency"]) for d in domains] == [
        ("shared.example", "shared.example", "agency-assigned", None, "acme"),
        ("xn--bcher-kva.example", "bücher.example", "dedicated", "shop", "acme"),
    ]
    csv_out = cli("domain", "list", "--csv", "--account", "shop").stdout.splitlines()
    assert csv_out[0] == "name,unicode_name,kind,account,agency,credentials,created_at"
    assert csv_out[1].startswith("xn--bcher-kva.example,bücher.example,dedicated,shop,acme,0,")
    assert len(csv_out) == 2


def test_empty_lists(cli):
    result = cli("agency", "list")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "No agencies yet. Add one with: smtpctl agency add NAME\n"
    assert cli("account", "list", "--json").stdout == "[]\n"


def test_table_output_for_people(cli):
    cli("agency", "add", "acme")
    out = cli("agency", "list").stdout
    assert "Agency" in out and "acme" in out


@pytest.mark.parametrize("args, code, error", [
    (["account", "add", "shop", "--agency", "ghost"], 3, "Error: agency 'ghost' not found\n"),
    (["account", "add", "shop"], 2, "Error: Missing option '--agency'.\n"),
    (["account", "show", "ghost"], 3, "Error: account 'ghost' not found\n"),
    (["domain", "add", "bad_name.example", "--agency", "acme"], 2,
     "Error: invalid domain name 'bad_name.example': Codepoint U+005F at position 4 of 'bad_name' not allowed\n"),
    (["domain", "add", "localhost", "--agency", "acme"], 2,
     "Error: invalid domain name 'localhost': it needs at least two labels (e.g. mail.example.com)\n"),
    (["domain", "add", "x.example"], 2,
     "Error: give exactly one of --account (dedicated domain) or --agency (agency-assigned domain)\n"),
    (["domain", "show", "nope.example"], 3, "Error: domain 'nope.example' not found\n"),
    (["account", "set-limit", "ghost", "10"], 3, "Error: account 'ghost' not found\n"),
    (["agency", "list", "--json", "--csv"], 2, "Error: --json and --csv cannot be used together\n"),
    (["store", "set", "price_per_1000", "cheap"], 2,
     "Error: price must be a decimal number such as 0.675, not 'cheap'\n"),
    (["nope"], 2, "Error: No such command 'nope'.\n"),
])
def test_refusals(cli, args, code, error):
    cli("agency", "add", "acme")
    result = cli(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", error)


def test_duplicate_domain_names_its_owner(cli):
    cli("agency", "add", "acme")
    cli("account", "add", "shop", "--agency", "acme")
    cli("domain", "add", "d.example", "--account", "shop")
    result = cli("domain", "add", "D.EXAMPLE", "--agency", "acme")
    assert (result.exit_code, result.stderr) == (
        4, "Error: domain 'd.example' already exists (dedicated, account 'shop')\n")
    assert cli("domain", "add", "d.example", "--account", "shop", "--exist-ok").exit_code == 0


def test_set_limit_and_show(cli):
    cli("agency", "add", "acme")
    cli("account", "add", "shop", "--agency", "acme", "--daily-limit", "2000")
    result = cli("account", "set-limit", "shop", "500")
    assert (result.exit_code, result.stderr) == (0, "Account 'shop' daily limit set to 500 emails a day (was 2,000 "
                                                    "emails).\n")
    shown = json.loads(cli("account", "show", "shop", "--json").stdout)
    assert (shown["daily_limit"], shown["effective_daily_limit"], shown["blocked"]) == (500, 500, False)
    bad = cli("account", "set-limit", "shop", "0")
    assert (bad.exit_code, bad.stderr) == (2, "Error: daily limit must be between 1 and 100,000,000, not 0\n")


def test_store_settings_show_and_set(cli):
    shown = json.loads(cli("store", "show", "--json").stdout)
    assert shown == {
        "smtp_host": "smtp.mailgun.org", "timezone": "UTC", "default_daily_limit": 1500,
        "credentials_per_domain": 5, "price_per_1000": "0.675", "compare_name": "Mailgun",
        "compare_price_per_1000": "0.80", "max_recipients_per_message": 1000, "sender_alignment": "on",
    }
    result = cli("store", "set", "timezone", "Europe/Berlin")
    assert (result.exit_code, result.stderr) == (0, "Setting timezone = Europe/Berlin (updated).\n")
    assert json.loads(cli("store", "show", "--json").stdout)["timezone"] == "Europe/Berlin"
    bad = cli("store", "set", "colour", "blue")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("Error: unknown setting 'colour'; known settings: smtp_host, timezone,")


def test_store_info(cli):
    cli("agency", "add", "acme")
    info = json.loads(cli("store", "info", "--json").stdout)
    assert set(info) == {"path", "schema_version", "schema_step", "counts", "size_bytes"}
    assert info["counts"]["agencies"] == 1


@pytest.mark.sqlite_only("store backup copies an SQLite file (on PostgreSQL: pg_dump)")
def test_store_backup(cli, tmp_path):
    cli("agency", "add", "acme")
    target = tmp_path / "b.db"
    first = cli("store", "backup", str(target))
    assert first.exit_code == 0 and target.exists()
    second = cli("store", "backup", str(target))
    assert (second.exit_code, second.stderr) == (4, f"Error: {target} already exists; use --force to overwrite it\n")
    assert cli("store", "backup", str(target), "--force").exit_code == 0


def test_store_backup_of_a_postgresql_store_is_refused(cli, pg_dsn, tmp_path):
    assert cli("--db", pg_dsn, "agency", "add", "acme").exit_code == 0
    result = cli("--db", pg_dsn, "store", "backup", str(tmp_path / "b.db"))
    assert (result.exit_code, result.stdout) == (7, "")
    assert result.stderr == ("Error: store backup copies an SQLite store; for PostgreSQL use pg_dump, "
                             "or smtpctl store copy to an SQLite file\n")
    assert not (tmp_path / "b.db").exists()


def test_remove_domain_without_credentials(cli):
    cli("agency", "add", "acme")
    cli("domain", "add", "shared.example", "--agency", "acme")
    result = cli("domain", "remove", "shared.example")
    assert (result.exit_code, result.stderr) == (0, "Domain shared.example removed; 0 credentials deleted.\n")
    assert cli("domain", "list", "--json").stdout == "[]\n"


def test_bare_group_prints_help(cli):
    result = cli("agency")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout and "add" in result.stdout


def test_internal_errors_are_one_line(cli, monkeypatch):

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(agency_cli, "list_agencies", boom)
    result = cli("agency", "list")
    assert result.exit_code == 1
    assert result.stderr == ("Error: internal error (ZeroDivisionError: division by zero); "
                             "rerun with SMTPCTL_DEBUG=1 for a traceback\n")
