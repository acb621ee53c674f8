"""``usage report``: messages, emails and cost over a range of days, grouped
and filtered.

Apart from ``core.usage`` (which re-exports all of it) because the report
needs none of the metering there: importing core/usage.py compiles ~40 KB
of source and creates its dataclasses (``dataclasses`` itself loads
``inspect``), a tenth of a 6,000-row report's run when smtpctl's bytecode is
not cached (docs/performance.md, issue 12).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from smtpctl.core import billing, rules
from smtpctl.core.errors import InvalidInput
from smtpctl.core.reads import effective_settings, get_account, get_agency, today

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, Iterable

    from smtpctl.core.store import Store


GROUPS = ("day", "agency", "account", "domain", "user", "direction")


def parse_day(text: str, what: str, current: date) -> date:
    """A calendar day: ``2026-11-26``, ``today``, ``yesterday`` or ``Nd`` (N
    days before ``current``, today in the store's time zone; ``0d`` is today).
    Raises ``InvalidInput`` naming the option ``what``."""
    word = text.strip().lower()
    if word == "today":
        return current
    if word == "yesterday":
        return current - timedelta(days=1)
    if len(word) > 1 and word.endswith("d") and word[:-1].isdigit() and len(word) <= 6:
        return current - timedelta(days=int(word[:-1]))
    try:
        return date.fromisoformat(word)
    except ValueError:
        raise InvalidInput(f"{what} must be a date like 2026-11-26, today, yesterday or 7d (7 days ago), "
                           f"not {text!r}") from None


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
    zone = ZoneInfo(str(effective_settings(store)["timezone"]))  # core.usage's store_zone
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
        exact = billing.cost(r["emails"], price)
        total_exact += exact  # sums are taken before rounding
        rows.append({**{g: r[g] for g in groups}, "messages": r["messages"], "emails": r["emails"],
                     "outbound": r["outbound"], "inbound": r["inbound"], "cost": billing.plain(exact),
                     "cost_rounded": format(billing.to_cents(exact), "f")})
    total = {k: sum(r[k] for r in raw) for k in ("messages", "emails", "outbound", "inbound")}
    return {
        "since": start.isoformat(), "until": end.isoformat(), "timezone": zone.key, "by": groups,
        "price_per_1000": billing.plain(price), "rows": rows,
        "total": {**total, "cost": billing.plain(total_exact),
                  "cost_rounded": format(billing.to_cents(total_exact), "f")},
    }
