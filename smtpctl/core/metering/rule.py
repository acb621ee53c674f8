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
from decimal import Decimal
from typing import NamedTuple

from smtpctl.core.model import money, rules

REFUSED_OVER_LIMIT = "over_limit"
REFUSED_TOO_MANY = "too_many_recipients"
REFUSED_NO_CREDITS = "out_of_credits"  # a prepaid agency's balance is used up: temporary
REFUSED_WINDOW = "over_window_limit"  # any limit but the account's day is full: temporary, until it resets


class Limit(NamedTuple):
    """One limit in force for a message: what it caps (``scope``: the
    credential, the account or the agency; ``window``: the hour, day or
    month, or ``credits`` for a prepaid agency's balance; ``subject``: whose,
    by name) and how much. A message adds ``per_email`` for each email to
    what is used: 1 for a count of emails, the price of one email for
    credits. A count is full only past its limit (the message that reaches it
    is accepted); credits are used up at zero (``room_at_limit`` false). A
    caller makes each limit once and passes what is used, message by message."""

    scope: str
    window: str
    limit: int | Decimal
    per_email: int | Decimal = 1
    room_at_limit: bool = True
    subject: str = ""
    resets_at: str = ""  # when a window other than the account's day ends (ISO 8601 UTC)

    @property
    def permanent(self) -> bool:
        """The account's daily limit: the service's rule (crossing it revokes
        the account's credentials). Every other limit refuses until it resets."""
        return self.scope == "account" and self.window == "day"


class Decision(NamedTuple):
    """The rule's answer: ``accepted`` (and so counted), why not
    (``refused``: ``over_limit``, ``over_window_limit``, ``out_of_credits`` or
    ``too_many_recipients``,
    with the limit that refused it and what it had used), and the limits this
    message takes over."""

    accepted: bool
    refused: str = ""
    refused_by: Limit | None = None
    refused_used: int | Decimal = 0
    crossed: tuple[Limit, ...] = ()


_ACCEPTED = Decision(True)
_TOO_MANY = Decision(False, REFUSED_TOO_MANY)


def too_many_recipients(recipients: int, max_recipients: int) -> bool:
    """Step 1 of the rule alone: a caller that checks the message before it
    looks anything up (``batch.py``: before its id) asks this, then ``decide``."""
    return recipients > max_recipients


def decide(recipients: int, max_recipients: int, limits: Sequence[Limit], used: Sequence[int | Decimal]) -> Decision:
    """Apply the cap rule to a message of ``recipients`` emails, given the
    per-message cap, every limit in force for it (in the order they are
    checked) and what each has used so far (``used[i]`` for ``limits[i]``).
    Pure: the caller records an accepted message and applies what each
    crossing means (``enforcement.py``). (One pass, nothing made for a message
    that crosses nothing: an import decides a million messages.)"""
    if too_many_recipients(recipients, max_recipients):
        return _TOO_MANY
    crossed: tuple[Limit, ...] = ()
    # Walked by index, and a limit neither full nor crossed is passed on its
    # two comparisons: 0.17 us a message with one limit, where zip and
    # unpacking every limit took 0.34 us (an import decides a million).
    i = 0
    for limit in limits:
        so_far, most = used[i], limit.limit
        i += 1
        if so_far < most and so_far + recipients * limit.per_email <= most:
            continue  # below its limit before and after this message
        scope, window, most, per_email, room_at_limit, _, _ = limit
        if so_far > most or (so_far == most and not room_at_limit):  # full already
            kind = (REFUSED_NO_CREDITS if window == "credits"
                    else REFUSED_OVER_LIMIT if scope == "account" and window == "day" else REFUSED_WINDOW)
            return Decision(False, kind, limit, so_far)
        if so_far + recipients * per_email > most:
            crossed += (limit,)
    return Decision(True, crossed=crossed) if crossed else _ACCEPTED


WARN_AT = (80, 95)  # percent of a limit: a limit.warning notice at each, once per window (docs/notices.md)


def warning_levels(limit: Limit, before: int | Decimal, after: int | Decimal) -> tuple[int, ...]:
    """The warning levels (percent of ``limit``) a message took its counter
    from below to at or past; none for credits (billing tells of those)."""
    if limit.window == "credits":
        return ()
    return tuple(level for level in WARN_AT if before * 100 < level * limit.limit <= after * 100)


def account_day(limit: int, account: str = "") -> Limit:
    """The account's daily limit (the service's rule)."""
    return Limit("account", "day", limit, subject=account)


def agency_credits(credits: Decimal, price_per_1000: Decimal) -> Limit:
    """A prepaid agency's credits: what its emails cost to date (the used
    amount) against what it paid in, each email at the day's price."""
    return Limit("agency", "credits", credits, price_per_1000 / 1000, room_at_limit=False)


def refusal(decision: Decision, recipients: int, max_recipients: int, account: str = "", day: str = "",
            agency: str = "") -> str:
    """Why a refused message was refused, in the words every path reports."""
    if decision.refused == REFUSED_TOO_MANY:
        return (f"{recipients:,} recipients in one message: more than the {max_recipients:,} allowed "
                "(store setting max_recipients_per_message); not recorded")
    limit, used = decision.refused_by, decision.refused_used
    assert limit is not None
    if decision.refused == REFUSED_NO_CREDITS:
        balance = money.to_cents(limit.limit - used) + 0  # (+ 0: no "-0.00" for a sliver below zero)
        return (f"agency {agency}'s prepaid credits are used up (balance {balance} USD): "
                "message refused, not recorded; sending resumes once the agency is topped up")
    if decision.refused == REFUSED_WINDOW:
        adjective = rules.WINDOW_ADJECTIVE[limit.window]
        return (f"{limit.scope} {limit.subject} has reached its {adjective} limit ({used:,} of {limit.limit:,} emails "
                f"until {limit.resets_at}): message refused, not recorded; sending resumes then")
    return (f"account {account} is over its daily limit on {day} ({used:,} of {limit.limit:,} emails): "
            "message refused, not recorded")
