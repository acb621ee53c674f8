"""Prices in force: which price per 1,000 emails applies on which day (pure).

A schedule is the list of (first day, price) changes, oldest first; a price
applies from its day until the next change (RULES: prices in force). Before
the first change the service's default applies.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

BEGINNING = "0001-01-01"  # a price from the beginning


class Period(NamedTuple):
    """Days ``since`` to ``until`` (inclusive) priced at ``price_per_1000``."""

    since: str
    until: str
    price_per_1000: Decimal


class PriceSchedule:
    def __init__(self, changes: Iterable[tuple[str, Decimal]], default: Decimal):
        ordered = sorted(changes)
        if not ordered or ordered[0][0] != BEGINNING:
            ordered.insert(0, (BEGINNING, default))
        self.days = [day for day, _ in ordered]
        self.prices = [price for _, price in ordered]

    def price_on(self, day: str) -> Decimal:
        """The price in force on ``day`` (``YYYY-MM-DD``)."""
        return self.prices[bisect_right(self.days, day) - 1]

    def periods(self, since: str, until: str) -> list[Period]:
        """The days ``since`` to ``until``, cut where the price changes."""
        out: list[Period] = []
        start = since
        index = bisect_right(self.days, since) - 1
        while start <= until:
            following = self.days[index + 1] if index + 1 < len(self.days) else None
            if following is None or following > until:
                out.append(Period(start, until, self.prices[index]))
                break
            end = (date.fromisoformat(following) - timedelta(days=1)).isoformat()
            out.append(Period(start, end, self.prices[index]))
            start, index = following, index + 1
        return out

    def changes(self) -> list[tuple[str, Decimal]]:
        return list(zip(self.days, self.prices))
