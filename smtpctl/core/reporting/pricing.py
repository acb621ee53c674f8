"""What a volume of email costs here and at other prices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from smtpctl.core.model import money
from smtpctl.core.model.errors import InvalidInput


def estimate(*, emails: int, rate: Decimal, compare: list[tuple[str, Decimal]]) -> dict[str, Any]:
    """The cost of ``emails`` at ``rate`` per 1,000 and at each comparison rate."""
    if emails < 0:
        raise InvalidInput("the number of emails must not be negative")
    ours = money.cost(emails, rate)
    return {
        "emails": emails,
        "rate_per_1000": money.plain(rate),
        "cost": money.plain(ours),
        "cost_rounded": format(money.to_cents(ours), "f"),
        "comparisons": [
            {
                "name": name, "rate_per_1000": money.plain(other_rate),
                "cost": money.plain(theirs := money.cost(emails, other_rate)),
                "cost_rounded": format(money.to_cents(theirs), "f"),
                "saving": money.plain(theirs - ours),
                "saving_rounded": format(money.to_cents(theirs - ours), "f"),
                # what the two amounts to pay differ by: each is rounded to the cent on its own
                "saving_as_billed": format(money.to_cents(theirs) - money.to_cents(ours), "f"),
            }
            for name, other_rate in compare
        ],
    }
