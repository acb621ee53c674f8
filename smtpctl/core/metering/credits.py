"""What the cap rule needs of a prepaid agency (docs/billing.md): its credits,
what its emails cost so far, and the price in force on a message's day; kept
up to date by the caller as it records messages (each email is charged on
its day, inbound ones too, though only outbound mail can be refused)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from smtpctl.core.billing.credits import charges
from smtpctl.core.directory.settings import service_prices
from smtpctl.core.metering.rule import Limit, agency_credits
from smtpctl.core.model import money
from smtpctl.core.model.prices import PriceSchedule
from smtpctl.core.store import Store

ALL_RECORDED = "9999-12-31"  # charges of every day recorded, however far ahead


@dataclass(slots=True)
class PrepaidAgency:
    name: str
    credits: Decimal
    charges: Decimal  # what its emails cost so far: the credits limit's used amount
    prices: PriceSchedule
    warn_below: Decimal | None = None  # the agency's warning level (credits.low)
    _limits: dict[str, Limit] = field(default_factory=dict)

    def limit(self, day: str) -> Limit:
        """The credits as a limit for a message on ``day`` (made once a day: its price)."""
        found = self._limits.get(day)
        if found is None:
            found = self._limits[day] = agency_credits(self.credits, self.prices.price_on(day))
        return found

    def charge(self, emails: int, day: str) -> None:
        self.charges += money.cost(emails, self.prices.price_on(day))


def prepaid_agencies(store: Store, agency_ids: Iterable[int]) -> dict[int, PrepaidAgency]:
    """The prepaid agencies among ``agency_ids``, read under the caller's lock."""
    found = store.prepaid_agencies(agency_ids)
    if not found:
        return {}
    prices = service_prices(store)
    return {agency_id: PrepaidAgency(name, store.credit_total(agency_id),
                                     charges(store, agency_id, until=ALL_RECORDED), prices,
                                     _warn_below(store, agency_id))
            for agency_id, name in found.items()}


def _warn_below(store: Store, agency_id: int) -> Decimal | None:
    warn_below = store.agency_billing(agency_id).warn_below
    return Decimal(warn_below) if warn_below is not None else None
