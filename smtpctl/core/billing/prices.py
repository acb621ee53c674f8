"""Prices in force: the service's price per 1,000 emails from a day on, and
each agency's resale price to its clients. A day on a closed statement is
never repriced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.settings import service_prices, today
from smtpctl.core.model import money, rules
from smtpctl.core.model.errors import InvalidInput, StoreError
from smtpctl.core.model.prices import BEGINNING, PriceSchedule
from smtpctl.core.model.records import Outcome
from smtpctl.core.store import Store

SERVICE, RESALE = "service", "resale"
PRICE_PLACES = 4  # CLI.md: a price per 1,000 emails has at most 4 decimals


@dataclass(frozen=True, slots=True)
class Price:
    """A price per 1,000 emails from a day on (``None``: from the beginning)."""

    kind: str
    agency: str | None
    from_day: str | None
    price_per_1000: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "agency": self.agency, "from": self.from_day,
                "price_per_1000": money.plain(self.price_per_1000)}


def parse_price(value: object) -> Decimal:
    """A price per 1,000 emails for billing: the rules' price, with at most 4 decimals."""
    price = rules.validate_price(value)
    if price != price.quantize(Decimal(1).scaleb(-PRICE_PLACES)):
        raise InvalidInput(f"a price per 1,000 emails has at most {PRICE_PLACES} decimals, not {rules.shown(value)}")
    return price


def parse_day(text: str, what: str = "--from") -> str:
    """A calendar day ``YYYY-MM-DD`` (in the store's time zone)."""
    try:
        return date.fromisoformat(str(text).strip()).isoformat()
    except ValueError:
        raise InvalidInput(f"{what} must be a day like 2026-12-01, not {rules.shown(text)}") from None


def resale_prices(store: Store, agency_id: int) -> PriceSchedule:
    """An agency's resale prices in force; the service's where it set none."""
    own = store.prices(RESALE, agency_id)
    service = service_prices(store)
    if not own:
        return service
    changes = [(row.from_day, Decimal(row.price_per_1000)) for row in own]
    first = changes[0][0]
    # before its first resale price an agency resells at the service price
    return PriceSchedule([*((d, p) for d, p in service.changes() if d < first), *changes],
                         rules.DEFAULT_PRICE_PER_1000)


def history(store: Store, *, agency: str | None = None) -> list[Price]:
    """The service's prices in force (with ``agency``: that agency's resale prices), oldest first."""
    if agency is None:
        changes = service_prices(store).changes()
        return [Price(SERVICE, None, None if d == BEGINNING else d, p) for d, p in changes]
    owner = get_agency(store, agency)
    return [Price(RESALE, owner.name, row.from_day, Decimal(row.price_per_1000))
            for row in store.prices(RESALE, owner.id)]


def set_price(store: Store, price: object, from_day: str | None = None, *, agency: str | None = None) -> Outcome:
    """Set the service's price per 1,000 emails (with ``agency``: that agency's
    resale price to its clients) from ``from_day`` on (``None``: today, in the
    store's time zone); audited as ``billing.set_price``.

    Raises ``InvalidInput`` for a bad price or day, and for a day on a closed
    statement (its number named: a closed statement never changes), and
    ``NotFound`` for an unknown agency."""
    value = parse_price(price)
    with store.write():
        day = parse_day(from_day) if from_day is not None else today(store)
        owner = get_agency(store, agency) if agency is not None else None
        closed = store.last_billed_day(owner.id if owner is not None else None)
        if closed is not None and day[:7] <= closed[0]:
            raise InvalidInput(f"{day} is on closed statement {closed[1]} ({closed[0]}): a closed statement is "
                               f"never repriced; give a day after {closed[0]}")
        kind, agency_id = (RESALE, owner.id) if owner is not None else (SERVICE, 0)
        try:
            before = (resale_prices(store, agency_id) if owner is not None else service_prices(store)).price_on(day)
        except StoreError:  # a stored price that no longer passes its rule: this is how it is replaced
            before = None
        status = store.put_price(kind, agency_id, day, str(value))
        if status != "unchanged":
            store.audit("billing.set_price", "price", owner.name if owner else "service",
                        details={"kind": kind, "from": day, "price_per_1000": str(value),
                                 "was": str(before) if before is not None else None})
    warnings = []
    if owner is None and value != rules.DEFAULT_PRICE_PER_1000:
        warnings.append(f"price_per_1000 {money.plain(value)} departs from the service's price of "
                        f"${rules.DEFAULT_PRICE_PER_1000} per 1,000 emails")
    return Outcome(Price(kind, owner.name if owner else None, day, value), status,
                   {"from": day, "was": money.plain(before) if before is not None else None, "warnings": warnings})
