"""``usage report``: messages, emails and cost over a range of days, grouped
and filtered."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from smtpctl.core.directory.accounts import get_account
from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.settings import effective_settings, store_zone, today
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
    the report covers the current month up to today. Costs are exact at the
    store's ``price_per_1000`` and add up to the total exactly.
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
    price = Decimal(effective_settings(store)["price_per_1000"])
    raw = store.usage_rollup(start.isoformat(), end.isoformat(), groups, filters)
    rows = []
    total_exact = Decimal(0)
    for r in raw:
        exact = money.cost(r["emails"], price)
        total_exact += exact  # sums are taken before rounding
        rows.append({**{g: r[g] for g in groups}, "messages": r["messages"], "emails": r["emails"],
                     "outbound": r["outbound"], "inbound": r["inbound"], "cost": money.plain(exact),
                     "cost_rounded": format(money.to_cents(exact), "f")})
    total = {k: sum(r[k] for r in raw) for k in ("messages", "emails", "outbound", "inbound")}
    return {
        "since": start.isoformat(), "until": end.isoformat(), "timezone": zone.key, "by": groups,
        "price_per_1000": money.plain(price), "rows": rows,
        "total": {**total, "cost": money.plain(total_exact),
                  "cost_rounded": format(money.to_cents(total_exact), "f")},
    }
