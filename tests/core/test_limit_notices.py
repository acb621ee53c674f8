"""What metering tells (issue 25, docs/notices.md): limit.warning at 80% and
95% of every window, once per window and level; limit.crossed for every
window; credits.low and credits.exhausted as charges draw a prepaid balance
down. Each written in the transaction that records the message, on both
metering paths and both backends."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from smtpctl.core.billing.credits import add_credit, set_mode, set_warn
from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.limits import set_window_limit
from smtpctl.core.ingest.message import UsageInput
from smtpctl.core.metering.batch import import_usage
from smtpctl.core.metering.live import admit_message
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store import Store


@pytest.fixture
def store(isolated_store):
    with Store.open(isolated_store) as store:
        add_agency(store, "acme")
        add_account(store, "shop", "acme", daily_limit=10)
        add_domain(store, "shop.test", account="shop")
        create_credential(store, "a@shop.test", "a good long password")
        yield store


def notices(store: Store, kind: str) -> list[dict]:
    return [json.loads(r["data"]) for r in store.query("SELECT kind, data FROM notices WHERE kind = ? ORDER BY id",
                                                        [kind])]


def _msg(emails: int, n: int, at=None) -> UsageInput:
    return UsageInput("outbound", "a@shop.test", None, emails, 0, 0, at, f"m{n}", line=n)


def test_serve_tells_each_level_once_and_the_crossing_of_an_hour(store):
    with store.write():
        store.update_account(store.account("shop").id, daily_limit=10**6)
    set_window_limit(store, "account", "shop", "hour", 10)
    statuses = [admit_message(store, "a@shop.test", 3, f"s{n}").status for n in range(6)]
    assert statuses == ["accepted"] * 4 + ["over_window_limit"] * 2  # 3, 6, 9, 12 (crosses), refused
    warnings = notices(store, "limit.warning")
    assert [(w["scope"], w["subject"], w["window"], w["level"], w["used"], w["limit"]) for w in warnings] == [
        ("account", "shop", "hour", 80, 9, 10), ("account", "shop", "hour", 95, 12, 10)]
    assert warnings[0]["resets_at"].endswith(":00:00Z") and warnings[0]["period"].endswith(":00:00Z")
    (crossed,) = notices(store, "limit.crossed")
    assert {k: crossed[k] for k in ("scope", "subject", "window", "emails", "limit", "revoked_credentials")} == {
        "scope": "account", "subject": "shop", "window": "hour", "emails": 12, "limit": 10, "revoked_credentials": []}


def test_an_import_tells_the_days_levels_and_enforcement_tells_the_crossing(store):
    now = store.now()
    summary = import_usage(store, [_msg(4, 1, now), _msg(4, 2, now), _msg(1, 3, now), _msg(2, 4, now)])
    assert summary.messages == 4 and summary.crossings  # 4, 8 (80%), 9, 11 (95% and over: revoked)
    assert [(w["window"], w["level"], w["used"]) for w in notices(store, "limit.warning")] == [
        ("day", 80, 8), ("day", 95, 11)]
    (crossed,) = notices(store, "limit.crossed")
    assert (crossed["scope"], crossed["subject"], crossed["window"], crossed["emails"], crossed["enforced"]) == (
        "account", "shop", "day", 11, True)
    assert crossed["revoked_credentials"] == ["a@shop.test"]


def test_a_past_day_filled_in_by_an_import_warns_nobody(store):
    yesterday = store.now() - timedelta(days=1)
    import_usage(store, [_msg(9, 1, yesterday)])
    assert notices(store, "limit.warning") == []


def test_a_credentials_day_and_an_agencys_month_warn_under_their_own_names(store):
    with store.write():
        store.update_account(store.account("shop").id, daily_limit=10**6)
    set_window_limit(store, "credential", "a@shop.test", "day", 100)
    set_window_limit(store, "agency", "acme", "month", 1000)
    admit_message(store, "a@shop.test", 85, "c1")
    assert [(w["scope"], w["subject"], w["window"], w["level"]) for w in notices(store, "limit.warning")] == [
        ("credential", "a@shop.test", "day", 80)]
    admit_message(store, "a@shop.test", 15, "c2")  # 100: at the cap (95%), not over it
    assert admit_message(store, "a@shop.test", 700, "c3").status == "accepted"  # crosses the credential's day;
    #                                                                              the agency's month: 800 (80%)
    kinds = [(w["scope"], w["level"]) for w in notices(store, "limit.warning")]
    assert kinds == [("credential", 80), ("credential", 95), ("agency", 80)]
    assert [(c["scope"], c["window"]) for c in notices(store, "limit.crossed")] == [("credential", "day")]


def test_a_prepaid_balance_drawn_down_tells_low_then_exhausted_once(store):
    with store.write():
        store.update_account(store.account("shop").id, daily_limit=10**6)
    add_credit(store, "acme", "1.00", ref="p1")
    set_mode(store, "acme", "prepaid")
    set_warn(store, "acme", "0.50")
    # about $0.675 per 1,000 emails: 800 emails take it below $0.50, 1,000 more to nothing
    for n, emails in enumerate((400, 400, 400, 600)):
        admit_message(store, "a@shop.test", emails, f"p{n}")
    assert len(notices(store, "credits.low")) == 1
    (exhausted,) = notices(store, "credits.exhausted")
    assert exhausted["agency"] == "acme" and exhausted["mode"] == "prepaid"
    import_usage(store, [_msg(1, 9)])  # refused (no credits): nothing more told
    assert len(notices(store, "credits.exhausted")) == 1


def test_a_notice_is_kept_only_with_its_message(store):
    """A strict import whose batch fails keeps neither its messages nor their notices."""
    from smtpctl.core.ingest.message import BadLine

    now = store.now()
    with pytest.raises(InvalidInput):
        import_usage(store, [_msg(9, 1, now), BadLine(2, "not JSON")], strict=True)
    assert store.scalar("SELECT count(*) FROM usage_events") == 0
    assert notices(store, "limit.warning") == []
