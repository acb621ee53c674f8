"""Limits in more windows (issue 25, docs/limits.md): an account's hour and
month beside its day, a credential's own hour and day, an agency's month.
Each is one more limit in the one cap rule, on every path; every window but
the account's day refuses until it resets and deletes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.limits import set_window_limit
from smtpctl.core.directory.settings import set_setting
from smtpctl.core.ingest.message import UsageInput
from smtpctl.core.metering.batch import import_usage, record_usage
from smtpctl.core.metering.live import admit_message
from smtpctl.core.metering.rule import REFUSED_OVER_LIMIT, REFUSED_WINDOW, Limit, decide
from smtpctl.core.metering.windows import Hours, hour_start, periods, resets_at
from smtpctl.core.model.errors import InvalidInput, LimitReached, NotFound
from smtpctl.core.model.clock import stored_time
from smtpctl.core.store import Store

PW = "a good long password"


@pytest.fixture
def store(isolated_store):
    with Store.open(isolated_store) as store:
        add_agency(store, "acme")
        add_account(store, "shop", "acme", daily_limit=1000)
        add_account(store, "blog", "acme", daily_limit=1000)
        add_domain(store, "shop.test", account="shop")
        add_domain(store, "blog.test", account="blog")
        for login in ("a@shop.test", "b@shop.test", "c@blog.test"):
            create_credential(store, login, PW)
        yield store


def _at(hour: int, minute: int = 0, day: int = 5) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=timezone.utc)


def _msg(user: str, emails: int, at: datetime, n: int) -> UsageInput:
    return UsageInput("outbound", user, None, emails, 0, 0, at, f"m{n}", line=n)


def _logins(store: Store) -> set[str]:
    return {c.login for c in store.credentials()}


# -- the rule --------------------------------------------------------------------------------


def test_a_full_window_refuses_temporarily_and_the_account_day_for_good():
    day = Limit("account", "day", 10, subject="shop")
    hour = Limit("account", "hour", 4, subject="shop", resets_at="2026-12-05T11:00:00Z")
    assert decide(3, 100, (day, hour), (0, 3)).crossed == (hour,)  # 3 -> 6: the one crossing message
    refused = decide(1, 100, (day, hour), (6, 6))
    assert (refused.accepted, refused.refused, refused.refused_by) == (False, REFUSED_WINDOW, hour)
    # both full: the account's day answers (its credentials go); it comes first
    assert decide(1, 100, (day, hour), (11, 6)).refused == REFUSED_OVER_LIMIT
    assert day.permanent and not hour.permanent
    assert not Limit("credential", "day", 5).permanent


@settings(max_examples=200, deadline=None)
@given(limits=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       sizes=st.lists(st.integers(1, 9), min_size=1, max_size=60))
def test_each_window_is_crossed_by_at_most_one_message(limits, sizes):
    """Messages in order against several counters that all count them:
    each counter is crossed at most once, nothing is counted past a full one,
    and what is counted is exactly what was accepted."""
    in_force = tuple(Limit("account" if i == 0 else "credential", "day" if i == 0 else "hour", v)
                     for i, v in enumerate(limits))
    used = [0] * len(limits)
    crossings = [0] * len(limits)
    accepted = 0
    for size in sizes:
        decision = decide(size, 100, in_force, used)
        if decision.accepted:
            accepted += size
            for i, limit in enumerate(in_force):
                crossings[i] += limit in decision.crossed
                used[i] += size
        else:
            assert any(u > limit.limit for u, limit in zip(used, in_force))
    assert all(c <= 1 for c in crossings)
    assert all(u == accepted for u in used)
    assert all(u <= limit.limit + max(sizes) for u, limit in zip(used, in_force))


# -- the calendar ----------------------------------------------------------------------------

ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES),
       seconds=st.integers(int(_at(0, day=1).timestamp()) - 10**9, int(_at(0, day=1).timestamp()) + 10**8))
def test_the_hour_cache_agrees_with_the_hour_worked_out(zone, seconds):
    at = datetime.fromtimestamp(seconds, timezone.utc)
    hours = Hours(ZoneInfo(zone))
    assert hours.of_text(at, stored_time(at)) == hour_start(at, ZoneInfo(zone))
    start = datetime.fromisoformat(hour_start(at, ZoneInfo(zone)).replace("Z", "+00:00"))
    assert start <= at < start + timedelta(hours=2)  # (two: a fall-back hour is one local hour twice)


def test_hours_days_and_months_are_the_store_zones():
    kolkata = ZoneInfo("Asia/Kolkata")  # +5:30: local hours start at half past, UTC
    when = periods(datetime(2026, 12, 31, 18, 45, tzinfo=timezone.utc), kolkata)
    assert when == ("2026-12-31T18:30:00Z", "2027-01-01", "2027-01")
    assert resets_at("hour", when.hour, kolkata) == "2026-12-31T19:30:00Z"
    assert resets_at("day", when.day, kolkata) == "2027-01-01T18:30:00Z"
    assert resets_at("month", when.month, kolkata) == "2027-01-31T18:30:00Z"
    new_york = ZoneInfo("America/New_York")  # 1 November 2026: 01:00-02:00 local happens twice
    first, second = (hour_start(datetime(2026, 11, 1, h, 30, tzinfo=timezone.utc), new_york) for h in (5, 6))
    assert (first, second) == ("2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z")  # two hours, two windows


# -- setting them ----------------------------------------------------------------------------


@pytest.mark.parametrize("scope,name,window,limit,error", [
    ("account", "shop", "week", 5, "unknown window 'week' for an account limit: choose hour, day or month"),
    ("credential", "a@shop.test", "month", 5, "unknown window 'month' for a credential limit: choose hour or day"),
    ("agency", "acme", "day", 5, "unknown window 'day' for a agency limit: choose month"),
    ("account", "shop", "hour", 0, "hourly limit must be between 1 and 100,000,000, not 0"),
    ("account", "shop", "month", 3_100_000_001, "monthly limit must be between 1 and 3,100,000,000, not 3100000001"),
    ("account", "shop", "hour", "9" * 40, "hourly limit must be a whole number from 1 to 100,000,000"),
    ("credential", "a@shop.test", "hour", "1.5", "hourly limit must be a whole number from 1 to 100,000,000"),
])
def test_bad_limits_are_refused_and_change_nothing(store, scope, name, window, limit, error):
    before = store.scalar("SELECT count(*) FROM audit")
    with pytest.raises(InvalidInput) as caught:
        set_window_limit(store, scope, name, window, limit)
    assert caught.value.message.startswith(error)
    assert store.scalar("SELECT count(*) FROM audit") == before
    assert store.window_limits([1, 2], ["a@shop.test"], [1]) == ({}, {}, {})


def test_set_and_clear_are_audited_and_a_deleted_credential_takes_its_caps(store):
    result = set_window_limit(store, "credential", "A@Shop.test", "hour", "1,000")
    assert {k: result[k] for k in ("scope", "subject", "window", "limit", "previous_limit", "status", "used")} == {
        "scope": "credential", "subject": "a@shop.test", "window": "hour", "limit": 1000, "previous_limit": None,
        "status": "updated", "used": 0}
    assert set_window_limit(store, "credential", "a@shop.test", "hour", 1000)["status"] == "unchanged"
    assert set_window_limit(store, "credential", "a@shop.test", "hour", None)["status"] == "cleared"
    set_window_limit(store, "credential", "a@shop.test", "day", 7)
    rows = store.query("SELECT action, object_name, account, details FROM audit WHERE action LIKE '%set_limit'")
    assert [(r["action"], r["object_name"], r["account"]) for r in rows] == [("credential.set_limit", "a@shop.test",
                                                                              "shop")] * 3
    with pytest.raises(NotFound):
        set_window_limit(store, "credential", "nobody@shop.test", "hour", 5)
    with store.write():
        store.execute("DELETE FROM credentials WHERE login = 'a@shop.test'")
    create_credential(store, "a@shop.test", PW)
    assert store.window_limits([], ["a@shop.test"], []).credentials == {}


# -- on every path ---------------------------------------------------------------------------


def test_an_import_meets_each_hour_window_exactly(store):
    set_window_limit(store, "account", "shop", "hour", 10)
    items = [_msg("a@shop.test", 3, _at(10, m), m + 1) for m in range(0, 50, 5)]  # 10 messages of 3 in 10:00
    items += [_msg("a@shop.test", 3, _at(11, m), 100 + m) for m in range(0, 10, 5)]  # 2 in 11:00
    summary = import_usage(store, items)
    # 10:00: 0, 3, 6, 9 -> 12 (the 4th crosses), the other 6 refused; 11:00 starts again
    assert (summary.messages, summary.emails, summary.rejected) == (6, 18, 6)
    assert all("account shop has reached its hourly limit (12 of 10 emails until 2026-12-05T11:00:00Z)"
               in r["reason"] for r in summary.rejected_lines)
    assert summary.crossings == [] and _logins(store) == {"a@shop.test", "b@shop.test", "c@blog.test"}
    assert store.query("SELECT hour, emails FROM usage_hourly ORDER BY hour") == [
        {"hour": "2026-12-05T10:00:00Z", "emails": 12}, {"hour": "2026-12-05T11:00:00Z", "emails": 6}]


def test_a_credentials_cap_stops_that_credential_alone(store):
    set_window_limit(store, "credential", "a@shop.test", "day", 5)
    now = store.now()
    summary = import_usage(store, [_msg(login, 4, now, n) for n, login in
                                   enumerate(["a@shop.test", "a@shop.test", "a@shop.test", "b@shop.test"], 1)])
    assert summary.messages == 3 and [r["line"] for r in summary.rejected_lines] == [3]
    assert "credential a@shop.test has reached its daily limit (8 of 5 emails" in summary.rejected_lines[0]["reason"]
    with pytest.raises(LimitReached):  # usage record: exit 5
        record_usage(store, UsageInput("outbound", "a@shop.test", None, 1, 0, 0, None, "x1"))
    answer = admit_message(store, "a@shop.test", 1, "live-1")
    assert (answer.accepted, answer.status, answer.refused_by.scope) == (False, REFUSED_WINDOW, "credential")
    assert admit_message(store, "b@shop.test", 1, "live-2").status == "accepted"
    assert _logins(store) == {"a@shop.test", "b@shop.test", "c@blog.test"}  # nothing revoked
    assert store.account("shop").blocked_at is None


def test_an_agencys_month_counts_its_accounts_together(store):
    set_window_limit(store, "agency", "acme", "month", 20)
    now = store.now()
    statuses = [admit_message(store, login, 6, f"m{n}").status
                for n, login in enumerate(["a@shop.test", "c@blog.test", "b@shop.test", "c@blog.test",
                                           "a@shop.test"])]
    # 6, 12, 18, 24 (crosses), then refused whichever account sends
    assert statuses == ["accepted"] * 4 + [REFUSED_WINDOW]
    assert periods(now, ZoneInfo("UTC")).month == store.now().strftime("%Y-%m")


def test_an_import_interleaving_an_agencys_accounts_counts_their_month_once(store):
    """One counter for the agency, whichever account a line is from: kept up
    to date by the batch as it goes (a counter per account would go stale)."""
    set_window_limit(store, "agency", "acme", "month", 20)
    logins = ["a@shop.test", "c@blog.test"] * 4
    summary = import_usage(store, [_msg(login, 6, _at(9, n), n + 1) for n, login in enumerate(logins)])
    assert summary.messages == 4 and [r["line"] for r in summary.rejected_lines] == [5, 6, 7, 8]


def test_an_accounts_month_spans_its_days(store):
    set_window_limit(store, "account", "shop", "month", 10)
    items = [_msg("a@shop.test", 4, _at(9, day=d), d) for d in (1, 2, 3, 4)]
    summary = import_usage(store, items)
    assert summary.messages == 3 and [r["line"] for r in summary.rejected_lines] == [4]
    assert "account shop has reached its monthly limit (12 of 10 emails until 2027-01-01T00:00:00Z)" \
        in summary.rejected_lines[0]["reason"]


def test_the_daily_limit_keeps_the_services_rule_beside_the_windows(store):
    set_window_limit(store, "account", "shop", "hour", 1000)
    with store.write():
        store.update_account(store.account("shop").id, daily_limit=5)
    assert admit_message(store, "a@shop.test", 3, "d1").status == "accepted"
    crossing = admit_message(store, "a@shop.test", 3, "d2")
    assert crossing.status == "accepted" and crossing.crossings[0].revoked_credentials == ("a@shop.test",
                                                                                            "b@shop.test")
    assert _logins(store) == {"c@blog.test"}


def test_hour_windows_follow_a_half_hour_zone(store):
    set_setting(store, "timezone", "Asia/Kolkata")
    set_window_limit(store, "account", "shop", "hour", 5)
    # 10:20 and 10:40 UTC are 15:50 and 16:10 in Kolkata: two local hours (in UTC's, line 3 would be refused)
    summary = import_usage(store, [_msg("a@shop.test", 5, _at(10, 20), 1), _msg("a@shop.test", 5, _at(10, 40), 2),
                                   _msg("a@shop.test", 1, _at(10, 50), 3), _msg("a@shop.test", 1, _at(10, 55), 4)])
    assert summary.messages == 3 and [r["line"] for r in summary.rejected_lines] == [4]
    assert "until 2026-12-05T11:30:00Z" in summary.rejected_lines[0]["reason"]


def test_cancelling_an_admitted_message_takes_it_out_of_its_hour(store):
    from smtpctl.core.metering.live import cancel_message

    set_window_limit(store, "account", "shop", "hour", 4)
    assert admit_message(store, "a@shop.test", 4, "c1").status == "accepted"
    assert cancel_message(store, "c1")
    assert admit_message(store, "a@shop.test", 4, "c2").status == "accepted"  # room again
    assert admit_message(store, "a@shop.test", 1, "c3").status == "accepted"  # 4 -> 5: crosses
    assert admit_message(store, "a@shop.test", 1, "c4").status == REFUSED_WINDOW


def test_docs_limits_page_quotes_the_replies_as_they_are():
    """docs/limits.md shows each path's refusal: kept equal to the code's words."""
    from pathlib import Path

    from smtpctl.core.metering.rule import Decision, refusal
    from smtpctl.servers import replies

    page = (Path(__file__).resolve().parents[2] / "docs" / "limits.md").read_text()
    hour = Limit("account", "hour", 300, subject="shop", resets_at="2026-12-06T05:00:00Z")
    assert f"`{replies.refusal('over_window_limit', hour)}`" in page
    assert f"`{replies.reject('over_window_limit', hour)[:60]}" in page
    refused = refusal(Decision(False, REFUSED_WINDOW, hour, 301), 1, 1000)
    assert f"`Error: {refused}`" in page


@pytest.mark.parametrize("scope,name", [("account", "shop"), ("credential", "a@shop.test")])
def test_an_hourly_limit_set_mid_hour_counts_what_the_hour_has_sent(store, scope, name):
    """The hourly rollup counts only senders with an hourly limit: a new one is
    made from the events at once, so the hour's earlier messages count."""
    for n in range(4):
        assert admit_message(store, "a@shop.test", 2, f"early{n}").status == "accepted"
    admit_message(store, "b@shop.test", 1, "other")  # the account's, not the credential's
    assert store.scalar("SELECT count(*) FROM usage_hourly") == 0  # nobody had an hourly limit
    result = set_window_limit(store, scope, name, "hour", 10)
    assert result["used"] == (9 if scope == "account" else 8)
    assert admit_message(store, "a@shop.test", 3, "late1").status == "accepted"  # crosses: 11 or 12 of 10
    assert admit_message(store, "a@shop.test", 1, "late2").status == REFUSED_WINDOW
