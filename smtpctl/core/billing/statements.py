"""Monthly statements: an ended month closed into one numbered statement per
agency, written once and never changed (docs/billing.md).

A statement has a line per sub-account and price in force (messages,
outbound and inbound emails, the price, the amount), a line for inbound mail
on the agency-assigned domains, and late lines: usage recorded after an
earlier statement closed its day, dated to that day. Each line is rounded to
the cent once; the total is the sum of the rounded lines, as on an invoice,
with the exact figure beside it. What each statement billed is kept per
account, day and direction, so every email is on exactly one statement.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from smtpctl.core.billing.credits import charges
from smtpctl.core.billing.prices import resale_prices
from smtpctl.core.directory.accounts import get_account
from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.settings import service_prices, today
from smtpctl.core.model import money, rules
from smtpctl.core.model.errors import InvalidInput, NotFound
from smtpctl.core.model.prices import BEGINNING, PriceSchedule
from smtpctl.core.model.records import Agency, Outcome
from smtpctl.core.notices import events
from smtpctl.core.store import Store
from smtpctl.core.store.billing import DayUsage

ZERO = Decimal(0)


def parse_month(text: object, what: str = "month") -> str:
    """A month ``YYYY-MM``; raises ``InvalidInput``."""
    raw = str(text).strip()
    try:
        first = date.fromisoformat(raw + "-01") if len(raw) == 7 else None
    except ValueError:
        first = None
    if first is None:
        raise InvalidInput(f"{what} must be a month like 2026-11, not {rules.shown(text)}")
    return raw


def month_days(month: str) -> tuple[str, str]:
    """The first and last day of ``month``."""
    first = date.fromisoformat(month + "-01")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first.isoformat(), (following - timedelta(days=1)).isoformat()


def _line(account: str | None, rows: list[DayUsage], price: Decimal, *, late_day: str | None = None) -> dict[str, Any]:
    outbound = sum(r.emails for r in rows if r.direction == "outbound")
    inbound = sum(r.emails for r in rows if r.direction == "inbound")
    exact = money.cost(outbound + inbound, price)
    line = {"account": account, "messages": sum(r.messages for r in rows), "outbound": outbound, "inbound": inbound,
            "emails": outbound + inbound, "price_per_1000": money.plain(price),
            "amount": format(money.to_cents(exact), "f"), "amount_exact": money.plain(exact),
            "late": late_day is not None}
    if late_day is not None:
        line["day"] = late_day
    return line


def _priced_lines(rows: list[DayUsage], names: dict[int, str], schedule: PriceSchedule) -> list[dict[str, Any]]:
    """A line per account (agency-assigned last) and price in force, in name order."""
    groups: dict[tuple[int, Decimal], list[DayUsage]] = {}
    for row in rows:
        groups.setdefault((row.account_id, schedule.price_on(row.day)), []).append(row)
    order = sorted(groups, key=lambda key: (key[0] == 0, names.get(key[0], "").lower(),
                                            min(r.day for r in groups[key])))
    return [_line(names.get(account_id) if account_id else None, groups[(account_id, price)], price)
            for account_id, price in order]


def _late_rows(store: Store, agency: Agency, before: str) -> list[DayUsage]:
    """Usage on days before ``before`` that statements closed without it (recorded after)."""
    billed = store.billed_usage(agency.id)
    if not billed:
        return []
    closed_months = {row["month"] for row in store.statement_rows(agency.id)}
    late = []
    for row in store.agency_usage(agency.id, BEGINNING, (date.fromisoformat(before) - timedelta(days=1)).isoformat()):
        if row.day[:7] not in closed_months:
            continue
        messages, emails = billed.get((row.day, row.account_id, row.direction), (0, 0))
        if row.emails > emails:
            late.append(DayUsage(row.day, row.account_id, row.direction, row.messages - messages, row.emails - emails))
    return late


def _document(store: Store, agency: Agency, month: str) -> tuple[dict[str, Any], list[DayUsage]]:
    """The agency's statement for ``month`` as it stands now, and the usage it bills."""
    first, last = month_days(month)
    names = {a.id: a.name for a in store.accounts(agency=agency.name)}
    schedule = service_prices(store)
    usage = store.agency_usage(agency.id, first, last)
    late = _late_rows(store, agency, first)
    lines = _priced_lines(usage, names, schedule)
    for row in late:
        lines.append(_line(names.get(row.account_id) if row.account_id else None, [row], schedule.price_on(row.day),
                           late_day=row.day))
    total = sum((Decimal(line["amount"]) for line in lines), ZERO)
    total_exact = money.total(Decimal(line["amount_exact"]) for line in lines)
    previous = [row for row in store.statement_rows(agency.id) if row["month"] < month]
    if previous:
        opening = Decimal(json.loads(previous[-1]["document"])["closing_balance"])
    else:  # no statement before: what the ledger and the charges before this month leave
        before = (date.fromisoformat(first) - timedelta(days=1)).isoformat()
        credited = money.total(Decimal(c["amount"]) for c in store.credits(agency.id, until=before))
        opening = money.to_cents(credited - charges(store, agency.id, until=before))
    credited = money.total(Decimal(c["amount"]) for c in store.credits(agency.id, since=first, until=last))
    resale = _resale_total(store, agency, usage, late)
    document = {
        "number": None, "agency": agency.name, "month": month, "status": "draft", "since": first, "until": last,
        "mode": store.agency_billing(agency.id).mode, "lines": lines,
        "credits": money.plain(credited), "opening_balance": money.plain(opening), "charges": money.plain(total),
        "closing_balance": money.plain(opening + credited - total), "total": money.plain(total),
        "total_exact": money.plain(total_exact),
        "resale_total": money.plain(resale) if resale is not None else None,
        "margin": money.plain(resale - total) if resale is not None else None,
    }
    return document, usage + late


def _resale_total(store: Store, agency: Agency, usage: list[DayUsage], late: list[DayUsage]) -> Decimal | None:
    """What the agency bills its clients for these emails at its resale prices
    (rounded per line, as its client statements are), or None without one."""
    if not store.prices("resale", agency.id):
        return None
    schedule = resale_prices(store, agency.id)
    lines = _priced_lines([r for r in usage if r.account_id], {}, schedule)
    lines += [_line(None, [r], schedule.price_on(r.day), late_day=r.day) for r in late if r.account_id]
    return sum((Decimal(line["amount"]) for line in lines), ZERO)


def statement(store: Store, agency: str, month: object, *, account: str | None = None) -> dict[str, Any]:
    """The agency's statement for ``month``: the closed one as it was written,
    or for a month not closed a draft (``status: draft``, no number) of what it
    would hold now. With ``account``: the client statement of that
    sub-account, at the agency's resale prices (the service's without one).
    Raises ``InvalidInput`` or ``NotFound``."""
    month = parse_month(month)
    owner = get_agency(store, agency)
    if account is not None:
        return _client_statement(store, owner, month, account)
    closed = store.statement_row(owner.id, month)
    if closed is not None:
        return json.loads(closed["document"])
    return _document(store, owner, month)[0]


def _client_statement(store: Store, agency: Agency, month: str, account: str) -> dict[str, Any]:
    client = get_account(store, account)
    if client.agency.lower() != agency.name.lower():
        raise NotFound(f"account {client.name!r} is not one of agency {agency.name!r}'s")
    first, last = month_days(month)
    closed = store.statement_row(agency.id, month)
    if closed is not None:  # what the agency's statement billed, never what arrived after it closed
        billed = store.billed_rows(closed["id"])
    else:
        billed = store.agency_usage(agency.id, first, last) + _late_rows(store, agency, first)
    rows = [r for r in billed if r.account_id == client.id]
    schedule = resale_prices(store, agency.id)
    lines = _priced_lines([r for r in rows if r.day >= first], {client.id: client.name}, schedule)
    lines += [_line(client.name, [r], schedule.price_on(r.day), late_day=r.day) for r in rows if r.day < first]
    total = sum((Decimal(line["amount"]) for line in lines), ZERO)
    return {"number": f"{closed['number']}-{client.id}" if closed else None, "agency": agency.name,
            "account": client.name, "month": month, "status": "closed" if closed else "draft", "since": first,
            "until": last, "lines": lines, "credits": None, "opening_balance": None, "charges": money.plain(total),
            "closing_balance": None, "total": money.plain(total),
            "total_exact": money.plain(money.total(Decimal(line["amount_exact"]) for line in lines))}


def close(store: Store, month: object, *, agency: str | None = None) -> list[Outcome]:
    """Close an ended month: one numbered statement per agency (or for
    ``agency`` alone), in one transaction, each written once and never
    changed; audited as ``billing.close``. Closing again is a no-op
    (``unchanged``). Raises ``InvalidInput`` for a month not ended yet."""
    month = parse_month(month)
    outcomes = []
    with store.write():
        current = today(store)[:7]
        if month >= current:
            raise InvalidInput(f"{month} has not ended (today is in {current}); a month is closed once it is over")
        first, last = month_days(month)
        owners = [get_agency(store, agency)] if agency is not None else store.agencies()
        for owner in owners:
            existing = store.statement_row(owner.id, month)
            if existing is not None:
                outcomes.append(Outcome(_Closed(json.loads(existing["document"])), "unchanged"))
                continue
            document, billed = _document(store, owner, month)
            if owner.created_at[:10] > last and not billed and document["credits"] == "0.00":
                continue  # created after the month, with nothing to bill in it
            number = f"{month}-{store.statements_in_month(month) + 1:04d}"
            document.update(number=number, status="closed", closed_at=store.now().strftime("%Y-%m-%dT%H:%M:%SZ"))
            statement_id = store.insert_statement(number, owner.id, month, json.dumps(document, sort_keys=True))
            store.insert_billed(statement_id, owner.id, billed)
            store.audit("billing.close", "statement", number,
                        details={"agency": owner.name, "month": month, "total": document["total"]})
            events.statement_closed(store, number, owner.name, month, document["total"], document["closed_at"])
            outcomes.append(Outcome(_Closed(document), "created"))
        if agency is None:
            store.close_month(month)
    return outcomes


class _Closed:
    """A closed statement as a provisioning-style result (its summary)."""

    def __init__(self, document: dict[str, Any]):
        self.document = document

    def as_dict(self) -> dict[str, Any]:
        d = self.document
        return {"number": d["number"], "agency": d["agency"], "month": d["month"], "total": d["total"],
                "lines": len(d["lines"])}


def daily_emails(store: Store, agency: str, month: object, *, account: str | None = None) -> dict[str, Any]:
    """Emails per day per account in ``month`` (what a statement's chart draws;
    for a closed month, what its statement billed, without later usage):
    ``{"days": [every day of the month], "accounts": {name: [emails per day]}}``,
    with the agency-assigned domains' inbound mail under the name ``""``."""
    month = parse_month(month)
    owner = get_agency(store, agency)
    first, last = month_days(month)
    names = {a.id: a.name for a in store.accounts(agency=owner.name)}
    days = [(date.fromisoformat(first) + timedelta(days=i)).isoformat()
            for i in range((date.fromisoformat(last) - date.fromisoformat(first)).days + 1)]
    index = {day: i for i, day in enumerate(days)}
    closed = store.statement_row(owner.id, month)
    if closed is not None:  # what the closed statement billed: its lines and its chart add up alike
        rows = [r for r in store.billed_rows(closed["id"]) if first <= r.day <= last]
    else:
        rows = store.agency_usage(owner.id, first, last)
    series: dict[str, list[int]] = {}
    for row in rows:
        name = names.get(row.account_id, "") if row.account_id else ""
        if account is not None and name.lower() != account.lower():
            continue
        series.setdefault(name, [0] * len(days))[index[row.day]] += row.emails
    return {"days": days, "accounts": dict(sorted(series.items(), key=lambda item: (item[0] == "", item[0].lower())))}


def listing(store: Store, agency: str | None = None) -> list[dict[str, Any]]:
    """The closed statements (of one agency), by month then agency."""
    owner = get_agency(store, agency) if agency is not None else None
    rows = []
    for row in store.statement_rows(owner.id if owner is not None else None):
        document = json.loads(row["document"])
        rows.append({"number": row["number"], "agency": row["agency"], "month": row["month"],
                     "closed_at": row["closed_at"], "total": document["total"],
                     "closing_balance": document["closing_balance"]})
    return rows


def months_open_before(store: Store, month: str) -> list[str]:
    """The months before ``month``, from the first with usage (and at least the
    one just before it), that are not closed for every agency."""
    previous = (date.fromisoformat(month + "-01") - timedelta(days=1)).strftime("%Y-%m")
    first = store.first_usage_day()
    closed = store.months_closed()
    out, cursor = [], min(first[:7], previous) if first is not None else previous
    while cursor < month:
        if cursor not in closed:
            out.append(cursor)
        cursor = (date.fromisoformat(cursor + "-01") + timedelta(days=32)).strftime("%Y-%m")
    return out


def prune(store: Store, before: object) -> dict[str, Any]:
    """Delete the raw usage events of the closed months before ``before``
    (statements and the daily rollup stay: reports over those months still
    work); audited as ``usage.prune``. A usage line dated before the horizon
    is refused from then on (its id is gone, so it could be billed twice).
    Raises ``InvalidInput`` when a month before it is not closed, or it is
    after this month."""
    month = parse_month(before, "--before")
    horizon = month + "-01"
    with store.write():
        current = today(store)[:7]
        if month > current:  # a horizon in the future would refuse today's usage
            raise InvalidInput(f"cannot prune before {month}: it is after this month ({current}); nothing was "
                               "deleted")
        still_open = months_open_before(store, month)
        if still_open:
            shown = ", ".join(still_open[:6]) + (f" and {len(still_open) - 6} more" if len(still_open) > 6 else "")
            raise InvalidInput(f"cannot prune before {month}: {shown} {'is' if len(still_open) == 1 else 'are'} not "
                               "closed (billing close YYYY-MM closes a month for every agency); nothing was deleted")
        old = store.pruned_before()
        if old is not None and old >= horizon:
            return {"before": old, "deleted_events": 0, "status": "unchanged"}
        deleted = store.prune_events_before(horizon)
        store.audit("usage.prune", "store", store.location, details={"before": horizon, "deleted_events": deleted})
    return {"before": horizon, "deleted_events": deleted, "status": "pruned"}
