"""THE cap rule: may this message be sent, and what does it cross?

A pure decision on plain values, written once; every path that meters
mail calls it (``batch.py`` for ``usage record`` and ``usage import``,
``live.py`` for ``serve`` and the policy service). What a caller does for
speed (reading the totals once per transaction, keeping them up to date) is
how it gathers this rule's inputs, never a second copy of the rule.

The rule (docs/rules.md, "The cap rule"):

1. A message with more recipients than ``max_recipients_per_message`` is
   refused, whatever the totals (``too_many_recipients``).
2. A message whose counter is already over its limit is refused
   (``over_limit``): the limit was crossed by an earlier message.
3. Otherwise it is accepted and counted; when it takes a counter over its
   limit it is the one message that crosses it (``crossed``).

So each counter is crossed by at most one message, whatever the order or the
concurrency, as long as each decision and its recording are one step (the
callers hold the counter's lock while they decide and record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from smtpctl.core.model import money

REFUSED_OVER_LIMIT = "over_limit"
REFUSED_TOO_MANY = "too_many_recipients"
REFUSED_NO_CREDITS = "out_of_credits"  # a prepaid agency's balance is used up: temporary


@dataclass(frozen=True, slots=True)
class Counter:
    """One limit in force for a message: what it counts (``scope``: the
    account, ``window``: the day; or the agency's prepaid ``credits``), how
    much is counted already, and its limit. A message adds ``per_email`` for
    each email: 1 for a count of emails, the price of one email for credits.
    A count is full only past its limit (the message that reaches it is
    accepted); credits are used up at zero (``room_at_limit`` false)."""

    scope: str
    window: str
    used: int | Decimal
    limit: int | Decimal
    per_email: int | Decimal = 1
    room_at_limit: bool = True

    @property
    def over(self) -> bool:
        return self.used > self.limit if self.room_at_limit else self.used >= self.limit

    def after(self, recipients: int) -> int | Decimal:
        return self.used + recipients * self.per_email


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule's answer: ``accepted`` (and so counted), why not
    (``refused``: ``over_limit`` or ``too_many_recipients``, with the counter
    that refused it), and the counters this message takes over their limit."""

    accepted: bool
    refused: str = ""
    refused_by: Counter | None = None
    crossed: tuple[Counter, ...] = ()


_ACCEPTED = Decision(True)


def decide(recipients: int, max_recipients: int, counters: Sequence[Counter]) -> Decision:
    """Apply the cap rule to a message of ``recipients`` emails, given the
    per-message cap and every counter in force for it (in the order they are
    checked). Pure: the caller records an accepted message and applies what
    each crossing means (``enforcement.py``)."""
    if recipients > max_recipients:
        return Decision(False, REFUSED_TOO_MANY)
    for counter in counters:
        if counter.over:
            return Decision(False, REFUSED_NO_CREDITS if counter.window == "credits" else REFUSED_OVER_LIMIT, counter)
    crossed = tuple(c for c in counters if c.after(recipients) > c.limit)
    return Decision(True, crossed=crossed) if crossed else _ACCEPTED


def account_day(used: int, limit: int) -> Counter:
    """The account's daily limit (the service's rule) as a counter."""
    return Counter("account", "day", used, limit)


def agency_credits(charges: Decimal, credits: Decimal, price_per_1000: Decimal) -> Counter:
    """A prepaid agency's credits as a counter: what its emails cost to date
    against what it paid in, each email of this message at today's price."""
    return Counter("agency", "credits", charges, credits, price_per_1000 / 1000, room_at_limit=False)


def refusal(decision: Decision, recipients: int, max_recipients: int, account: str = "", day: str = "",
            agency: str = "") -> str:
    """Why a refused message was refused, in the words every path reports."""
    if decision.refused == REFUSED_TOO_MANY:
        return (f"{recipients:,} recipients in one message: more than the {max_recipients:,} allowed "
                "(store setting max_recipients_per_message); not recorded")
    counter = decision.refused_by
    assert counter is not None
    if decision.refused == REFUSED_NO_CREDITS:
        balance = money.to_cents(counter.limit - counter.used) + 0  # (+ 0: no "-0.00" for a sliver below zero)
        return (f"agency {agency}'s prepaid credits are used up (balance {balance} USD): "
                "message refused, not recorded; sending resumes once the agency is topped up")
    return (f"account {account} is over its daily limit on {day} ({counter.used:,} of {counter.limit:,} emails): "
            "message refused, not recorded")
