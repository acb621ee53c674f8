import json
import tempfile
from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential, delete_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.settings import set_setting, today
from smtpctl.core.ingest.message import BadLine, build_input
from smtpctl.core.metering.batch import import_usage, record_usage
from smtpctl.core.metering.enforcement import block_account, unblock_account
from smtpctl.core.model.clock import iso_z, utc_now
from smtpctl.core.model.errors import Blocked, InvalidInput, LimitReached, NotFound
from smtpctl.core.reporting.pricing import estimate
from smtpctl.core.reporting.report import usage_report
from smtpctl.core.reporting.status import usage_status
from smtpctl.core.store import Store

UTC = timezone.utc
PW = "a good long password"


def msg(user=None, *, n=1, at=None, sid=None, domain=None, inbound=False):
    return build_input(direction="inbound" if inbound else "outbound", user=user, domain=domain, to=None, cc=None,
                       bcc=None, recipients=n, at=at, source_id=sid, default_tz=UTC)


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme", daily_limit=10)
        add_account(s, "other", "acme")
        add_domain(s, "d.example", account="shop")
        add_domain(s, "e.example", account="shop")
        add_domain(s, "o.example", account="other")
        add_domain(s, "shared.example", agency="acme")
        for login in ("a@d.example", "b@d.example", "c@e.example", "x@o.example"):
            create_credential(s, login, PW)
        yield s


def logins(store):
    return [c.login for c in store.credentials()]


def test_record_counts_recipients_and_is_idempotent_by_id(store):
    item = build_input(direction="outbound", user="a@d.example", domain=None, to=["1@x.test", "2@x.test"],
                       cc=["3@x.test"], bcc=["4@x.test"], recipients=None, at=None, source_id="m1", default_tz=UTC)
    first = record_usage(store, item)
    assert (first.recorded, first.emails, first.events[0]["emails"]) == (1, 4, 4)
    again = record_usage(store, item)
    assert (again.recorded, again.duplicates) == (0, 1)
    assert store.scalar("SELECT SUM(emails) FROM usage_events") == 4


def test_unknown_and_agency_assigned_senders(store):
    with pytest.raises(NotFound, match="domain nope.example is not in the store"):
        record_usage(store, msg("a@nope.example"))
    with pytest.raises(InvalidInput, match="agency-assigned"):
        record_usage(store, msg("a@shared.example"))
    assert store.scalar("SELECT count(*) FROM usage_events") == 0


def test_deleted_credential_still_counts_for_its_domains_account(store):
    delete_credential(store, "b@d.example")
    record_usage(store, msg("b@d.example", n=3))
    assert usage_status(store, "shop")[0]["sent"] == 3


def test_inbound_is_billed_not_limited(store):
    record_usage(store, msg(domain="d.example", n=50, inbound=True))
    record_usage(store, msg(domain="shared.example", n=5, inbound=True))
    assert usage_status(store, "shop")[0]["sent"] == 0
    assert len(logins(store)) == 4
    report = usage_report(store, by=["agency", "account"])
    assert [(r["agency"], r["account"], r["inbound"]) for r in report["rows"]] == [
        ("acme", "", 5), ("acme", "shop", 50)]
    assert report["total"]["cost"] == "0.037125"


def test_crossing_the_limit_revokes_and_blocks_in_the_same_transaction(store, monkeypatch):
    now = utc_now()  # one instant: a run across midnight puts no two steps on two days
    monkeypatch.setattr(Store, "now", lambda self: now)
    assert not record_usage(store, msg("a@d.example", n=10)).crossings  # at the limit: fine
    result = record_usage(store, msg("c@e.example", n=2))
    assert [c.as_dict() for c in result.crossings] == [{
        "account": "shop", "day": today(store), "emails": 12, "limit": 10, "enforced": True,
        "revoked_credentials": ["a@d.example", "b@d.example", "c@e.example"]}]
    assert logins(store) == ["x@o.example"]  # the other account keeps its own
    account = store.account("shop")
    assert (account.block_kind, account.block_reason) == (
        "limit", f"daily limit of 10 emails exceeded on {today(store)} (12 sent)")
    with pytest.raises(Blocked):
        create_credential(store, "new@d.example", PW)
    audit = store.query("SELECT details FROM audit WHERE action = 'account.limit_exceeded'")
    assert json.loads(audit[0]["details"])["revoked_credentials"] == ["a@d.example", "b@d.example", "c@e.example"]
    # The crossing message itself is recorded and billed.
    assert usage_status(store, "shop")[0]["sent"] == 12
    # The hard cap: later mail the same day is refused, not recorded, not billed.
    with pytest.raises(LimitReached, match="over its daily limit .* message refused, not recorded"):
        record_usage(store, msg("a@d.example", n=1))
    assert usage_status(store, "shop")[0]["sent"] == 12


def test_unblock_does_not_restore_and_same_day_mail_blocks_again(store):
    record_usage(store, msg("a@d.example", n=11))
    assert unblock_account(store, "shop")["status"] == "unblocked"
    assert logins(store) == ["x@o.example"]
    create_credential(store, "new@d.example", PW)
    # Still over today's limit: the message is refused (not billed) and the rule applies again.
    with pytest.raises(LimitReached):
        record_usage(store, msg("new@d.example", n=1))
    assert "new@d.example" not in logins(store)
    assert store.account("shop").blocked
    assert usage_status(store, "shop")[0]["sent"] == 11


def test_late_event_for_a_past_day_counts_there_and_is_not_enforced(store):
    yesterday = utc_now() - timedelta(days=1)
    result = record_usage(store, msg("a@d.example", n=25, at=iso_z(yesterday)))
    assert [(c.day, c.enforced) for c in result.crossings] == [
        ((yesterday.date()).isoformat(), False)]
    assert len(logins(store)) == 4 and not store.account("shop").blocked
    assert usage_status(store, "shop")[0]["sent"] == 0


def test_late_event_for_today_is_enforced(store):
    earlier_today = max(utc_now() - timedelta(hours=3), utc_now().replace(hour=0, minute=0, second=1))
    result = record_usage(store, msg("a@d.example", n=11, at=iso_z(earlier_today)))
    assert result.crossings[0].enforced and logins(store) == ["x@o.example"]


def test_future_events_are_refused(store):
    with pytest.raises(InvalidInput, match="in the future"):
        record_usage(store, msg("a@d.example", at=iso_z(utc_now() + timedelta(hours=2))))


def test_days_follow_the_store_time_zone(store):
    set_setting(store, "timezone", "Europe/Berlin")
    record_usage(store, msg("x@o.example", n=1, at="2026-03-10T22:30:00Z"))  # 23:30 in Berlin
    record_usage(store, msg("x@o.example", n=2, at="2026-03-10T23:30:00Z"))  # 00:30 on the 11th
    report = usage_report(store, since="2026-03-10", until="2026-03-11", by=["day"])
    assert [(r["day"], r["emails"]) for r in report["rows"]] == [("2026-03-10", 1), ("2026-03-11", 2)]
    assert report["timezone"] == "Europe/Berlin"
    set_setting(store, "timezone", "UTC")
    utc_report = usage_report(store, since="2026-03-10", until="2026-03-11", by=["day"])
    # An event's day is fixed when it is recorded.
    assert [(r["day"], r["emails"]) for r in utc_report["rows"]] == [("2026-03-10", 1), ("2026-03-11", 2)]


def test_report_groups_filters_and_costs_add_up(store):
    day1, day2 = "2026-10-01T10:00:00Z", "2026-10-02T10:00:00Z"
    record_usage(store, msg("a@d.example", n=3, at=day1))
    record_usage(store, msg("b@d.example", n=4, at=day2))
    record_usage(store, msg("x@o.example", n=45, at=day2))
    record_usage(store, msg(domain="o.example", n=1000, at=day2, inbound=True))
    report = usage_report(store, since="2026-10-01", until="2026-10-31", by=["account", "day"])
    assert [(r["account"], r["day"], r["messages"], r["emails"], r["outbound"], r["inbound"], r["cost"],
             r["cost_rounded"]) for r in report["rows"]] == [
        ("other", "2026-10-02", 2, 1045, 45, 1000, "0.705375", "0.71"),
        ("shop", "2026-10-01", 1, 3, 3, 0, "0.002025", "0.00"),
        ("shop", "2026-10-02", 1, 4, 4, 0, "0.0027", "0.00"),
    ]
    assert report["total"] == {"messages": 4, "emails": 1052, "outbound": 52, "inbound": 1000,
                               "cost": "0.7101", "cost_rounded": "0.71"}
    assert sum(Decimal(r["cost"]) for r in report["rows"]) == Decimal(report["total"]["cost"])
    by_user = usage_report(store, since="2026-10-01", until="2026-10-31", by=["user"], account="shop")
    assert [(r["user"], r["emails"]) for r in by_user["rows"]] == [("a@d.example", 3), ("b@d.example", 4)]
    only = usage_report(store, since="2026-10-02", until="2026-10-02", by=["direction"], domain="o.example")
    assert [(r["direction"], r["emails"]) for r in only["rows"]] == [("inbound", 1000), ("outbound", 45)]
    with pytest.raises(InvalidInput, match="--by must be one of"):
        usage_report(store, by=["week"])
    with pytest.raises(InvalidInput, match="after --until"):
        usage_report(store, since="2026-10-05", until="2026-10-01")


def test_import_counts_rejects_and_strict_keeps_nothing_of_the_batch(store):
    items = [msg("a@d.example", n=1, at="2026-10-01T10:00:00Z", sid="i1"), BadLine(2, "not JSON"),
             msg("a@nope.example", n=1, at="2026-10-01T10:00:00Z", sid="i3"),
             msg("a@d.example", n=2, at="2026-10-01T10:00:00Z", sid="i1")]
    items = [i if isinstance(i, BadLine) else i.__class__(**{**i.__dict__, "line": n})
             for n, i in enumerate(items, start=1)]
    summary = import_usage(store, items)
    assert (summary.messages, summary.emails, summary.duplicates, summary.rejected) == (1, 1, 1, 2)
    assert summary.rejected_lines == [{"line": 2, "reason": "not JSON"}, {
        "line": 3, "reason": "unknown sender a@nope.example: domain nope.example is not in the store"}]
    before = store.scalar("SELECT count(*) FROM usage_events")
    strict_items = [msg("b@d.example", n=1, at="2026-10-01T10:00:00Z", sid="s1"), BadLine(9, "broken")]
    with pytest.raises(InvalidInput, match="^line 9: broken$"):
        import_usage(store, strict_items, strict=True)
    assert store.scalar("SELECT count(*) FROM usage_events") == before


def test_manual_block_and_revoke(store):
    result = block_account(store, "other", "compliance flag", revoke=True)
    assert (result["status"], result["block_kind"], result["revoked_credentials"]) == (
        "blocked", "manual", ["x@o.example"])
    again = block_account(store, "other", "second reason")
    assert (again["status"], again["block_reason"]) == ("unchanged", "compliance flag")
    with pytest.raises(InvalidInput):
        block_account(store, "shop", "   ")
    assert unblock_account(store, "other")["status"] == "unblocked"
    assert unblock_account(store, "other")["status"] == "unchanged"


def test_status_levels(store):
    record_usage(store, msg("a@d.example", n=8))
    row = usage_status(store, "shop")[0]
    assert (row["sent"], row["limit"], row["remaining"], row["percent"], row["level"]) == (8, 10, 2, 80.0, "warning")
    record_usage(store, msg("a@d.example", n=2))
    assert usage_status(store, "shop")[0]["level"] == "limit"


def test_estimate():
    data = estimate(emails=45_000, rate=Decimal("0.675"), compare=[("Mailgun", Decimal("0.80"))])
    assert (data["cost"], data["cost_rounded"]) == ("30.375", "30.38")
    assert data["comparisons"] == [{"name": "Mailgun", "rate_per_1000": "0.80", "cost": "36.00",
                                    "cost_rounded": "36.00", "saving": "5.625", "saving_rounded": "5.63",
                                      "saving_as_billed": "5.62"}]


# -- the rule, for any sequence of events ----------------------------------------------------------

event = st.tuples(
    st.sampled_from(["send-shop", "send-other", "inbound", "late", "create", "unblock"]),
    st.integers(min_value=1, max_value=9),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(event, min_size=1, max_size=25))
def test_no_credential_outlives_a_crossing_and_counts_add_up(ops):
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "p.db", actor="prop") as store:
        add_agency(store, "acme")
        add_account(store, "shop", "acme", daily_limit=20)
        add_account(store, "other", "acme", daily_limit=30)
        for name, account in (("d.example", "shop"), ("o.example", "other")):
            add_domain(store, name, account=account)
        shop = store.account("shop").id
        domain_id = store.domain("d.example").id
        for i in range(3):  # a fixed hash: the property is about the rule, not hashing
            with store.write():
                store.insert_credential(domain_id, f"u{i}", f"u{i}@d.example", "$argon2id$fake")
        sent_today = {"shop": 0, "other": 0}
        recorded = 0
        late_total = 0
        serial = 0
        for op, n in ops:
            serial += 1
            if op == "create":
                try:
                    create_credential(store, f"n{serial}@d.example", PW)
                except Blocked:
                    assert store.account("shop").blocked
                except LimitReached:
                    assert len(store.account_logins(shop)) == 5
                continue
            if op == "unblock":
                unblock_account(store, "shop")
                continue
            if op == "inbound":
                record_usage(store, msg(domain="d.example", n=n, inbound=True))
            elif op == "late":
                # The hard cap holds on a past day too: over that day's limit, refused and not recorded.
                if late_total > 20:
                    with pytest.raises(LimitReached):
                        record_usage(store, msg("u0@d.example", n=n, at=iso_z(utc_now() - timedelta(days=2))))
                    continue
                record_usage(store, msg("u0@d.example", n=n, at=iso_z(utc_now() - timedelta(days=2))))
                late_total += n
            else:
                who = "shop" if op == "send-shop" else "other"
                limit = 20 if who == "shop" else 30
                if sent_today[who] > limit:  # the hard cap: refused, not billed, the rule applied again
                    with pytest.raises(LimitReached):
                        record_usage(store, msg("u0@d.example" if who == "shop" else "z@o.example", n=n))
                    account = store.account(who)
                    assert store.account_logins(account.id) == [] and account.blocked
                    continue
                record_usage(store, msg("u0@d.example" if who == "shop" else "z@o.example", n=n))
                sent_today[who] += n
                if sent_today[who] > limit:
                    account = store.account(who)
                    assert store.account_logins(account.id) == []
                    assert account.blocked
            recorded += n
            assert store.scalar("SELECT SUM(emails) FROM usage_events") == recorded
            assert store.scalar("SELECT SUM(emails) FROM usage_daily") == recorded
            status = {r["account"]: r["sent"] for r in usage_status(store)}
            assert status == sent_today
        if sent_today["shop"] <= 20:
            assert not store.account("shop").blocked
