"""What a recorded message tells, in its own transaction (docs/notices.md):
``limit.warning`` when it takes a limit's counter to 80% or 95% (once per
window and level), ``limit.crossed`` when it crosses a window other than the
account's day (``enforcement.enforce`` tells of that one, with what it
revoked), and ``credits.low`` / ``credits.exhausted`` when it takes a
prepaid agency's balance below its warning level or to nothing. Both
metering paths call ``tell`` for each message they record."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from smtpctl.core.billing.credits import Balance, notify_balance
from smtpctl.core.metering.credits import PrepaidAgency
from smtpctl.core.metering.rule import Limit, warning_levels
from smtpctl.core.metering.windows import Counter
from smtpctl.core.notices.outbox import emit
from smtpctl.core.store import Store


def tell(store: Store, limits: Sequence[Limit], counters: Sequence[Counter], before: Sequence[int], emails: int,
         crossed: Sequence[Limit]) -> None:
    """The notices of one recorded message of ``emails`` against the limits in
    force (``counters[i]`` for ``limits[i]``, ``before[i]`` what it held)."""
    for limit, counter, so_far in zip(limits, counters, before):
        after = so_far + emails
        for level in warning_levels(limit, so_far, after):
            emit(store, "limit.warning", {**_window(limit, counter), "level": level, "used": after},
                 once_key=f"limit.warning:{_key(counter)}:{level}")
        if limit in crossed and not limit.permanent:
            emit(store, "limit.crossed", {**_window(limit, counter), "emails": after, "enforced": True,
                                          "revoked_credentials": []},
                 once_key=f"limit.crossed:{_key(counter)}")


def tell_credits(store: Store, credits: PrepaidAgency, charged_before: Decimal, charged_after: Decimal) -> None:
    """``credits.low`` / ``credits.exhausted`` when charges going from
    ``charged_before`` to ``charged_after`` took the balance across the
    agency's warning level or to nothing (each once per episode:
    ``billing.credits.notify_balance``)."""
    before, after = credits.credits - charged_before, credits.credits - charged_after
    low = credits.warn_below is not None and after < credits.warn_below <= before
    if low or after <= 0 < before:
        owner = store.agency(credits.name)
        if owner is not None:
            notify_balance(store, owner, Balance(credits.name, "prepaid", credits.credits, charged_after,
                                                 credits.warn_below))


def _window(limit: Limit, counter: Counter) -> dict[str, object]:
    return {"scope": limit.scope, "subject": limit.subject, "window": limit.window, "period": counter.period,
            "limit": limit.limit, "resets_at": limit.resets_at or None}


def _key(counter: Counter) -> str:
    return f"{counter.scope}:{counter.subject}:{counter.window}:{counter.period}"
