"""The store's settings: what each one is now (set, or its default), and
changing them (validated, audited), and the day and time zone they set."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from smtpctl.core.model import rules
from smtpctl.core.model.errors import Fix, InvalidInput, StoreError
from smtpctl.core.model.prices import PriceSchedule
from smtpctl.core.model.records import Outcome, SettingValue
from smtpctl.core.model.words import count, listing
from smtpctl.core.store import Store

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo


class _BadStoredValue:
    """A stored setting that no longer passes its rule (a store written by an
    older smtpctl, or edited by hand)."""

    def __init__(self, key: str, raw: str, reason: str):
        self.key, self.raw, self.reason = key, raw, reason

    def error(self) -> StoreError:
        return StoreError(
            f"the store holds an invalid value for setting {self.key}: {rules.shown(self.raw)} ({self.reason})",
            subject=self.key, fix=Fix(("store", "set", self.key, "VALUE"), "set a valid one with"))


PRICE_KEY = "price_per_1000"  # not a stored setting: the service price in force today (billing's prices)


class _PriceToday:
    """``price_per_1000``: the service's price in force today, read from the
    prices in force (docs/billing.md) when, and only when, it is read."""

    def __init__(self, store: Store):
        self.store = store

    def value(self) -> Decimal:
        return service_prices(self.store).price_on(today(self.store))


class EffectiveSettings(dict):
    """Setting key -> value. Reading a key whose stored value is invalid raises
    ``StoreError`` (exit 7) naming the key and the fix; other keys still read,
    so a bad price does not stop ``usage status``."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, _BadStoredValue):
            raise value.error()
        if isinstance(value, _PriceToday):
            value = value.value()
            super().__setitem__(key, value)
        return value


def service_prices(store: Store) -> PriceSchedule:
    """The service's prices in force, day by day (the default before any change).

    A stored price that no longer passes its rule (a store written by an older
    smtpctl, or edited by hand) raises ``StoreError`` naming the fix."""
    return PriceSchedule([(row.from_day, checked_price(row.price_per_1000, row.from_day))
                          for row in store.prices("service")], rules.DEFAULT_PRICE_PER_1000)


def checked_price(raw: str, from_day: str) -> Decimal:
    try:
        return rules.validate_price(raw)
    except InvalidInput as exc:
        raise StoreError(f"the store holds an invalid price per 1,000 emails from {from_day}: {rules.shown(raw)} "
                         f"({exc.text})", subject=PRICE_KEY,
                         fix=Fix(("billing", "set-price", "PRICE", "--from", from_day), "set a valid one with")) \
            from None


def _valid_price(raw: str) -> bool:
    try:
        rules.validate_price(raw)
    except InvalidInput:
        return False
    return True


def effective_settings(store: Store) -> EffectiveSettings:
    """Every store setting with its value: what was set, else the default of docs/rules.md.

    A stored value is checked by the same rule as ``store set``; one that
    fails raises ``StoreError`` when (and only when) that key is read.
    """
    stored = store.settings()
    values = EffectiveSettings()
    for key, setting in rules.SETTINGS.items():
        if key == PRICE_KEY:
            values[key] = _PriceToday(store)
            continue
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
    if key == PRICE_KEY:
        return _PriceToday(store).value()
    stored = store.settings()
    setting = rules.SETTINGS[key]
    if key not in stored:
        return setting.default
    try:
        return setting.parse(stored[key])
    except InvalidInput as exc:
        bad = _BadStoredValue(key, stored[key], exc.message)
    raise bad.error()  # outside the handler, as EffectiveSettings raises it


def zone_of(settings: EffectiveSettings) -> ZoneInfo:
    """The store's time zone (the setting ``timezone``): whose calendar days
    the limits count and the reports group by. Worked out here only."""
    # Imported here: zoneinfo (and the sysconfig it loads) is 2 ms of every
    # command's ~60 ms start-up, and most commands never need a zone.
    from zoneinfo import ZoneInfo

    return ZoneInfo(str(settings["timezone"]))


def store_zone(store: Store) -> ZoneInfo:
    """``zone_of`` the store's settings as they are now."""
    return zone_of(effective_settings(store))


def today(store: Store, zone: ZoneInfo | None = None) -> str:
    """Today's date in the store's time zone (the day the daily limit counts),
    on the store's clock: on PostgreSQL the database's, so every node of a
    fleet agrees on when a day ends."""
    return store.now().astimezone(zone or store_zone(store)).date().isoformat()


def settings_view(store: Store) -> list[dict[str, Any]]:
    """Each setting with its value, default and source (``set``, ``default``, or
    ``invalid``: a stored value that fails its rule, shown as stored)."""
    stored = store.settings()
    effective = effective_settings(store)
    rows = []
    priced = bool(store.prices("service"))
    for key, setting in rules.SETTINGS.items():
        fix = Fix(("store", "set", key, "VALUE"))
        if key == PRICE_KEY:
            bad_rows = [row for row in store.prices("service") if not _valid_price(row.price_per_1000)]
            value = _BadStoredValue(key, bad_rows[0].price_per_1000, "") if bad_rows else effective[key]
            if bad_rows:
                fix = Fix(("billing", "set-price", "PRICE", "--from", bad_rows[0].from_day))
        else:
            value = dict.__getitem__(effective, key)
        bad = isinstance(value, _BadStoredValue)
        rows.append({
            "key": key,
            "value": value.raw if bad else value,
            "default": setting.default,
            "source": "invalid" if bad else "set" if key in stored or (key == PRICE_KEY and priced) else "default",
            "description": setting.description,
            "fix": fix if bad else None,
        })
    return rows


def set_setting(store: Store, key: str, value: str) -> Outcome:
    """Validate and store one setting; audited. Raises ``InvalidInput``.

    ``Outcome.extra["warnings"]`` lists what an operator should know: a value
    that departs from the service's rules (docs/rules.md), a lower cap or limit
    that objects already exceed. An invalid stored value (see
    ``effective_settings``) is replaced like any other. ``price_per_1000`` is
    no stored setting but the price in force: ``billing.prices.set_price``.
    """
    if key == PRICE_KEY:
        raise InvalidInput(f"{PRICE_KEY} is the price in force: set it with billing.prices.set_price")
    parsed = rules.parse_setting(key, value)
    with store.write():
        old = _stored_or_raw(store, key)
        if str(old) == str(parsed) and key in store.settings():
            return Outcome(SettingValue(key, parsed), "unchanged", {"warnings": []})
        store.put_setting(key, str(parsed))
        store.audit("setting.set", "setting", key, details={"old": str(old), "new": str(parsed)})
        warnings = setting_warnings(store, key, old, parsed)
    return Outcome(SettingValue(key, parsed), "updated", {"warnings": warnings})


def unset_setting(store: Store, key: str) -> Outcome:
    """Put one setting back to its default (docs/rules.md); audited as ``setting.unset``.

    Raises ``InvalidInput`` for an unknown key. A setting that was never set
    is reported ``unchanged``.
    """
    if key not in rules.SETTINGS:
        rules.parse_setting(key, "")  # the one message that lists the known keys
    default = rules.SETTINGS[key].default
    with store.write():
        if key not in store.settings():
            return Outcome(SettingValue(key, default), "unchanged", {"source": "default", "warnings": []})
        old = _stored_or_raw(store, key)
        store.delete_setting(key)
        store.audit("setting.unset", "setting", key, details={"old": str(old), "new": str(default)})
        warnings = setting_warnings(store, key, old, default)
    return Outcome(SettingValue(key, default), "updated", {"source": "default", "warnings": warnings})


def _stored_or_raw(store: Store, key: str) -> Any:
    """The setting's value, or the text stored when that fails its rule (so
    that ``store set`` and ``store unset`` can replace it)."""
    value = dict.__getitem__(effective_settings(store), key)
    return value.raw if isinstance(value, _BadStoredValue) else value


def setting_warnings(store: Store, key: str, old: Any, new: Any) -> list[str]:
    """What changing ``key`` from ``old`` to ``new`` means beyond the value itself."""
    warnings = []
    if key == "credentials_per_domain":
        if new > rules.DEFAULT_CREDENTIALS_PER_DOMAIN:
            warnings.append(f"credentials_per_domain {new} departs from the service's rule of at most "
                            f"{rules.DEFAULT_CREDENTIALS_PER_DOMAIN} SMTP credentials per dedicated domain")
        counts = store.domain_credential_counts()
        over = sorted(d.name for d in store.domains() if counts.get(d.id, 0) > new)
        if over:
            holds = "holds" if len(over) == 1 else "hold"
            warnings.append(f"{count(len(over), 'domain')} already {holds} more than {count(new, 'SMTP credential')} "
                            f"({listing(over)}); they keep them, and take no new one until below the cap")
    elif key == "default_daily_limit":
        if new != rules.DEFAULT_DAILY_LIMIT:
            warnings.append(f"default_daily_limit {new:,} departs from the service's rule of "
                            f"{rules.DEFAULT_DAILY_LIMIT:,} emails per account per day")
        following = [a for a in store.accounts() if a.daily_limit is None]
        day = today(store)
        totals = store.outbound_totals([(a.id, day) for a in following])
        reached = [f"{a.name} ({totals[(a.id, day)]:,})" for a in following if totals.get((a.id, day), 0) >= new]
        if reached:
            warnings.append(f"{count(len(reached), 'account')} on the default limit already sent {new:,} or more "
                            f"emails today: {listing(reached)}; the next email of each blocks it and revokes its "
                            "SMTP credentials")
    return warnings
