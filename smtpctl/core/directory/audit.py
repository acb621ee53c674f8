"""The audit trail: every change, newest first, filtered."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from smtpctl.core.directory.accounts import get_account
from smtpctl.core.directory.settings import store_zone
from smtpctl.core.model import rules
from smtpctl.core.model.clock import parse_day, utc_now
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store import Store
from smtpctl.core.store.audit import NameSpan

MAX_AUDIT_LIMIT = 1_000_000


def _audit_bound(text: str, zone: ZoneInfo, *, end: bool) -> str:
    """A date (whole day in the store's zone, or today, yesterday, 7d) or an ISO
    8601 time, as a UTC string.

    Raises ``InvalidInput`` for text that is neither, and for a time that
    has no UTC equivalent (``0001-01-01T00:00:00+14:00``). The end of the
    last representable day, 9999-12-31, is its last second.
    """

    try:
        if len(text) > 10 and text[10] in "Tt ":  # 2026-11-26T10:00:00Z, not "Today"
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
        else:
            current = utc_now().astimezone(zone).date()
            day = parse_day(text, "", current)
            if end and day == date.max:
                return "9999-12-31T23:59:59Z"
            day += timedelta(days=1) if end else timedelta()
            moment = datetime.combine(day, time(), tzinfo=zone)
        utc = moment.astimezone(timezone.utc)
    except (ValueError, InvalidInput):
        raise InvalidInput(f"invalid date or time {text!r}: use 2026-11-26, today, yesterday, 7d (7 days ago) "
                           "or 2026-11-26T10:00:00Z") from None
    except OverflowError:  # a time near year 1 or 9999, shifted to UTC or to the next day
        raise InvalidInput(f"date or time {text!r} is out of range") from None
    return utc.isoformat()[:19] + "Z"  # as iso_z(), with the year always four digits


def audit_entries(store: Store, *, since: str | None = None, until: str | None = None, account: str | None = None,
                  action: str | None = None, actor: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The audit trail, newest first, filtered.

    ``since``/``until`` are dates (inclusive, in the store's time zone) or
    ISO 8601 times; ``action`` matches literally, exactly (``credential.create``)
    or as a prefix when it has no dot (``credential``); ``limit`` is 0 (all)
    to 1,000,000. Raises ``InvalidInput`` or ``NotFound`` (the account).
    """
    limit = rules.whole_number(limit, "--limit", 0, MAX_AUDIT_LIMIT)
    zone = store_zone(store)
    return store.audit_entries(
        since=_audit_bound(since, zone, end=False) if since else None,
        until=_audit_bound(until, zone, end=True) if until else None,
        until_inclusive=bool(until) and "T" in until,
        account_spans=_account_name_spans(store, get_account(store, account).name) if account else None,
        action=action if action and "." in action else None,
        action_prefix=action if action and "." not in action else None,
        actor=actor or None, limit=limit)


def _account_name_spans(store: Store, name: str) -> list[NameSpan]:
    """The audit rows of an account under every name it has had.

    The trail is append-only, so its rows keep the name of their day. Walking
    back from the current name, each ``account.rename`` into a name opens it
    (rows from that rename on) and hands over to the old name (rows before
    it); a rename away from a name, or a removal, by an account that held it
    earlier closes it, so another account's rows under a reused name stay out.
    """
    spans: list[NameSpan] = []
    upper: int | None = None
    for event in reversed(store.name_history("account")):
        if upper is not None and event["id"] >= upper:
            continue
        if event["action"] == "rename" and event["new"].lower() == name.lower():
            spans.append(NameSpan(name, event["id"], upper, low_inclusive=True))
            name, upper = event["old"], event["id"]
        elif event["old"].lower() == name.lower():
            # an earlier holder let the name go here
            spans.append(NameSpan(name, event["id"], upper, low_inclusive=False))
            break
    else:
        spans.append(NameSpan(name, None, upper, low_inclusive=True))
    return spans
