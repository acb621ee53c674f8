"""Today's outbound emails against each account's daily limit."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from smtpctl.core.directory.accounts import effective_limit, get_account
from smtpctl.core.directory.settings import store_zone, today
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store import Store

WARN_RATIO = Decimal("0.8")


def usage_status(store: Store, account: str | None = None) -> list[dict[str, Any]]:
    """Today's outbound emails against the limit, per account."""
    zone = store_zone(store)
    day = today(store, zone)
    accounts = [get_account(store, account)] if account else store.accounts()
    totals = store.outbound_totals([(a.id, day) for a in accounts])
    rows = []
    for acc in accounts:
        limit = effective_limit(store, acc)
        sent = totals.get((acc.id, day), 0)
        ratio = Decimal(sent) / Decimal(limit)
        level = "over" if sent > limit else "limit" if sent == limit else "warning" if ratio >= WARN_RATIO else "ok"
        rows.append({
            "account": acc.name, "agency": acc.agency, "day": day, "timezone": zone.key, "sent": sent,
            "limit": limit, "remaining": max(0, limit - sent), "percent": float(round(ratio * 100, 1)),
            "level": level, "blocked": acc.blocked, "block_kind": acc.block_kind, "block_reason": acc.block_reason,
            "live_credentials": len(store.account_logins(acc.id)),
        })
    return rows


def parse_percent(text: str, what: str) -> Decimal:
    """A share of a limit in percent, more than 0 (``80``, ``95.5``); raises ``InvalidInput``."""
    try:
        value = Decimal(text.strip().rstrip("%"))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0 or value > 100_000:
        raise InvalidInput(f"{what} must be a percentage above 0, like 80 or 95.5, not {text!r}")
    return value


def at_or_over(rows: list[dict[str, Any]], percent: Decimal) -> list[dict[str, Any]]:
    """The ``usage_status`` rows whose sent count is at or over ``percent`` of
    their limit, compared exactly (not on the rounded percentage shown)."""
    return [r for r in rows if Decimal(r["sent"]) * 100 >= percent * r["limit"]]
