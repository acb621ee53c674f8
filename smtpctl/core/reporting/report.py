"""``usage report``: messages, emails and cost over a range of days, grouped
and filtered."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from smtpctl.core.directory.accounts import get_account
from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.settings import service_prices, store_zone, today
from smtpctl.core.model import money, rules
from smtpctl.core.model.clock import parse_day
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store import Store

GROUPS = ("day", "agency", "account", "domain", "user", "direction")




def usage_report(store: Store, *, since: str | None = None, until: str | None = None,
                 by: Iterable[str] = ("account",), agency: str | None = None, account: str | None = None,
                 domain: str | None = None, user: str | None = None) -> dict[str, Any]:
    """Messages, emails (outbound/inbound) and cost, grouped and filtered.

    Dates are inclusive calendar days in the store's time zone; without them
    the report covers the current month up to today. Each day's emails cost
    the price in force that day (``prices`` lists the periods of the range),
    exactly, and the rows add up to the total exactly.
    """
    groups = list(dict.fromkeys(by)) or ["account"]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InvalidInput(f"--by must be one of {', '.join(GROUPS)}, not {unknown[0]!r}")
    zone = store_zone(store)
    current = date.fromisoformat(today(store, zone))
    end = parse_day(until, "--until", current) if until else current
    start = parse_day(since, "--since", current) if since else end.replace(day=1)
    if start > end:
        raise InvalidInput(f"--since {start} is after --until {end}")
    filters = {}
    if agency:
        filters["agency_id"] = get_agency(store, agency).id
    if account:
        filters["account_id"] = get_account(store, account).id
    if domain:
        filters["domain"] = rules.normalise_domain(domain)
    if user:
        name, dom = rules.parse_login(user)
        filters["login"] = f"{name}@{dom}"
    periods = service_prices(store).periods(start.isoformat(), end.isoformat())
    cuts = [period.since for period in periods[1:]]
    rows, merged = [], []
    total_exact = Decimal(0)
    # One row per group and price period, the periods of one group adjacent: each
    # day's emails are priced at the price in force that day (docs/billing.md).
    for r in store.usage_rollup(start.isoformat(), end.isoformat(), groups, filters, cuts=cuts):
        exact = money.cost(r["emails"], periods[r["period"]].price_per_1000)
        key = tuple(r[g] for g in groups)
        if merged and merged[-1][0] == key:
            last = merged[-1][1]
            for field in ("messages", "emails", "outbound", "inbound"):
                last[field] += r[field]
            merged[-1][2].append(exact)
        else:
            merged.append((key, {f: r[f] for f in (*groups, "messages", "emails", "outbound", "inbound")}, [exact]))
    for _, row, costs in merged:
        exact = money.total(costs)
        total_exact += exact  # sums are taken before rounding
        rows.append({**row, "cost": money.plain(exact), "cost_rounded": format(money.to_cents(exact), "f")})
    total = {k: sum(r[k] for r in rows) for k in ("messages", "emails", "outbound", "inbound")}
    return {
        "since": start.isoformat(), "until": end.isoformat(), "timezone": zone.key, "by": groups,
        "price_per_1000": money.plain(periods[-1].price_per_1000),
        "prices": [{"since": period.since, "until": period.until, "price_per_1000": money.plain(period.price_per_1000)}
                   for period in periods],
        "rows": rows,
        "total": {**total, "cost": money.plain(total_exact),
                  "cost_rounded": format(money.to_cents(total_exact), "f")},
    }
