"""THE cap rule (core/metering/rule.py), tested once and exhaustively on plain
values: every path that meters mail calls it (batch import, usage record,
serve, the policy service), and their integration tests check each path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smtpctl.core.metering.rule import (REFUSED_NO_CREDITS, REFUSED_OVER_LIMIT, REFUSED_TOO_MANY, Decision, Limit,
                                        account_day, agency_credits, decide, refusal)

sizes = st.lists(st.integers(min_value=0, max_value=50), max_size=60)


def run(messages: list[int], limit: int, start: int = 0, max_recipients: int = 1000) -> tuple[int, list[Decision]]:
    """Meter ``messages`` one after the other against one daily counter, as a caller does."""
    used, decisions = start, []
    for recipients in messages:
        decision = decide(recipients, max_recipients, (account_day(limit),), (used,))
        decisions.append(decision)
        if decision.accepted:
            used += recipients
    return used, decisions


@given(sizes, st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=250))
def test_at_most_one_message_crosses_and_every_later_one_is_refused(messages, limit, start):
    used, decisions = run(messages, limit, start)
    crossing = [i for i, d in enumerate(decisions) if d.crossed]
    assert len(crossing) <= 1
    if start > limit:  # crossed before these messages: each one refused, none counted
        assert used == start and all(d.refused == REFUSED_OVER_LIMIT for d in decisions)
        return
    for i, decision in enumerate(decisions):
        before = sum(m for m, d in zip(messages[:i], decisions[:i]) if d.accepted) + start
        if before > limit:
            assert not decision.accepted and decision.refused == REFUSED_OVER_LIMIT
            assert (decision.refused_by, decision.refused_used) == (account_day(limit), before)
        else:
            assert decision.accepted
            assert bool(decision.crossed) == (before + messages[i] > limit)
    if crossing:
        # what is counted stops at the crossing message: the total before it was within the limit
        assert used - messages[crossing[0]] <= limit < used
    else:
        assert used <= limit


@given(sizes, st.integers(min_value=1, max_value=200))
def test_a_message_that_only_reaches_the_limit_does_not_cross(messages, limit):
    used, decisions = run([limit] + messages, limit)
    assert decisions[0].accepted and not decisions[0].crossed
    if messages and messages[0] > 0:  # the next message with recipients crosses
        assert decisions[1].crossed == (account_day(limit),)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=1000),
       st.integers(min_value=0, max_value=10))
def test_the_per_message_cap_comes_first_whatever_the_totals(recipients, max_recipients, used):
    over = Limit("account", "day", limit=used)
    decision = decide(recipients, max_recipients, (over,), (used + 100,))  # already over
    if recipients > max_recipients:
        assert decision == Decision(False, REFUSED_TOO_MANY)
    else:
        assert decision == Decision(False, REFUSED_OVER_LIMIT, over, used + 100)


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(1, 100)), min_size=1, max_size=4),
       st.integers(min_value=1, max_value=100))
def test_several_limits_the_first_over_refuses_and_every_crossed_one_is_named(pairs, recipients):
    limits = [Limit("account", f"w{i}", limit) for i, (_, limit) in enumerate(pairs)]
    used = [u for u, _ in pairs]
    decision = decide(recipients, 1000, limits, used)
    over = [(lim, u) for lim, u in zip(limits, used) if u > lim.limit]
    if over:
        assert (decision.accepted, decision.refused_by, decision.refused_used) == (False, *over[0])
    else:
        assert decision.accepted
        assert decision.crossed == tuple(lim for lim, u in zip(limits, used) if u + recipients > lim.limit)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=40), st.integers(min_value=0, max_value=300))
def test_credits_are_used_up_at_zero_and_at_most_one_message_crosses_it(messages, cents):
    from decimal import Decimal

    credits, price = Decimal(cents) / 100, Decimal("0.675")
    limit, charges, crossings = agency_credits(credits, price), Decimal(0), 0
    for recipients in messages:
        decision = decide(recipients, 1000, (limit,), (charges,))
        if charges >= credits:  # used up (a balance of exactly zero included): refused, temporarily
            assert decision.refused == REFUSED_NO_CREDITS
            continue
        assert decision.accepted
        crossings += bool(decision.crossed)
        charges += recipients * price / 1000
    assert crossings <= 1


def test_no_counter_means_only_the_per_message_cap():
    assert decide(5, 5, (), ()).accepted
    assert decide(6, 5, (), ()).refused == REFUSED_TOO_MANY


def test_refusals_are_worded_once_for_every_path():
    too_many = decide(1_001, 1_000, (), ())
    assert refusal(too_many, 1_001, 1_000) == (
        "1,001 recipients in one message: more than the 1,000 allowed (store setting max_recipients_per_message); "
        "not recorded")
    over = decide(1, 1_000, (account_day(1_500),), (1_501,))
    assert refusal(over, 1, 1_000, "shop", "2026-11-26") == (
        "account shop is over its daily limit on 2026-11-26 (1,501 of 1,500 emails): message refused, not recorded")
