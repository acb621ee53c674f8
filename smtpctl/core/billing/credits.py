"""Prepaid credits: an append-only ledger of top-ups per agency, the charges
they pay for (every email at the price in force on its day, exactly), the
balance, the agency's mode (postpaid until set prepaid) and its low-balance
warning level (docs/billing.md)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.settings import service_prices, today
from smtpctl.core.model import money, rules
from smtpctl.core.model.errors import AlreadyExists, Fix, InvalidInput, Notice
from smtpctl.core.model.records import Agency, Outcome
from smtpctl.core.notices import events
from smtpctl.core.store import Store

MODES = ("postpaid", "prepaid")
MAX_AMOUNT = Decimal("1000000000")  # a billion dollars: past it an amount is a typo
AMOUNT_PLACES = 2  # an amount paid or a warning level is in cents
MAX_NOTE, MAX_REF = 500, 200


def parse_amount(value: object, what: str = "amount", *, zero: bool = False) -> Decimal:
    """An amount of money in USD: a decimal string (``100``, ``25.50``, ``$25.50``),
    more than 0 (``zero``: 0 allowed), at most a billion, at most 2 decimals.
    Raises ``InvalidInput`` naming ``what``."""
    text = str(value).strip()
    text = text[1:].strip() if text.startswith("$") else text
    try:
        amount = Decimal(text) if len(text) <= 40 else Decimal("NaN")
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise InvalidInput(f"{what} must be an amount such as 100 or 25.50, not {rules.shown(value)}")
    if amount < 0 or (amount == 0 and not zero):
        raise InvalidInput(f"{what} must be {'0 or more' if zero else 'more than 0'}, not {rules.shown(value)}")
    if amount > MAX_AMOUNT:
        raise InvalidInput(f"{what} must be at most {MAX_AMOUNT:,}, not {rules.shown(value)}")
    if amount != amount.quantize(Decimal(1).scaleb(-AMOUNT_PLACES)):
        raise InvalidInput(f"{what} has more than {AMOUNT_PLACES} decimals (cents): {rules.shown(value)}")
    return Decimal(format(amount, "f"))


def parse_mode(value: object) -> str:
    mode = str(value).strip().lower()
    if mode not in MODES:
        raise InvalidInput(f"a billing mode is prepaid or postpaid, not {rules.shown(value)}")
    return mode


@dataclass(frozen=True, slots=True)
class Balance:
    """An agency's credits, what its emails cost to date, and what is left."""

    agency: str
    mode: str
    credits: Decimal
    charges: Decimal
    warn_below: Decimal | None

    @property
    def balance(self) -> Decimal:
        return self.credits - self.charges

    @property
    def low(self) -> bool:
        return self.warn_below is not None and self.balance < self.warn_below

    @property
    def exhausted(self) -> bool:
        """A prepaid agency with nothing left: its accounts do not send."""
        return self.mode == "prepaid" and self.balance <= 0

    def as_dict(self) -> dict[str, Any]:
        return {"agency": self.agency, "mode": self.mode, "credits": money.plain(self.credits),
                "charges": money.plain(self.charges), "balance": money.plain(self.balance),
                "balance_rounded": format(money.to_cents(self.balance), "f"),
                "warn_below": money.plain(self.warn_below) if self.warn_below is not None else None,
                "low": self.low, "exhausted": self.exhausted}


@dataclass(frozen=True, slots=True)
class CreditEntry:
    agency: str
    amount: Decimal
    note: str | None
    ref: str | None
    day: str

    def as_dict(self) -> dict[str, Any]:
        return {"agency": self.agency, "amount": money.plain(self.amount), "note": self.note, "ref": self.ref,
                "day": self.day}


def charges(store: Store, agency_id: int, until: str | None = None, since: str | None = None) -> Decimal:
    """What the agency's emails cost, each day at the price in force that day,
    exactly (no rounding), from its first email (or ``since``) to ``until``
    (default: today) inclusive."""
    first = since or store.first_usage_day(agency_id)
    if first is None:
        return Decimal(0)
    last = until or today(store)
    if first > last:
        return Decimal(0)
    return money.total(money.cost(store.agency_emails(agency_id, period.since, period.until), period.price_per_1000)
                       for period in service_prices(store).periods(first, last))


def balance_of(store: Store, agency: Agency) -> Balance:
    """The agency's balance now (``Balance``)."""
    billing = store.agency_billing(agency.id)
    credited = money.total(Decimal(entry["amount"]) for entry in store.credits(agency.id))
    warn = Decimal(billing.warn_below) if billing.warn_below is not None else None
    return Balance(agency.name, billing.mode, credited, charges(store, agency.id), warn)


def balances(store: Store, agency: str | None = None) -> list[Balance]:
    """Every agency's balance (or one agency's), by name. Raises ``NotFound``."""
    owners = [get_agency(store, agency)] if agency is not None else store.agencies()
    return [balance_of(store, owner) for owner in owners]


def low_notice(balance: Balance) -> Notice | None:
    """The warning for a balance under its agency's warning level, else None."""
    if balance.exhausted:
        return Notice(f"agency {balance.agency} is prepaid and its credits are used up (balance "
                      f"{_usd(balance.balance)}): its accounts cannot send until it is topped up",
                      Fix(("billing", "credit", balance.agency, "AMOUNT"), "top up with"))
    if not balance.low:
        return None
    return Notice(f"agency {balance.agency}'s credits are low: balance {_usd(balance.balance)}, below its "
                  f"warning level of ${money.to_cents(balance.warn_below)}",
                  Fix(("billing", "credit", balance.agency, "AMOUNT"), "top up with"))


def notify_balance(store: Store, owner: Agency, balance: Balance) -> None:
    """Inside a write that may have lowered ``owner``'s balance or raised its
    warning level: the ``credits.low`` and ``credits.exhausted`` notices its
    balance calls for, each once per episode. An episode ends with a top-up
    (a new ledger entry) and, for ``credits.low``, a new warning level: so a
    balance that stays low is told of once, not at every charge."""
    if not (balance.low or balance.exhausted):
        return
    entries = len(store.credits(owner.id))
    data = balance.as_dict()
    if balance.exhausted:
        events.credits_notice(store, "credits.exhausted", data, f"credits.exhausted:{owner.id}:{entries}")
    if balance.low:
        events.credits_notice(store, "credits.low", data, f"credits.low:{owner.id}:{entries}:{balance.warn_below}")


def _usd(amount: Decimal) -> str:
    """An amount for people, in cents: ``$1.44``, ``-$1.44`` (not ``$-1.44``)."""
    cents = money.to_cents(amount)
    return f"-${-cents}" if cents.is_signed() else f"${cents}"


def low_notices(store: Store, agencies: list[str]) -> list[Notice]:
    """The low-balance and used-up warnings of these agencies (by name, each once)."""
    notices = []
    for name in dict.fromkeys(agencies):
        owner = store.agency(name)
        notice = low_notice(balance_of(store, owner)) if owner is not None else None
        if notice is not None:
            notices.append(notice)
    return notices


def add_credit(store: Store, agency: str, amount: object, *, note: str | None = None,
               ref: str | None = None) -> Outcome:
    """Add prepaid credits to an agency (the ledger is append-only); audited as
    ``billing.credit``. A ``ref`` (a payment id) already in the ledger makes
    this a no-op (``unchanged``), so a retry never adds twice; the same ref with
    another amount raises ``AlreadyExists``. A top-up that makes a prepaid
    agency's balance positive lets its accounts send again at once (``resumed``).
    Raises ``InvalidInput`` or ``NotFound``."""
    value = parse_amount(amount)
    note = " ".join(note.split()) if note else None
    if note is not None and (len(note) > MAX_NOTE or not note.isprintable()):
        raise InvalidInput(f"a note is at most {MAX_NOTE} printable characters")
    # a blank ref (an unset variable in a script) would make a retry add twice: refused, not ignored
    ref = ref.strip() if ref is not None else None
    if ref is not None and (not ref or len(ref) > MAX_REF or not ref.isprintable()):
        raise InvalidInput(f"a ref is 1 to {MAX_REF} printable characters (a payment id), not {rules.shown(ref)}")
    with store.write():
        owner = get_agency(store, agency)
        if ref is not None:
            earlier = store.credit_by_ref(owner.id, ref)
            if earlier is not None:
                if Decimal(earlier["amount"]) != value:
                    raise AlreadyExists(f"ref {ref!r} is already in {owner.name}'s ledger with {earlier['amount']} "
                                        f"(on {earlier['day']}), not {value}; nothing was added")
                after = balance_of(store, owner)
                entry = CreditEntry(owner.name, value, earlier["note"], ref, earlier["day"])
                return Outcome(entry, "unchanged", {"balance": money.plain(after.balance), "resumed": False,
                                                    "warnings": []})
        before = balance_of(store, owner)
        day = today(store)
        store.insert_credit(owner.id, str(value), note, ref, day)
        after = balance_of(store, owner)
        resumed = before.exhausted and not after.exhausted
        store.audit("billing.credit", "agency", owner.name,
                    details={"amount": str(value), "note": note, "ref": ref, "balance": money.plain(after.balance),
                             "resumed": resumed})
    notice = low_notice(after)
    return Outcome(CreditEntry(owner.name, value, note, ref, day), "created",
                   {"balance": money.plain(after.balance), "resumed": resumed, "warnings": [notice] if notice else []})


def set_mode(store: Store, agency: str, mode: object) -> Outcome:
    """Make an agency prepaid (its accounts send while its balance is above
    zero) or postpaid (billed afterwards, today's behaviour); audited."""
    return _change_billing(store, agency, "mode", parse_mode(mode), "billing.set_mode")


def set_warn(store: Store, agency: str, amount: object) -> Outcome:
    """Warn (``billing balance``, ``usage status``, ``agency show``) when the
    agency's balance is below ``amount`` (``0`` or ``none``: never); audited."""
    off = str(amount).strip().lower() in ("none", "off")
    value = None if off else parse_amount(amount, "the warning level", zero=True)
    return _change_billing(store, agency, "warn_below", str(value) if value is not None else None,
                           "billing.set_warn")


def _change_billing(store: Store, agency: str, field: str, new: str | None, action: str) -> Outcome:
    """Set one field of an agency's billing (its mode or warning level), audited
    with the old and new value; the credits notices the new balance calls for."""
    with store.write():
        owner = get_agency(store, agency)
        current = store.agency_billing(owner.id)
        old = getattr(current, field)
        status = "unchanged"
        if old != new:
            store.put_agency_billing(owner.id, current._replace(**{field: new}))
            store.audit(action, "agency", owner.name, details={"old": old, "new": new})
            status = "updated"
        after = balance_of(store, owner)
        if status == "updated":
            notify_balance(store, owner, after)
    notice = low_notice(after)
    return Outcome(after, status, {"warnings": [notice] if notice else []})
