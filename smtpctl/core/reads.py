"""The reads ``smtpctl account list`` and ``core.usage`` need: the
effective settings, an agency or account by name, today's date, and the
account list itself.

They live apart from ``services`` (which re-exports each of them, so callers
and the other use cases name them there as before) because the fast path of
``account list`` (``smtpctl.cli.fastpath``) and every command of
``core.usage`` (``usage report``...) would otherwise compile all of
services.py, ~45 KB of source, on every run of an editable install
(docs/performance.md, issue 12).
"""

from __future__ import annotations

from smtpctl.core import rules
from smtpctl.core.errors import InvalidInput, NotFound, StoreError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of every start-up)
if TYPE_CHECKING:
    from typing import Any
    from zoneinfo import ZoneInfo

    from smtpctl.core.models import Account, Agency
    from smtpctl.core.store import Store


class _BadStoredValue:
    """A stored setting that no longer passes its rule (a store written by an
    older smtpctl, or edited by hand)."""

    def __init__(self, key: str, raw: str, reason: str):
        self.key, self.raw, self.reason = key, raw, reason

    def error(self) -> StoreError:
        return StoreError(
            f"the store holds an invalid value for setting {self.key}: {rules.shown(self.raw)} ({self.reason}); "
            f"set a valid one with: smtpctl store set {self.key} VALUE"
        )


class EffectiveSettings(dict):
    """Setting key -> value. Reading a key whose stored value is invalid raises
    ``StoreError`` (exit 7) naming the key and the fix; other keys still read,
    so a bad price does not stop ``usage status``."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, _BadStoredValue):
            raise value.error()
        return value


def effective_settings(store: Store) -> EffectiveSettings:
    """Every store setting with its value: what was set, else the default of docs/rules.md.

    A stored value is checked by the same rule as ``store set``; one that
    fails raises ``StoreError`` when (and only when) that key is read.
    """
    stored = store.settings()
    values = EffectiveSettings()
    for key, setting in rules.SETTINGS.items():
        if key not in stored:
            values[key] = setting.default
            continue
        try:
            values[key] = setting.parse(stored[key])
        except InvalidInput as exc:
            values[key] = _BadStoredValue(key, stored[key], exc.message)
    return values


def effective_setting(store: Store, key: str) -> Any:
    """One setting's value, as ``effective_settings(store)[key]`` reads it
    (``StoreError`` for an invalid stored value), without checking the other
    stored settings: their rules load zoneinfo (the time zone) or idna (the
    SMTP host), which ``account list`` does not need."""
    stored = store.settings()
    setting = rules.SETTINGS[key]
    if key not in stored:
        return setting.default
    try:
        return setting.parse(stored[key])
    except InvalidInput as exc:
        bad = _BadStoredValue(key, stored[key], exc.message)
    raise bad.error()  # outside the handler, as EffectiveSettings raises it


def today(store: Store, zone: "ZoneInfo | None" = None) -> str:
    """Today's date in the store's time zone (the day the daily limit counts),
    on the store's clock: on PostgreSQL the database's, so every node of a
    fleet agrees on when a day ends."""
    from zoneinfo import ZoneInfo

    return store.now().astimezone(zone or ZoneInfo(str(effective_settings(store)["timezone"]))).date().isoformat()


# -- agencies and accounts ---------------------------------------------------


def get_agency(store: Store, name: str) -> Agency:
    agency = store.agency(name)
    if agency is None:
        raise NotFound(f"agency {name!r} not found")
    return agency


def get_account(store: Store, name: str) -> Account:
    account = store.account(name)
    if account is None:
        raise NotFound(f"account {name!r} not found")
    return account


def effective_limit(store: Store, account: Account) -> int:
    if account.daily_limit is not None:
        return account.daily_limit
    return int(effective_settings(store)["default_daily_limit"])


def list_accounts(store: Store, agency: str | None = None, *, blocked: bool = False) -> list[dict[str, Any]]:
    """Accounts with their effective limit and domain count; only the blocked
    ones with ``blocked``. Raises ``NotFound`` for an unknown agency."""
    if agency is not None:
        agency = get_agency(store, agency).name
    default_limit = int(effective_setting(store, "default_daily_limit"))
    domain_counts = store.account_domain_counts()
    return [
        {
            **a.as_dict(),
            "effective_daily_limit": a.daily_limit if a.daily_limit is not None else default_limit,
            "domains": domain_counts.get(a.id, 0),
        }
        for a in store.accounts(agency=agency)
        if a.blocked or not blocked
    ]
