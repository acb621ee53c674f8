"""Money: exact Decimal arithmetic, never float.

A cost is ``emails * price_per_1000 / 1000``, exact. It is rounded to the cent
(half up) only where it is shown as an amount to pay, and sums are taken
before rounding (docs/rules.md).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Iterable

CENT = Decimal("0.01")
THOUSAND = Decimal(1000)

# Money maths runs in its own context, wide enough to stay exact for any
# count SQLite can hold (19 digits) at any price rules.py accepts (4 digits,
# 6 places), and summed over many rows: the default 28 digits would round
# such a sum, and quantize() would raise InvalidOperation past them.
MONEY = Context(prec=60, rounding=ROUND_HALF_UP)


def cost(emails: int, price_per_1000: Decimal) -> Decimal:
    """The exact cost of ``emails`` at ``price_per_1000`` (no rounding)."""
    if isinstance(price_per_1000, float) or isinstance(emails, float):
        raise TypeError("money is never a float")
    with localcontext(MONEY):
        return Decimal(int(emails)) * price_per_1000 / THOUSAND


def to_cents(amount: Decimal) -> Decimal:
    """Round an exact amount to the cent, half up, for display as an amount to pay."""
    if isinstance(amount, float):
        raise TypeError("money is never a float")
    with localcontext(MONEY):
        return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def total(amounts: Iterable[Decimal]) -> Decimal:
    """Sum exact amounts (before any rounding)."""
    with localcontext(MONEY):
        return sum(amounts, Decimal("0"))


def plain(amount: Decimal) -> str:
    """An exact amount without exponent or trailing zeros beyond the cent: ``30.375``, ``0.03``, ``12.50``."""
    text = format(amount, "f")
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0")
        frac = frac.ljust(2, "0")
        return f"{whole}.{frac}"
    return f"{text}.00"
