"""The agency's billing view: what each of its sub-accounts spent, this month
and last (RULES: charges roll up to the agency, which sees credits spent per
sub-account).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from smtpctl.core.billing import credits as billing_credits
from smtpctl.core.billing import statements
from smtpctl.core.directory.agencies import agency_detail
from smtpctl.core.directory.settings import store_zone, today
from smtpctl.core.reporting.report import usage_report
from smtpctl.core.store import Store

_ZERO = {"messages": 0, "emails": 0, "outbound": 0, "inbound": 0, "cost": "0.00", "cost_rounded": "0.00"}
_FIELDS = tuple(_ZERO)


def month_ranges(today: date) -> dict[str, tuple[date, date]]:
    """This month from its 1st to ``today``, and the whole of last month."""
    first = today.replace(day=1)
    last_end = first - timedelta(days=1)
    return {"this_month": (first, today), "last_month": (last_end.replace(day=1), last_end)}


def agency_view(store: Store, name: str) -> dict[str, Any]:
    """An agency, its accounts and domains, and its ``credits``: emails and
    cost this month and last, per account (every account, zeros included),
    plus a row for inbound mail on the agency's agency-assigned domains,
    which belongs to no account. Costs are exact with the amount to pay
    rounded to the cent; totals are summed before rounding. ``billing``: its
    mode, credits, charges to date, balance and warning; ``statements``: its
    closed statements. Raises ``NotFound``.
    """
    detail = agency_detail(store, name)
    zone = store_zone(store)
    ranges = month_ranges(date.fromisoformat(today(store, zone)))
    reports = {key: usage_report(store, since=start.isoformat(), until=end.isoformat(), by=["account"],
                                       agency=detail["name"])
               for key, (start, end) in ranges.items()}
    names = list(detail["accounts"])
    rows: dict[str, dict[str, Any]] = {n: {} for n in names}
    shared_domains = any(d.account is None for d in store.domains(agency=detail["name"]))
    if shared_domains or any(r["account"] == "" for rep in reports.values() for r in rep["rows"]):
        rows[""] = {}
    for key, report in reports.items():
        for r in report["rows"]:
            rows.setdefault(r["account"], {})[key] = {f: r[f] for f in _FIELDS}
    credits_rows = [
        {"account": account or None, "agency_assigned": account == "",
         **{key: found.get(key, dict(_ZERO)) for key in reports}}
        for account, found in sorted(rows.items(), key=lambda item: (item[0] == "", item[0].lower()))
    ]
    some = next(iter(reports.values()))
    balance = billing_credits.balance_of(store, store.agency(detail["name"]))
    notice = billing_credits.low_notice(balance)
    return {
        **detail,
        "credits": {
            "timezone": some["timezone"],
            "price_per_1000": some["price_per_1000"],
            **{key: {"month": start.strftime("%Y-%m"), "since": start.isoformat(), "until": end.isoformat()}
               for key, (start, end) in ranges.items()},
            "accounts": credits_rows,
            "total": {key: {f: report["total"][f] for f in _FIELDS} for key, report in reports.items()},
        },
        "billing": {**balance.as_dict(), "warnings": [notice] if notice else []},
        "statements": statements.listing(store, detail["name"]),
    }
