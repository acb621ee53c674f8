"""smtpctl billing and usage prune (docs/billing.md): exact output, exit codes
and the JSON shapes ../shared/CLI.md fixes; bad input changes nothing."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from smtpctl.core.billing import statements
from smtpctl.core.store import Store

PW = "a good long password"
# the store's zone is UTC; a run crossing midnight UTC is not worth a fake clock here
TODAY = datetime.now(timezone.utc).date().isoformat()

BALANCE_KEYS = {"agency", "mode", "credits", "charges", "balance", "warn_below",  # CLI.md
                "balance_rounded", "low", "exhausted"}
STATEMENT_KEYS = {"number", "agency", "month", "status", "lines", "credits", "opening_balance", "charges",
                  "closing_balance", "total", "total_exact",  # CLI.md
                  "since", "until", "mode", "resale_total", "margin"}
LINE_KEYS = {"account", "messages", "outbound", "inbound", "emails", "price_per_1000", "amount", "amount_exact",
             "late"}


@pytest.fixture(autouse=True)
def world(cli):
    for args in (["agency", "add", "acme"], ["account", "add", "shop", "--agency", "acme"],
                 ["account", "add", "blog", "--agency", "acme"], ["domain", "add", "d.example", "--account", "shop"],
                 ["domain", "add", "b.example", "--account", "blog"],
                 ["domain", "add", "shared.example", "--agency", "acme"]):
        assert cli(*args).exit_code == 0, args
    for login in ("a@d.example", "w@b.example"):
        assert cli("user", "create", login, "--password-stdin", input=PW + "\n").exit_code == 0


def ok(cli, *args, input=None):
    result = cli(*args, input=input)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result


def november(cli):
    """The issue's month: 1,500 emails of shop, 333 of blog and 10 inbound on the agency's domain,
    with the price changed to 0.90 from the 15th."""
    for args in (["--user", "a@d.example", "--recipients", "1000", "--at", "2026-11-03T10:00:00Z"],
                 ["--user", "a@d.example", "--recipients", "500", "--at", "2026-11-20T10:00:00Z"],
                 ["--user", "w@b.example", "--recipients", "333", "--at", "2026-11-21T10:00:00Z"],
                 ["--inbound", "--domain", "shared.example", "--recipients", "10", "--at", "2026-11-21T11:00:00Z"]):
        ok(cli, "usage", "record", *args)
    ok(cli, "billing", "set-price", "0.90", "--from", "2026-11-15")


def everything(cli) -> list[str]:
    """What the billing commands and a report show: equal before and after a refusal means nothing changed."""
    return [cli(*args).stdout for args in (["billing", "prices", "--json"], ["billing", "balance", "--json"],
                                           ["billing", "statements", "--json"], ["billing", "prices", "--agency",
                                                                                 "acme", "--json"],
                                           ["usage", "report", "--since", "2000-01-01", "--json"],
                                           ["audit", "--json"])]


# -- prices ------------------------------------------------------------------------------


def test_prices_start_with_the_service_price_and_a_change_is_from_a_day(cli):
    table = ok(cli, "billing", "prices")
    assert "(the beginning)" in table.stdout and "0.675" in table.stdout and table.stderr == ""
    assert ok(cli, "billing", "prices", "--json").stdout == (
        '[{"kind": "service", "agency": null, "from": null, "price_per_1000": "0.675"}]\n')
    changed = ok(cli, "billing", "set-price", "0.90", "--from", "2026-11-15")
    assert (changed.stdout, changed.stderr) == (
        "", "The price is $0.90 per 1,000 emails from 2026-11-15 on (created; before: $0.675).\n"
            "Warning: price_per_1000 0.90 departs from the service's price of $0.675 per 1,000 emails\n")
    again = ok(cli, "billing", "set-price", "0.90", "--from", "2026-11-15", "--json")
    assert json.loads(again.stdout) == {"kind": "service", "agency": None, "from": "2026-11-15",
                                        "price_per_1000": "0.90", "status": "unchanged", "was": "0.90",
                                        "warnings": ["price_per_1000 0.90 departs from the service's price of "
                                                     "$0.675 per 1,000 emails"]}
    assert ok(cli, "billing", "prices", "--csv").stdout == "from,price_per_1000\n,0.675\n2026-11-15,0.90\n"


def test_a_report_spanning_a_change_prices_each_day_at_its_price(cli):
    november(cli)
    report = json.loads(ok(cli, "usage", "report", "--since", "2026-11-01", "--until", "2026-11-30",
                           "--json").stdout)
    assert report["prices"] == [{"since": "2026-11-01", "until": "2026-11-14", "price_per_1000": "0.675"},
                                {"since": "2026-11-15", "until": "2026-11-30", "price_per_1000": "0.90"}]
    assert report["price_per_1000"] == "0.90"  # kept: extend, never break


def test_store_set_price_means_from_today_and_says_so(cli):
    result = ok(cli, "store", "set", "price_per_1000", "0.70")
    assert result.stderr == (
        f"Setting price_per_1000 = 0.70 from today, {TODAY} (created); earlier days keep the price they had "
        "(smtpctl billing set-price PRICE --from DATE sets a price from another day).\n"
        "Warning: price_per_1000 0.70 departs from the service's price of $0.675 per 1,000 emails\n")
    assert json.loads(ok(cli, "billing", "prices", "--json").stdout)[-1] == {
        "kind": "service", "agency": None, "from": TODAY, "price_per_1000": "0.70"}


def test_resale_prices(cli):
    assert ok(cli, "billing", "prices", "--agency", "acme").stderr == (
        "No resale price set: the agency resells at the service's prices.\n")
    result = ok(cli, "billing", "set-resale", "acme", "1.50", "--from", "2026-11-01")
    assert (result.stdout, result.stderr) == (
        "", "acme's resale price is $1.50 per 1,000 emails from 2026-11-01 on (created; before: $0.675).\n")
    assert ok(cli, "billing", "prices", "--agency", "acme", "--json").stdout == (
        '[{"kind": "resale", "agency": "acme", "from": "2026-11-01", "price_per_1000": "1.50"}]\n')


# -- credits, modes, warnings ------------------------------------------------------------------


def test_credit_with_a_ref_is_added_once(cli):
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "3")
    first = ok(cli, "billing", "credit", "acme", "25.50", "--note", "invoice 7", "--ref", "pay-1")
    assert (first.stdout, first.stderr) == ("", "Added $25.50 to acme; balance $25.50.\n")
    again = ok(cli, "billing", "credit", "acme", "25.50", "--ref", "pay-1")
    assert again.stderr == "Credit 'pay-1' is already in acme's ledger (unchanged); balance $25.50.\n"
    added = json.loads(ok(cli, "billing", "credit", "acme", "$5", "--json").stdout)
    assert added == {"agency": "acme", "amount": "5.00", "note": None, "ref": None, "day": TODAY,
                     "status": "created", "balance": "30.497975", "resumed": False, "warnings": []}


def test_balance_json_and_csv_shapes(cli):
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "3")
    ok(cli, "billing", "credit", "acme", "25.50")
    ok(cli, "agency", "add", "idle")
    data = json.loads(ok(cli, "billing", "balance", "--json").stdout)
    assert [set(row) for row in data] == [BALANCE_KEYS, BALANCE_KEYS]
    assert data == [
        {"agency": "acme", "mode": "postpaid", "credits": "25.50", "charges": "0.002025", "balance": "25.497975",
         "balance_rounded": "25.50", "warn_below": None, "low": False, "exhausted": False},
        {"agency": "idle", "mode": "postpaid", "credits": "0.00", "charges": "0.00", "balance": "0.00",
         "balance_rounded": "0.00", "warn_below": None, "low": False, "exhausted": False}]
    one = ok(cli, "billing", "balance", "acme", "--csv")
    assert one.stdout == ("agency,mode,credits,charges,balance,warn_below\n"
                          "acme,postpaid,25.50,0.002025,25.497975,\n")
    table = ok(cli, "billing", "balance", "acme")
    assert "$25.50" in table.stdout and "postpaid" in table.stdout and table.stderr == ""


def test_set_mode_and_set_warn_warn_below_the_level(cli):
    ok(cli, "billing", "credit", "acme", "1")
    assert ok(cli, "billing", "set-mode", "acme", "prepaid").stderr == "acme is prepaid (updated); balance $1.00.\n"
    same = json.loads(ok(cli, "billing", "set-mode", "acme", "PREPAID", "--json").stdout)
    assert (same["mode"], same["status"]) == ("prepaid", "unchanged") and set(same) == BALANCE_KEYS | {"status"}
    low = ("Warning: agency acme's credits are low: balance $1.00, below its warning level of $5.00; top up with: "
           "smtpctl billing credit acme AMOUNT\n")
    assert ok(cli, "billing", "set-warn", "acme", "5").stderr == "acme: warns below $5.00 (updated).\n" + low
    balance = ok(cli, "billing", "balance")
    assert balance.stderr == low and "$5.00" in balance.stdout
    assert json.loads(ok(cli, "billing", "balance", "--json").stdout)[0]["warn_below"] == "5.00"
    assert ok(cli, "usage", "status").stderr == low
    assert ok(cli, "agency", "show", "acme").stderr == low
    off = ok(cli, "billing", "set-warn", "acme", "none")
    assert off.stderr == "acme: no low-balance warning (updated).\n"
    assert ok(cli, "billing", "balance").stderr == ""


# -- prepaid at zero ---------------------------------------------------------------------------


def test_a_prepaid_agency_out_of_credits_makes_usage_record_exit_5_until_topped_up(cli, tmp_path):
    ok(cli, "billing", "set-mode", "acme", "prepaid")
    ok(cli, "billing", "credit", "acme", "0.01")  # 14.8 emails at 0.675 per 1,000
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "10")
    ok(cli, "usage", "record", "--user", "w@b.example", "--recipients", "10")  # crosses zero: recorded
    refused = cli("usage", "record", "--user", "a@d.example", "--recipients", "1")
    assert (refused.exit_code, refused.stdout, refused.stderr) == (
        5, "", "Error: agency acme's prepaid credits are used up (balance 0.00 USD): message refused, not "
               "recorded; sending resumes once the agency is topped up\n")
    used_up = ("Warning: agency acme is prepaid and its credits are used up (balance -$0.00): its accounts cannot "
               "send until it is topped up; top up with: smtpctl billing credit acme AMOUNT\n")
    assert ok(cli, "billing", "balance").stderr == used_up
    assert json.loads(ok(cli, "billing", "balance", "--json").stdout)[0]["exhausted"] is True
    # an import rejects the line past zero (exit 2, the reason listed); the credentials stay
    src = tmp_path / "u.jsonl"
    src.write_text('{"user": "a@d.example", "recipients": 1, "id": "x1"}\n')
    imported = cli("usage", "import", str(src))
    assert imported.exit_code == 2
    assert "  line 1: agency acme's prepaid credits are used up" in imported.stderr
    assert len(json.loads(ok(cli, "user", "list", "--json").stdout)) == 2
    topped = ok(cli, "billing", "credit", "acme", "1")
    assert topped.stderr == "Added $1.00 to acme; balance $1.00.\nacme is above zero again: its accounts may send.\n"
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "1")


def test_postpaid_never_stops(cli):
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "1000")
    assert json.loads(ok(cli, "billing", "balance", "--json").stdout)[0]["balance"] == "-0.675"
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "1")


# -- statements -------------------------------------------------------------------------------


def test_statement_json_has_a_line_per_price_and_the_agency_assigned_line(cli):
    november(cli)
    draft = json.loads(ok(cli, "billing", "statement", "acme", "2026-11", "--json").stdout)
    assert set(draft) == STATEMENT_KEYS and all(set(line) == LINE_KEYS for line in draft["lines"])
    assert (draft["number"], draft["status"]) == (None, "draft")
    assert draft["lines"] == [
        {"account": "blog", "messages": 1, "outbound": 333, "inbound": 0, "emails": 333, "price_per_1000": "0.90",
         "amount": "0.30", "amount_exact": "0.2997", "late": False},
        {"account": "shop", "messages": 1, "outbound": 1000, "inbound": 0, "emails": 1000,
         "price_per_1000": "0.675", "amount": "0.68", "amount_exact": "0.675", "late": False},
        {"account": "shop", "messages": 1, "outbound": 500, "inbound": 0, "emails": 500, "price_per_1000": "0.90",
         "amount": "0.45", "amount_exact": "0.45", "late": False},
        {"account": None, "messages": 1, "outbound": 0, "inbound": 10, "emails": 10, "price_per_1000": "0.90",
         "amount": "0.01", "amount_exact": "0.009", "late": False}]
    assert {k: draft[k] for k in ("credits", "opening_balance", "charges", "closing_balance", "total",
                                  "total_exact", "resale_total", "margin")} == {
        "credits": "0.00", "opening_balance": "0.00", "charges": "1.44", "closing_balance": "-1.44",
        "total": "1.44", "total_exact": "1.4337", "resale_total": None, "margin": None}
    table = ok(cli, "billing", "statement", "acme", "2026-11")
    assert "DRAFT statement (not closed): acme, 2026-11" in table.stdout
    assert "(agency-assigned domains)" in table.stdout
    assert table.stdout.endswith("Total $1.44 (exact 1.4337)\n"
                                 "Opening balance $0.00, credits $0.00, charges $1.44, closing balance -$1.44\n")
    assert table.stderr == ("This is a draft: the month is not closed (smtpctl billing close YYYY-MM closes an ended "
                            "month).\n")


def test_close_numbers_once_and_closing_again_is_a_no_op(cli):
    november(cli)
    closed = ok(cli, "billing", "close", "2026-11")
    assert (closed.stdout, closed.stderr) == ("", "Statement 2026-11-0001 (acme, 2026-11) closed: total $1.44.\n")
    before = everything(cli)
    again = ok(cli, "billing", "close", "2026-11")
    assert again.stderr == "Statement 2026-11-0001 (acme, 2026-11) was already closed: total $1.44.\n"
    assert json.loads(ok(cli, "billing", "close", "2026-11", "--json").stdout) == [
        {"number": "2026-11-0001", "agency": "acme", "month": "2026-11", "total": "1.44", "lines": 4,
         "status": "unchanged"}]
    assert everything(cli) == before
    doc = json.loads(ok(cli, "billing", "statement", "acme", "2026-11", "--json").stdout)
    assert (doc["number"], doc["status"]) == ("2026-11-0001", "closed")
    assert set(doc) == STATEMENT_KEYS | {"closed_at"}
    table = ok(cli, "billing", "statement", "acme", "2026-11")
    assert "Statement 2026-11-0001: acme, 2026-11" in table.stdout and table.stderr == ""
    assert ok(cli, "billing", "statement", "acme", "2026-11", "--csv").stdout == (
        "account,what,messages,outbound,inbound,emails,price_per_1000,amount,amount_exact\n"
        "blog,,1,333,0,333,0.90,0.30,0.2997\n"
        "shop,,1,1000,0,1000,0.675,0.68,0.675\n"
        "shop,,1,500,0,500,0.90,0.45,0.45\n"
        "(agency-assigned domains),,1,0,10,10,0.90,0.01,0.009\n")
    [listed] = json.loads(ok(cli, "billing", "statements", "--json").stdout)
    assert set(listed) == {"number", "agency", "month", "closed_at", "total", "closing_balance"}
    assert (listed["number"], listed["total"], listed["closing_balance"]) == ("2026-11-0001", "1.44", "-1.44")
    assert listed["closed_at"].endswith("Z")
    csv = ok(cli, "billing", "statements", "--agency", "acme", "--csv").stdout.splitlines()
    assert csv[0] == "number,agency,month,total,closing_balance,closed_at"
    assert csv[1].startswith("2026-11-0001,acme,2026-11,1.44,-1.44,")


def test_late_usage_is_a_late_line_of_the_next_statement_and_closed_ones_never_change(cli, isolated_store):
    november(cli)
    ok(cli, "billing", "set-resale", "acme", "1.50", "--from", "2026-11-01")
    ok(cli, "billing", "close", "2026-11")
    agency = ok(cli, "billing", "statement", "acme", "2026-11", "--json").stdout
    client = ok(cli, "billing", "statement", "acme", "2026-11", "--account", "shop", "--json").stdout
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "7", "--at", "2026-11-25T10:00:00Z")
    assert ok(cli, "billing", "statement", "acme", "2026-11", "--json").stdout == agency
    assert ok(cli, "billing", "statement", "acme", "2026-11", "--account", "shop", "--json").stdout == client
    # the HTML statement's chart draws what the closed statement billed, not the late email
    with Store.open(isolated_store) as store:
        chart = statements.daily_emails(store, "acme", "2026-11")
    assert {name: sum(days) for name, days in chart["accounts"].items()} == {"blog": 333, "shop": 1500, "": 10}
    december = json.loads(ok(cli, "billing", "statement", "acme", "2026-12", "--json").stdout)
    assert december["lines"] == [
        {"account": "shop", "messages": 1, "outbound": 7, "inbound": 0, "emails": 7, "price_per_1000": "0.90",
         "amount": "0.01", "amount_exact": "0.0063", "late": True, "day": "2026-11-25"}]
    assert december["opening_balance"] == "-1.44"
    assert "late: 2026-11-25" in ok(cli, "billing", "statement", "acme", "2026-12").stdout
    assert ok(cli, "billing", "statement", "acme", "2026-12", "--csv").stdout.splitlines()[1] == (
        "shop,late: 2026-11-25,1,7,0,7,0.90,0.01,0.0063")
    # the client's next statement carries its late line too, at the resale price
    [late] = json.loads(ok(cli, "billing", "statement", "acme", "2026-12", "--account", "shop",
                           "--json").stdout)["lines"]
    assert (late["late"], late["day"], late["price_per_1000"], late["amount_exact"]) == (
        True, "2026-11-25", "1.50", "0.0105")


def test_a_client_statement_is_at_the_resale_price_and_the_agency_sees_its_margin(cli):
    november(cli)
    ok(cli, "billing", "set-resale", "acme", "1.50", "--from", "2026-11-01")
    client = json.loads(ok(cli, "billing", "statement", "acme", "2026-11", "--account", "shop", "--json").stdout)
    assert (client["account"], client["status"], client["number"]) == ("shop", "draft", None)
    assert [(line["emails"], line["price_per_1000"], line["amount"]) for line in client["lines"]] == [
        (1500, "1.50", "2.25")]
    assert (client["total"], client["opening_balance"]) == ("2.25", None)
    agency = json.loads(ok(cli, "billing", "statement", "acme", "2026-11", "--json").stdout)
    assert (agency["total"], agency["resale_total"], agency["margin"]) == ("1.44", "2.75", "1.31")
    assert "Resold to clients $2.75: margin $1.31\n" in ok(cli, "billing", "statement", "acme", "2026-11").stdout
    ok(cli, "billing", "close", "2026-11")
    closed = json.loads(ok(cli, "billing", "statement", "acme", "2026-11", "--account", "shop", "--json").stdout)
    assert (closed["status"], closed["number"]) == ("closed", "2026-11-0001-1")


def test_html_writes_one_file_and_says_which_statement(cli, tmp_path):
    november(cli)
    page = tmp_path / "s.html"
    draft = ok(cli, "billing", "statement", "acme", "2026-11", "--html", str(page))
    assert (draft.stdout, draft.stderr) == ("", f"Wrote {page} (draft).\n")
    ok(cli, "billing", "close", "2026-11")
    closed = ok(cli, "billing", "statement", "acme", "2026-11", "--html", str(page))
    assert closed.stderr == f"Wrote {page} (2026-11-0001).\n"
    assert "2026-11-0001" in page.read_text() and "$1.44" in page.read_text()
    bad = cli("billing", "statement", "acme", "2026-11", "--html", str(tmp_path))
    assert (bad.exit_code, bad.stderr) == (2, f"Error: cannot write {tmp_path}: Is a directory\n")


def test_html_cannot_be_combined_with_json(cli, tmp_path):
    result = cli("billing", "statement", "acme", "2026-11", "--html", str(tmp_path / "s.html"), "--json")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", "Error: --html writes a file; it cannot be combined with --json or --csv\n")
    assert not (tmp_path / "s.html").exists()


# -- refusals: one Error line, the documented exit code, nothing changed -------------------------


THIS_MONTH = TODAY[:7]


@pytest.mark.parametrize("args, code, error", [
    (["billing", "credit", "acme", "-5"], 2, "Error: amount must be more than 0, not '-5'\n"),
    (["billing", "credit", "acme", "0"], 2, "Error: amount must be more than 0, not '0'\n"),
    (["billing", "credit", "acme", "1e12"], 2, "Error: amount must be at most 1,000,000,000, not '1e12'\n"),
    (["billing", "credit", "acme", "12.345"], 2, "Error: amount has more than 2 decimals (cents): '12.345'\n"),
    (["billing", "credit", "acme", "abc"], 2, "Error: amount must be an amount such as 100 or 25.50, not 'abc'\n"),
    (["billing", "credit", "acme", "NaN"], 2, "Error: amount must be an amount such as 100 or 25.50, not 'NaN'\n"),
    (["billing", "credit", "nope", "5"], 3, "Error: agency 'nope' not found\n"),
    (["billing", "set-warn", "acme", "-1"], 2, "Error: the warning level must be 0 or more, not '-1'\n"),
    (["billing", "set-warn", "nope", "5"], 3, "Error: agency 'nope' not found\n"),
    (["billing", "set-mode", "acme", "sometimes"], 2,
     "Error: a billing mode is prepaid or postpaid, not 'sometimes'\n"),
    (["billing", "set-mode", "nope", "prepaid"], 3, "Error: agency 'nope' not found\n"),
    (["billing", "set-price", "0.12345", "--from", "2027-01-01"], 2,
     "Error: a price per 1,000 emails has at most 4 decimals, not '0.12345'\n"),
    (["billing", "set-price", "-1", "--from", "2027-01-01"], 2,
     "Error: price must be between 0 and 1000 USD per 1,000 emails, not '-1'\n"),
    (["billing", "set-price", "5000", "--from", "2027-01-01"], 2,
     "Error: price must be between 0 and 1000 USD per 1,000 emails, not '5000'\n"),
    (["billing", "set-price", "1", "--from", "2026-13-01"], 2,
     "Error: --from must be a day like 2026-12-01, not '2026-13-01'\n"),
    (["billing", "set-resale", "nope", "1.50", "--from", "2027-01-01"], 3, "Error: agency 'nope' not found\n"),
    (["billing", "balance", "nope"], 3, "Error: agency 'nope' not found\n"),
    (["billing", "close", THIS_MONTH], 2,
     f"Error: {THIS_MONTH} has not ended (today is in {THIS_MONTH}); a month is closed once it is over\n"),
    (["billing", "close", "2026-13"], 2, "Error: month must be a month like 2026-11, not '2026-13'\n"),
    (["billing", "close", "2026-11", "--agency", "nope"], 3, "Error: agency 'nope' not found\n"),
    (["billing", "statement", "nope", "2026-11"], 3, "Error: agency 'nope' not found\n"),
    (["billing", "statement", "acme", "11-2026"], 2, "Error: month must be a month like 2026-11, not '11-2026'\n"),
    (["billing", "statement", "acme", "2026-11", "--account", "ghost"], 3, "Error: account 'ghost' not found\n"),
    (["billing", "statements", "--agency", "nope"], 3, "Error: agency 'nope' not found\n"),
    (["usage", "prune", "--before", "2026-12", "--yes"], 2,
     "Error: cannot prune before 2026-12: 2026-11 is not closed (billing close YYYY-MM closes a month for every "
     "agency); nothing was deleted\n"),
    (["usage", "prune", "--before", "2999-01", "--yes"], 2,
     f"Error: cannot prune before 2999-01: it is after this month ({THIS_MONTH}); nothing was deleted\n"),
    (["billing", "credit", "acme", "5", "--ref", " "], 2,
     "Error: a ref is 1 to 200 printable characters (a payment id), not ''\n"),
    (["usage", "prune", "--before", "2026-13", "--yes"], 2,
     "Error: --before must be a month like 2026-11, not '2026-13'\n"),
])
def test_refusals_change_nothing(cli, args, code, error):
    november(cli)
    before = everything(cli)
    result = cli(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", error)
    assert everything(cli) == before


def test_a_repeated_ref_with_another_amount_is_exit_4(cli):
    ok(cli, "billing", "credit", "acme", "25.50", "--ref", "pay-1")
    before = everything(cli)
    result = cli("billing", "credit", "acme", "30", "--ref", "pay-1")
    assert (result.exit_code, result.stdout, result.stderr) == (
        4, "", f"Error: ref 'pay-1' is already in acme's ledger with 25.50 (on {TODAY}), not 30; nothing was added\n")
    assert everything(cli) == before


def test_a_day_on_a_closed_statement_is_never_repriced(cli):
    november(cli)
    ok(cli, "billing", "close", "2026-11")
    before = everything(cli)
    for args in (["billing", "set-price", "2", "--from", "2026-11-30"],
                 ["billing", "set-resale", "acme", "2", "--from", "2026-11-01"]):
        result = cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (
            2, "", f"Error: {args[-1]} is on closed statement 2026-11-0001 (2026-11): a closed statement is never "
                   "repriced; give a day after 2026-11\n")
    assert everything(cli) == before
    ok(cli, "billing", "set-price", "2", "--from", "2026-12-01")


# -- pruning -------------------------------------------------------------------------------------


def test_prune_keeps_statements_and_reports_and_refuses_old_lines(cli):
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "4", "--at", "2026-10-05T10:00:00Z",
       "--id", "old-1")
    ok(cli, "billing", "close", "2026-10")
    report = ok(cli, "usage", "report", "--since", "2026-10-01", "--until", "2026-10-31", "--json").stdout
    statement = ok(cli, "billing", "statement", "acme", "2026-10", "--json").stdout
    pruned = ok(cli, "usage", "prune", "--before", "2026-11", "--yes")
    assert (pruned.stdout, pruned.stderr) == (
        "", "Deleted 1 raw usage event before 2026-11-01; a usage line dated before it is refused from now on.\n")
    assert json.loads(ok(cli, "usage", "prune", "--before", "2026-11", "--yes", "--json").stdout) == {
        "before": "2026-11-01", "deleted_events": 0, "status": "unchanged"}
    assert ok(cli, "usage", "report", "--since", "2026-10-01", "--until", "2026-10-31", "--json").stdout == report
    assert ok(cli, "billing", "statement", "acme", "2026-10", "--json").stdout == statement
    again = cli("usage", "record", "--user", "a@d.example", "--recipients", "4", "--at", "2026-10-05T10:00:00Z",
                "--id", "old-1")
    assert (again.exit_code, again.stdout, again.stderr) == (
        2, "", "Error: usage dated 2026-10-05 is before 2026-11-01: the raw events of those months were pruned after "
               "they were billed, so this line could be billed twice; not recorded\n")


# -- real processes --------------------------------------------------------------------------------


def test_prune_of_a_store_without_usage_still_needs_the_month_before_closed(cli):
    refused = cli("usage", "prune", "--before", "2026-12", "--yes")
    assert (refused.exit_code, refused.stderr) == (
        2, "Error: cannot prune before 2026-12: 2026-11 is not closed (billing close YYYY-MM closes a month for "
           "every agency); nothing was deleted\n")
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "1", "--at", "2026-11-05T10:00:00Z")


def test_prune_without_yes_and_no_terminal_refuses_exit_2(run, cli):
    ok(cli, "usage", "record", "--user", "a@d.example", "--recipients", "4", "--at", "2026-10-05T10:00:00Z")
    ok(cli, "billing", "close", "2026-10")
    refused = run("usage", "prune", "--before", "2026-11")
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        2, "", "Error: Delete 1 raw usage event before 2026-11-01 (their months are closed; statements and daily "
               "totals stay)? Refusing without --yes (no terminal to confirm on); nothing was changed\n")
    done = run("usage", "prune", "--before", "2026-11", "--yes", "--json")
    assert (done.returncode, json.loads(done.stdout), done.stderr) == (
        0, {"before": "2026-11-01", "deleted_events": 1, "status": "pruned"}, "")


def test_balance_and_close_as_real_processes(run, cli):
    november(cli)
    closed = run("billing", "close", "2026-11", "--agency", "acme")
    assert (closed.returncode, closed.stdout, closed.stderr) == (
        0, "", "Statement 2026-11-0001 (acme, 2026-11) closed: total $1.44.\n")
    again = run("billing", "close", "2026-11", "--agency", "acme")
    assert (again.returncode, again.stderr) == (
        0, "Statement 2026-11-0001 (acme, 2026-11) was already closed: total $1.44.\n")
    balance = run("billing", "balance", "--json")
    assert balance.returncode == 0 and json.loads(balance.stdout)[0]["charges"] == "1.4337"
    bad = run("billing", "credit", "acme", "-5")
    assert (bad.returncode, bad.stdout, bad.stderr) == (2, "", "Error: amount must be more than 0, not '-5'\n")
    assert "\x1b[" not in run("billing", "statement", "acme", "2026-11").stdout  # no colour off a terminal
