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

REFUSED_OVER_LIMIT = "over_limit"
REFUSED_TOO_MANY = "too_many_recipients"


@dataclass(frozen=True, slots=True)
class Counter:
    """One limit in force for a message: what it counts (``scope``: the
    account, ``window``: the day), how much is counted already in its
    window, and its limit."""

    scope: str
    window: str
    used: int
    limit: int

    @property
    def over(self) -> bool:
        return self.used > self.limit


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
            return Decision(False, REFUSED_OVER_LIMIT, counter)
    crossed = tuple(c for c in counters if c.used + recipients > c.limit)
    return Decision(True, crossed=crossed) if crossed else _ACCEPTED


def account_day(used: int, limit: int) -> Counter:
    """The account's daily limit (the service's rule) as a counter."""
    return Counter("account", "day", used, limit)


def refusal(decision: Decision, recipients: int, max_recipients: int, account: str = "", day: str = "") -> str:
    """Why a refused message was refused, in the words every path reports."""
    if decision.refused == REFUSED_TOO_MANY:
        return (f"{recipients:,} recipients in one message: more than the {max_recipients:,} allowed "
                "(store setting max_recipients_per_message); not recorded")
    counter = decision.refused_by
    assert counter is not None
    return (f"account {account} is over its daily limit on {day} ({counter.used:,} of {counter.limit:,} emails): "
            "message refused, not recorded")
