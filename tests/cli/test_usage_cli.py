"""usage, pricing and account block/unblock: exact output and exit codes."""

import json

import pytest

PW = "a good long password"


@pytest.fixture(autouse=True)
def world(cli):
    for args in (["agency", "add", "acme"], ["account", "add", "shop", "--agency", "acme", "--daily-limit", "10"],
                 ["domain", "add", "d.example", "--account", "shop"]):
        assert cli(*args).exit_code == 0
    for login in ("a@d.example", "b@d.example"):
        assert cli("user", "create", login, "--password-stdin", input=PW + "\n").exit_code == 0


def test_record_addresses(cli):
    result = cli("usage", "record", "--user", "a@d.example", "--to", "x@y.test", "--to", "z@y.test",
                 "--cc", "c@y.test", "--bcc", "b@y.test", "--at", "2026-10-01T10:00:00Z", "--id", "q1")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "", "Recorded 1 outbound message (4 emails) for a@d.example on 2026-10-01.\n")
    dup = cli("usage", "record", "--user", "a@d.example", "--recipients", "1", "--id", "q1", "--json")
    data = json.loads(dup.stdout)
    assert (dup.exit_code, data["status"], data["event"], data["limit_exceeded"]) == (0, "duplicate", None, False)
    assert dup.stderr == ""


def test_record_json_shape_and_the_crossing(cli):
    first = json.loads(cli("usage", "record", "--user", "a@d.example", "--recipients", "10", "--json").stdout)
    assert set(first) == {"status", "event", "limit_exceeded", "revoked_credentials", "crossings"}
    assert set(first["event"]) == {"id", "at", "day", "direction", "user", "domain", "account", "to", "cc", "bcc",
                                   "emails"}
    crossing = cli("usage", "record", "--user", "b@d.example", "--recipients", "1", "--json")
    data = json.loads(crossing.stdout)
    assert crossing.exit_code == 0
    assert (data["limit_exceeded"], data["revoked_credentials"]) == (True, ["a@d.example", "b@d.example"])
    day = data["event"]["day"]
    assert crossing.stderr == (
        f"Warning: account shop went over its daily limit on {day} (11 of 10 emails): revoked 2 credentials: "
        "a@d.example, b@d.example; credential creation is blocked until an operator runs "
        "'smtpctl account unblock shop'\n")
    assert cli("user", "list", "--json").stdout == "[]\n"
    blocked = cli("user", "create", "c@d.example", "--generate")
    assert (blocked.exit_code, blocked.stderr) == (
        6, "Error: SMTP Credential creation is blocked. Please contact support… (account shop is blocked: daily "
           f"limit of 10 emails exceeded on {day} (11 sent); more: smtpctl account show shop)\n")
    shown = json.loads(cli("account", "show", "shop", "--json").stdout)
    assert (shown["blocked"], shown["block_kind"]) == (True, "limit")
    assert shown["block_reason"] == f"daily limit of 10 emails exceeded on {day} (11 sent)"
    lifted = cli("account", "unblock", "shop")
    assert (lifted.exit_code, lifted.stderr) == (0, "Credential creation unblocked for shop. Credentials deleted by "
                                                    "the block are not restored; create new ones.\n"
                                                    "Warning: shop has already sent 11 emails today, over its daily "
                                                    "limit of 10: its next email blocks it again and revokes its SMTP "
                                                    "credentials; raise the limit with: smtpctl account set-limit "
                                                    "shop N\n")
    assert cli("user", "create", "c@d.example", "--generate").exit_code == 0


@pytest.mark.parametrize("args, code, error", [
    (["usage", "record", "--user", "a@nope.example", "--recipients", "1"], 3,
     "Error: unknown sender a@nope.example: domain nope.example is not in the store\n"),
    (["usage", "record", "--recipients", "1"], 2,
     "Error: an outbound message needs the sending credential's login (user)\n"),
    (["usage", "record", "--user", "a@d.example"], 2, "Error: a message needs at least one recipient\n"),
    (["usage", "record", "--user", "a@d.example", "--recipients", "2", "--to", "x@y.test"], 2,
     "Error: give either recipients (a count) or to/cc/bcc addresses, not both\n"),
    (["usage", "record", "--user", "a@d.example", "--to", "nobody"], 2, "Error: invalid recipient address 'nobody'\n"),
    (["usage", "record", "--inbound", "--recipients", "1"], 2, "Error: an inbound message needs the receiving domain\n"),
    (["usage", "record", "--user", "a@d.example", "--recipients", "1", "--at", "soon"], 2,
     "Error: invalid time 'soon': use ISO 8601, e.g. 2026-11-26T10:00:00Z\n"),
    (["usage", "record", "--user", "a@d.example", "--recipients", "1", "--at", "2999-01-01T00:00:00Z"], 2,
     "Error: time 2999-01-01T00:00:00Z is in the future\n"),
    (["usage", "report", "--by", "week"], 2,
     "Error: --by must be one of day, agency, account, domain, user, direction, not 'week'\n"),
    (["usage", "report", "--since", "last week"], 2, "Error: --since must be a date like 2026-11-26, today, yesterday or 7d (7 days ago), not 'last week'\n"),
    (["usage", "status", "ghost"], 3, "Error: account 'ghost' not found\n"),
    (["usage", "import", "/nonexistent/file.jsonl"], 2, "Error: cannot read /nonexistent/file.jsonl: No such file or directory\n"),
    (["pricing", "estimate"], 2,
     "Error: give exactly one volume: --emails N, --per-day N [--days D], or --messages N --recipients R\n"),
    (["pricing", "estimate", "--emails", "5", "--compare", "SES"], 2,
     "Error: --compare takes NAME=RATE, e.g. SES=0.10, not 'SES'\n"),
    (["account", "block", "shop", "--reason", "x", "--revoke"], 2,
     "Error: Block shop and delete its 2 SMTP credentials? Refusing without --yes (no terminal to confirm on); "
     "nothing was changed\n"),
    (["account", "block", "ghost", "--reason", "x"], 3, "Error: account 'ghost' not found\n"),
])
def test_refusals(cli, args, code, error):
    before = cli("usage", "report", "--json", "--since", "2000-01-01").stdout
    result = cli(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", error)
    assert cli("usage", "report", "--json", "--since", "2000-01-01").stdout == before
    assert len(json.loads(cli("user", "list", "--json").stdout)) == 2


def test_import_jsonl_summary_and_rejects(cli, tmp_path):
    src = tmp_path / "u.jsonl"
    src.write_text(
        '{"user": "a@d.example", "to": ["x@y.test"], "at": "2026-10-01T10:00:00Z", "id": "e1"}\n'
        '{"user": "a@d.example", "recipients": 3, "at": "2026-10-01T11:00:00Z", "id": "e2"}\n'
        "garbage\n"
        '{"user": "a@d.example", "recipients": 3, "at": "2026-10-01T11:00:00Z", "id": "e2"}\n')
    result = cli("usage", "import", str(src))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == ("Reading " + str(src) + " as jsonl (from its name).\n"
                             "Imported 2 messages (4 emails); 1 duplicate skipped; 1 line rejected.\n"
                             "  line 3: not JSON: Expecting value\n"
                             "Error: 1 line rejected (listed above); every other line was imported\n")
    again = json.loads(cli("usage", "import", str(src), "--json").stdout)
    assert (again["messages"], again["duplicates_skipped"], again["lines_rejected"]) == (0, 3, 1)
    strict = cli("usage", "import", str(src), "--strict")
    assert (strict.exit_code, strict.stderr) == (2, "Reading " + str(src) + " as jsonl (from its name).\n"
                                                    "Error: line 3: not JSON: Expecting value\n")


def test_import_csv_from_stdin(cli):
    data = "user,to,cc,bcc,at,id\na@d.example,x@y.test;z@y.test,c@y.test,,2026-10-01T10:00:00Z,c1\n"
    result = cli("usage", "import", "-", "--format", "csv", "--json", input=data)
    summary = json.loads(result.stdout)
    assert (summary["messages"], summary["emails"]) == (1, 3)


def test_report_table_csv_and_json(cli):
    cli("usage", "record", "--user", "a@d.example", "--recipients", "3", "--at", "2026-10-01T10:00:00Z")
    cli("usage", "record", "--user", "b@d.example", "--recipients", "45", "--at", "2026-10-02T10:00:00Z")
    data = json.loads(cli("usage", "report", "--since", "2026-10-01", "--until", "2026-10-31", "--by", "day",
                          "--json").stdout)
    assert set(data) == {"since", "until", "timezone", "by", "price_per_1000", "prices", "rows", "total"}
    assert [(r["day"], r["emails"], r["cost"]) for r in data["rows"]] == [
        ("2026-10-01", 3, "0.002025"), ("2026-10-02", 45, "0.030375")]
    assert data["total"]["cost"] == "0.0324" and data["total"]["cost_rounded"] == "0.03"
    csv_lines = cli("usage", "report", "--since", "2026-10-01", "--until", "2026-10-31", "--by", "user",
                    "--csv").stdout.splitlines()
    assert csv_lines == ["user,messages,emails,outbound,inbound,cost,cost_rounded",
                         "a@d.example,1,3,3,0,0.002025,0.00", "b@d.example,1,45,45,0,0.030375,0.03"]
    table = cli("usage", "report", "--since", "2026-10-01", "--until", "2026-10-31", "--by", "day").stdout
    assert "Total" in table and "█" in table


def test_status_warns_at_80_percent(cli):
    cli("usage", "record", "--user", "a@d.example", "--recipients", "8")
    result = cli("usage", "status", "shop", "--json")
    row = json.loads(result.stdout)[0]
    assert (row["sent"], row["limit"], row["remaining"], row["level"]) == (8, 10, 2, "warning")
    assert result.stderr == "Warning: shop has used 80.0% of its daily limit (8 of 10 emails today)\n"


def test_pricing(cli):
    data = json.loads(cli("pricing", "estimate", "--per-day", "1500", "--json").stdout)
    assert (data["emails"], data["cost"], data["cost_rounded"]) == (45000, "30.375", "30.38")
    assert data["comparisons"][0] == {"name": "Mailgun", "rate_per_1000": "0.80", "cost": "36.00",
                                      "cost_rounded": "36.00", "saving": "5.625", "saving_rounded": "5.63",
                                      "saving_as_billed": "5.62"}
    by_msgs = json.loads(cli("pricing", "estimate", "--messages", "100", "--recipients", "4", "--rate", "1",
                             "--compare", "A=2", "--compare", "B=0.5", "--json").stdout)
    assert (by_msgs["emails"], by_msgs["cost"]) == (400, "0.40")
    assert [(c["name"], c["saving"]) for c in by_msgs["comparisons"]] == [("A", "0.40"), ("B", "-0.20")]


def test_manual_block_with_revoke(cli):
    result = cli("account", "block", "shop", "--reason", "compliance flag", "--revoke", "--yes")
    assert (result.exit_code, result.stderr) == (0, "Credential creation blocked for shop: compliance flag.\n"
                                                    "Revoked 2 SMTP credentials: a@d.example, b@d.example.\n")
    assert cli("user", "list", "--json").stdout == "[]\n"
    assert cli("user", "create", "n@d.example", "--generate").exit_code == 6
