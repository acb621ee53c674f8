"""Billing an agency can invoice from (issue 24), on both backends: prices in
force, prepaid credits that stop sending at zero (one crossing message at
most, under parallel processes too), closed statements that never change,
late lines, client statements at resale prices, and pruning."""

from __future__ import annotations

import json
import multiprocessing
from datetime import timedelta, timezone
from decimal import Decimal

import pytest

from smtpctl.core.billing import credits, prices, statements
from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.settings import today
from smtpctl.core.ingest.message import build_input
from smtpctl.core.metering.batch import import_usage, record_usage
from smtpctl.core.metering.live import admit_message
from smtpctl.core.model.errors import AlreadyExists, InvalidInput, LimitReached, NotFound
from smtpctl.core.reporting.report import usage_report
from smtpctl.core.store import Store

PW = "a good long password"


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme")
        add_account(s, "blog", "acme")
        add_domain(s, "d.example", account="shop")
        add_domain(s, "b.example", account="blog")
        add_domain(s, "shared.example", agency="acme")
        create_credential(s, "a@d.example", PW)
        create_credential(s, "w@b.example", PW)
        yield s


def msg(login: str | None, n: int, at: str | None = None, *, sid: str | None = None, inbound: str | None = None):
    return build_input(direction="inbound" if inbound else "outbound", user=login, domain=inbound, to=None, cc=None,
                       bcc=None, recipients=n, at=at, source_id=sid, default_tz=timezone.utc)


def snapshot(store: Store) -> dict:
    return {t: store.query(f"SELECT * FROM {t}") for t in ("prices", "credits", "agency_billing", "statements",
                                                           "billed", "usage_events", "usage_pruned")}


# -- prices in force -------------------------------------------------------------------


def test_a_price_from_a_day_prices_that_day_on_and_the_past_keeps_its_own(store):
    record_usage(store, msg("a@d.example", 2, "2026-11-03T10:00:00Z"))
    record_usage(store, msg("a@d.example", 1000, "2026-11-20T10:00:00Z"))
    prices.set_price(store, "0.90", "2026-11-15")
    report = usage_report(store, since="2026-11-01", until="2026-11-30")
    assert report["prices"] == [{"since": "2026-11-01", "until": "2026-11-14", "price_per_1000": "0.675"},
                                {"since": "2026-11-15", "until": "2026-11-30", "price_per_1000": "0.90"}]
    assert report["price_per_1000"] == "0.90"
    assert (report["rows"][0]["cost"], report["total"]["cost"]) == ("0.90135", "0.90135")
    assert [(p.from_day, str(p.price_per_1000)) for p in prices.history(store)] == [(None, "0.675"),
                                                                                     ("2026-11-15", "0.90")]


@pytest.mark.parametrize("bad, why", [
    ("0.12345", "a price per 1,000 emails has at most 4 decimals, not '0.12345'"),
    ("-1", "price must be between 0 and 1000 USD per 1,000 emails, not '-1'"),
    ("NaN", "price must be between 0 and 1000 USD per 1,000 emails, not 'NaN'"),
])
def test_a_bad_price_changes_nothing(store, bad, why):
    before = snapshot(store)
    with pytest.raises(InvalidInput) as err:
        prices.set_price(store, bad, "2026-11-15")
    assert err.value.message == why
    assert snapshot(store) == before


def test_a_day_on_a_closed_statement_is_never_repriced(store):
    record_usage(store, msg("a@d.example", 10, "2026-10-10T10:00:00Z"))
    [closed] = statements.close(store, "2026-10", agency="acme")
    before = snapshot(store)
    with pytest.raises(InvalidInput) as err:
        prices.set_price(store, "2", "2026-10-31")
    assert err.value.message == ("2026-10-31 is on closed statement 2026-10-0001 (2026-10): a closed statement is "
                                 "never repriced; give a day after 2026-10")
    assert snapshot(store) == before
    assert prices.set_price(store, "2", "2026-11-01").status == "created"
    assert statements.statement(store, "acme", "2026-10") == closed.object.document  # unchanged


# -- credits -----------------------------------------------------------------------------


def test_credits_with_a_ref_are_added_once_and_the_balance_is_exact(store):
    record_usage(store, msg("a@d.example", 3))
    first = credits.add_credit(store, "acme", "25.50", note="invoice 7", ref="pay-1")
    again = credits.add_credit(store, "acme", "25.50", ref="pay-1")
    assert (first.status, again.status) == ("created", "unchanged")
    with pytest.raises(AlreadyExists):
        credits.add_credit(store, "acme", "30", ref="pay-1")
    [balance] = credits.balances(store, "acme")
    assert balance.as_dict() == {"agency": "acme", "mode": "postpaid", "credits": "25.50", "charges": "0.002025",
                                 "balance": "25.497975", "balance_rounded": "25.50", "warn_below": None,
                                 "low": False, "exhausted": False}


@pytest.mark.parametrize("bad", ["-5", "0", "1e12", "NaN", "12.345", "abc", "Infinity"])
def test_a_bad_amount_changes_nothing(store, bad):
    before = snapshot(store)
    with pytest.raises(InvalidInput):
        credits.add_credit(store, "acme", bad)
    assert snapshot(store) == before


def test_an_unknown_agency_is_not_found_and_changes_nothing(store):
    before = snapshot(store)
    for call in (lambda: credits.add_credit(store, "nope", "5"), lambda: credits.set_mode(store, "nope", "prepaid"),
                 lambda: prices.set_price(store, "1", "2027-01-01", agency="nope")):
        with pytest.raises(NotFound):
            call()
    assert snapshot(store) == before


def test_a_warning_level_warns_below_it(store):
    credits.add_credit(store, "acme", "1")
    low = credits.set_warn(store, "acme", "5")
    assert [w.message for w in low.extra["warnings"]] == [
        "agency acme's credits are low: balance $1.00, below its warning level of $5.00; top up with: "
        "smtpctl billing credit acme AMOUNT"]
    assert credits.set_warn(store, "acme", "none").extra["warnings"] == []


# -- prepaid: sending stops at zero, at most one message crossing ---------------------------


def test_a_prepaid_agency_stops_at_zero_keeps_its_credentials_and_resumes_on_top_up(store):
    credits.set_mode(store, "acme", "prepaid")
    credits.add_credit(store, "acme", "0.01")  # 0.01 / 0.000675 = 14.8 emails
    record_usage(store, msg("a@d.example", 10))
    record_usage(store, msg("w@b.example", 10))  # crosses zero: recorded, billed
    with pytest.raises(LimitReached) as err:
        record_usage(store, msg("a@d.example", 1))
    assert err.value.message.startswith("agency acme's prepaid credits are used up (balance 0.00 USD): message "
                                        "refused, not recorded")
    assert store.credential("a@d.example") is not None and not store.account("shop").blocked
    refused = admit_message(store, "a@d.example", 1, "live-1")
    assert (refused.accepted, refused.status) == (False, "out_of_credits")
    topped = credits.add_credit(store, "acme", "1")
    assert topped.extra["resumed"] is True
    assert admit_message(store, "a@d.example", 1, "live-2").status == "accepted"
    # newest first: each top-up lifted a prepaid agency from zero (the first one too: it started with none)
    assert [e["details"]["resumed"] for e in store.audit_entries(action="billing.credit")] == [True, True]


def test_an_import_rejects_the_lines_past_zero_and_says_why(store):
    credits.set_mode(store, "acme", "prepaid")
    credits.add_credit(store, "acme", "0.01")
    summary = import_usage(store, [msg("a@d.example", 10, sid="1"), msg("a@d.example", 10, sid="2"),
                                   msg("a@d.example", 10, sid="3")])
    assert (summary.messages, summary.rejected) == (2, 1)
    assert summary.rejected_lines[0]["reason"].startswith("agency acme's prepaid credits are used up")


def _drain(where: str, login: str, sids: list[str]) -> list[str]:
    with Store.open(where, actor="worker") as s:
        return [admit_message(s, login, 5, sid).status for sid in sids]


def test_two_processes_racing_to_zero_admit_at_most_one_crossing_message(store, store_at):
    credits.set_mode(store, "acme", "prepaid")
    credits.add_credit(store, "acme", "0.05")  # 74 emails at 0.675 per 1,000
    jobs = [("a@d.example", [f"a{i}" for i in range(12)]), ("w@b.example", [f"w{i}" for i in range(12)])]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_drain, [(str(store_at), login, sids) for login, sids in jobs])
    accepted = sum(status == "accepted" for statuses in results for status in statuses)
    # 14 messages of 5 emails cost 0.04725; the 15th takes the balance below zero; no 16th
    assert accepted == 15
    [balance] = credits.balances(store, "acme")
    assert balance.charges == Decimal("0.050625") and balance.balance < 0


def _credit(where: str) -> str:
    with Store.open(where, actor="worker") as s:
        return credits.add_credit(s, "acme", "10", ref="stripe-42").status


def test_a_credit_with_the_same_ref_from_two_processes_is_added_once(store, store_at):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        statuses = pool.map(_credit, [str(store_at)] * 2)
    assert sorted(statuses) == ["created", "unchanged"]
    assert credits.balances(store, "acme")[0].credits == Decimal("10")


# -- statements ------------------------------------------------------------------------


def test_close_writes_one_numbered_statement_whose_lines_add_up_and_never_change(store):
    credits.add_credit(store, "acme", "50")
    record_usage(store, msg("a@d.example", 1000, "2026-11-03T10:00:00Z"))
    record_usage(store, msg("a@d.example", 500, "2026-11-20T10:00:00Z"))
    record_usage(store, msg("w@b.example", 333, "2026-11-21T10:00:00Z"))
    record_usage(store, msg(None, 10, "2026-11-21T11:00:00Z", inbound="shared.example"))
    prices.set_price(store, "0.90", "2026-11-15")
    draft = statements.statement(store, "acme", "2026-11")
    assert (draft["status"], draft["number"]) == ("draft", None)
    [closed] = statements.close(store, "2026-11")
    doc = statements.statement(store, "acme", "2026-11")
    assert (doc["status"], doc["number"]) == ("closed", "2026-11-0001")
    assert [(line["account"], line["emails"], line["price_per_1000"], line["amount"], line["amount_exact"])
            for line in doc["lines"]] == [
        ("blog", 333, "0.90", "0.30", "0.2997"),
        ("shop", 1000, "0.675", "0.68", "0.675"),
        ("shop", 500, "0.90", "0.45", "0.45"),
        (None, 10, "0.90", "0.01", "0.009"),
    ]
    assert (doc["total"], doc["total_exact"], doc["charges"]) == ("1.44", "1.4337", "1.44")
    assert sum(Decimal(line["amount"]) for line in doc["lines"]) == Decimal(doc["total"])
    # credits were added today (not in November): the opening balance holds none of them
    assert (doc["opening_balance"], doc["credits"], doc["closing_balance"]) == ("0.00", "0.00", "-1.44")
    assert [o.status for o in statements.close(store, "2026-11")] == ["unchanged"]  # closing again: a no-op
    # usage recorded later for November is a late line of the next statement, never added to this one
    record_usage(store, msg("a@d.example", 7, "2026-11-25T10:00:00Z"))
    assert statements.statement(store, "acme", "2026-11") == doc
    late = [line for line in statements.statement(store, "acme", "2026-12")["lines"] if line["late"]]
    assert late == [{"account": "shop", "messages": 1, "outbound": 7, "inbound": 0, "emails": 7,
                     "price_per_1000": "0.90", "amount": "0.01", "amount_exact": "0.0063", "late": True,
                     "day": "2026-11-25"}]
    assert statements.listing(store)[0]["number"] == "2026-11-0001"


def test_a_month_not_ended_cannot_be_closed_and_a_bad_month_is_refused(store):
    this_month = today(store)[:7]
    for month, why in ((this_month, f"{this_month} has not ended"), ("2026-13", "month must be a month like 2026-11")):
        before = snapshot(store)
        with pytest.raises(InvalidInput) as err:
            statements.close(store, month)
        assert err.value.message.startswith(why)
        assert snapshot(store) == before


def test_a_client_statement_is_at_the_resale_price_and_the_agency_sees_its_margin(store):
    record_usage(store, msg("a@d.example", 1000, "2026-11-03T10:00:00Z"))
    record_usage(store, msg("a@d.example", 1000, "2026-11-04T10:00:00Z"))
    prices.set_price(store, "1.50", "2026-11-01", agency="acme")
    client = statements.statement(store, "acme", "2026-11", account="shop")
    assert [(line["emails"], line["price_per_1000"], line["amount"]) for line in client["lines"]] == [
        (2000, "1.50", "3.00")]
    agency = statements.statement(store, "acme", "2026-11")
    assert (agency["total"], agency["resale_total"], agency["margin"]) == ("1.35", "3.00", "1.65")


# -- pruning ---------------------------------------------------------------------------


def test_prune_needs_closed_months_keeps_reports_and_refuses_old_lines_after(store):
    record_usage(store, msg("a@d.example", 4, "2026-10-05T10:00:00Z", sid="old-1"))
    before = snapshot(store)
    with pytest.raises(InvalidInput) as err:
        statements.prune(store, "2026-11")
    assert err.value.message == ("cannot prune before 2026-11: 2026-10 is not closed (billing close YYYY-MM closes a "
                                 "month for every agency); nothing was deleted")
    assert snapshot(store) == before
    statements.close(store, "2026-10")
    assert statements.prune(store, "2026-11") == {"before": "2026-11-01", "deleted_events": 1, "status": "pruned"}
    assert store.query("SELECT count(*) AS n FROM usage_events")[0]["n"] == 0
    assert usage_report(store, since="2026-10-01", until="2026-10-31")["total"]["emails"] == 4
    again = import_usage(store, [msg("a@d.example", 4, "2026-10-05T10:00:00Z", sid="old-1")])
    assert (again.messages, again.rejected) == (0, 1)
    assert again.rejected_lines[0]["reason"] == (
        "usage dated 2026-10-05 is before 2026-11-01: the raw events of those months were pruned after they were "
        "billed, so this line could be billed twice; not recorded")


def test_close_racing_an_import_leaves_each_email_on_exactly_one_statement(store, store_at):
    day = "2026-11-10T10:00:00Z"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        imported = pool.apply_async(_import_many, (str(store_at), day, 200))
        closed = pool.apply_async(_close, (str(store_at),))
        imported.get(timeout=120), closed.get(timeout=120)
    first = statements.statement(store, "acme", "2026-11")
    on_first = sum(line["emails"] for line in first["lines"])
    later = sum(line["emails"] for line in statements.statement(store, "acme", "2026-12")["lines"] if line["late"])
    assert on_first + later == 200 * 3


def _import_many(where: str, at: str, count: int) -> None:
    with Store.open(where, actor="worker") as s:
        for i in range(count):
            import_usage(s, [msg("a@d.example", 3, at, sid=f"race-{i}")])


def _close(where: str) -> None:
    with Store.open(where, actor="worker") as s:
        statements.close(s, "2026-11")


def test_the_closed_document_is_what_was_written(store):
    record_usage(store, msg("a@d.example", 10, (today_date(store) - timedelta(days=40)).isoformat() + "T10:00:00Z"))
    month = (today_date(store) - timedelta(days=40)).strftime("%Y-%m")
    statements.close(store, month)
    row = store.statement_row(store.agency("acme").id, month)
    assert json.loads(row["document"]) == statements.statement(store, "acme", month)


def today_date(store: Store):
    from datetime import date

    return date.fromisoformat(today(store))
