"""Limits in more windows (docs/limits.md): set, clear and read the hourly
and monthly limits of an account, the hourly and daily caps of one
credential and the monthly limit of an agency. The account's daily limit
keeps its own home (``accounts.set_account_limit``: it has the store's
default). What each limit has used is ``metering.windows``' counter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smtpctl.core.directory.accounts import get_account
from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.credentials import get_credential
from smtpctl.core.directory.settings import store_zone
from smtpctl.core.metering.windows import SCOPE_WINDOWS, Counter, Hours, periods, resets_at
from smtpctl.core.model import rules
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store import Store

_TABLE = {"account": "accounts", "credential": "credentials", "agency": "agencies"}
_COLUMN = {"hour": "hourly_limit", "day": "daily_limit", "month": "monthly_limit"}


@dataclass(frozen=True)
class Subject:
    """What a limit caps: its scope, stored id, name, and the account a
    credential's counts live under."""

    scope: str
    id: int
    name: str
    account_id: int = 0
    account: str | None = None  # the account a credential's or an account's audit entries go under


def subject_of(store: Store, scope: str, name: str) -> Subject:
    """The agency, account or credential named; ``NotFound`` (or
    ``InvalidInput`` for a login that is not name@domain) if none."""
    if scope == "credential":
        credential = get_credential(store, name)
        return Subject(scope, credential.id, credential.login, get_account(store, credential.account).id,
                       credential.account)
    if scope == "agency":
        agency = get_agency(store, name)
        return Subject(scope, agency.id, agency.name)
    account = get_account(store, name)
    return Subject(scope, account.id, account.name, account.id, account.name)


def check_window(scope: str, window: str) -> str:
    """``window`` if ``scope`` may have a limit in it, else ``InvalidInput``."""
    allowed = SCOPE_WINDOWS[scope]

    def words(names: tuple[str, ...]) -> str:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    if window not in allowed:
        raise InvalidInput(f"unknown window {window!r} for {'a' if scope != 'account' else 'an'} {scope} limit: "
                           f"choose {words(allowed)}")
    return window


def limits_of(store: Store, subject: Subject) -> dict[str, int | None]:
    """The limits set on ``subject`` by window (None: not set; an account's
    ``day`` is its own value, None when the store's default applies)."""
    windows = SCOPE_WINDOWS[subject.scope]
    return dict(zip(windows, store.limit_columns(_TABLE[subject.scope], subject.id, [_COLUMN[w] for w in windows])))


def used_now(store: Store, subject: Subject, window: str) -> tuple[int, str]:
    """What ``subject`` has used of ``window`` now, and when it resets."""
    zone = store_zone(store)
    when = periods(store.now(), zone)
    period = {"hour": when.hour, "day": when.day, "month": when.month}[window]
    key = subject.name if subject.scope == "credential" else subject.id
    used = store.window_total(*Counter(subject.scope, key, window, period, subject.account_id))
    return used, resets_at(window, period, zone)


def _count_hours(store: Store, subject: Subject) -> None:
    """Make the hourly rollup of an account (or of one credential) from its
    events: the rollup counts only the messages of senders with an hourly
    limit (metering/batch.py, live.py), so a new one starts from what was sent
    already, this hour and every hour an import may still fill in. One scan of
    the events, in the transaction that sets the limit."""
    hours = Hours(store_zone(store))
    login = subject.name if subject.scope == "credential" else None
    sums: dict[tuple[str, str], int] = {}
    for at, event_login, emails in store.outbound_event_times(subject.account_id, login):
        key = (hours.of_text(datetime.fromisoformat(at.replace("Z", "+00:00")), at), event_login)
        sums[key] = sums.get(key, 0) + int(emails)
    store.replace_hourly(subject.account_id, login, sums)


def set_window_limit(store: Store, scope: str, name: str, window: str, limit: object | None) -> dict[str, Any]:
    """Set (``limit``) or clear (None) one limit in a window other than an
    account's day; audited as ``<scope>.set_limit``. Raises ``InvalidInput``
    (a window the scope has not, a limit out of range) or ``NotFound``, and
    then changes nothing."""
    check_window(scope, window)
    new = None if limit is None else rules.validate_window_limit(limit, window)
    with store.write():
        subject = subject_of(store, scope, name)
        old = limits_of(store, subject)[window]
        status = "unchanged"
        if old != new:
            store.set_limit_column(_TABLE[scope], subject.id, _COLUMN[window], new)
            if window == "hour" and old is None:  # counted from now on: the hours so far, from the events
                _count_hours(store, subject)
            store.audit(f"{scope}.set_limit", scope, subject.name, account=subject.account,
                        details={"window": window, "old": old, "new": new})
            status = "cleared" if new is None else "updated"
        used, resets = used_now(store, subject, window)
    return {"scope": scope, "subject": subject.name, "window": window, "limit": new, "previous_limit": old,
            "status": status, "used": used, "resets_at": resets}
