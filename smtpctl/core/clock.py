"""Time in the one format the store and JSON output use: ISO 8601 UTC with Z."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_z(moment: datetime) -> str:
    """``2026-11-26T10:00:00Z``: whole seconds, UTC, a literal Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso_z(utc_now())
