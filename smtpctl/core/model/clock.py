"""Time in the one format the store and JSON output use: ISO 8601 UTC with Z."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from smtpctl.core.model.errors import InvalidInput


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_z(moment: datetime) -> str:
    """``2026-11-26T10:00:00Z``: whole seconds, UTC, a literal Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso_z(utc_now())


def stored_time(at: datetime) -> str:
    """``iso_z`` of an aware UTC datetime without strftime's cost: the
    import path formats one per message."""
    return at.isoformat()[:19] + "Z"


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
