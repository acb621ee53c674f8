"""The windows a limit counts in, and the limits in force for one sender.

Hours, days and months are the store time zone's (docs/limits.md). A
window's *period* names it in the store: a day is its local date
(``2026-12-06``, as ``usage_daily.day``), a month its first seven
characters (``2026-12``), an hour the UTC instant its local hour starts
(``2026-12-06T04:00:00Z``, as ``usage_hourly.hour``: unambiguous across a
change of offset). Each limit in force is one ``rule.Limit`` with the
``Counter`` that holds what it has used; the cap rule itself
(``rule.decide``) does not know windows exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

from smtpctl.core.metering.rule import Limit
from smtpctl.core.model.clock import stored_time

if TYPE_CHECKING:  # annotations only: importing zoneinfo (and the sysconfig it loads) is ~2.5 ms of start-up
    from zoneinfo import ZoneInfo

# The windows each scope may have, in the order the rule checks them
# (``in_force``). The account's daily limit is the service's rule and is
# always in force (its own value or the store's default).
SCOPE_WINDOWS: dict[str, tuple[str, ...]] = {
    "credential": ("hour", "day"),
    "account": ("hour", "day", "month"),
    "agency": ("month",),
}
WINDOWS = ("hour", "day", "month")


class Counter(NamedTuple):
    """What one limit has used is the outbound emails of ``subject`` in
    ``period``. ``subject``: the account id, the credential's login or the
    agency id; ``account_id`` is the account a credential's or an account's
    counts are kept under (0 for an agency's: the counter is one for all its
    accounts, and callers keep it up to date by this key); ``period`` as the
    module docstring says."""

    scope: str
    subject: int | str
    window: str
    period: str
    account_id: int = 0


@dataclass(frozen=True)
class SenderWindows:
    """The limits set on one sender: its credential, its account (``day`` is
    the effective daily limit, always set) and its agency. None: not set."""

    account_id: int
    account: str
    agency_id: int
    agency: str
    login: str
    account_day: int
    account_hour: int | None = None
    account_month: int | None = None
    credential_hour: int | None = None
    credential_day: int | None = None
    agency_month: int | None = None

    @property
    def needs_agency_lock(self) -> bool:
        """An agency's monthly count is shared by all its accounts: on a fleet
        the admission takes the agency's lock (after its accounts')."""
        return self.agency_month is not None

    @property
    def hourly(self) -> bool:
        """Its messages are counted in the hourly rollup (its account or it has an hourly limit)."""
        return self.account_hour is not None or self.credential_hour is not None


class Periods(NamedTuple):
    hour: str
    day: str
    month: str


def hour_start(at: datetime, zone: ZoneInfo) -> str:
    """The UTC instant the local hour of ``at`` starts, as stored."""
    local = at.astimezone(zone)
    return stored_time(local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc))


def periods(at: datetime, zone: ZoneInfo) -> Periods:
    local = at.astimezone(zone)
    day = local.date().isoformat()
    return Periods(hour_start(at, zone), day, day[:7])


class Hours:
    """UTC instant -> the start of its local hour, cached per ten minutes of
    UTC text, as ``batch._Days`` caches the day: a ten-minute prefix
    (``2026-11-26T10:1``) is cached only when its first and its last second
    fall in one local hour; otherwise each instant is worked out."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self.by_text: dict[str, str | None] = {}

    def of_text(self, at: datetime, text: str) -> str:
        prefix = text[:15]
        hour = self.by_text.get(prefix, "")
        if hour == "":
            start = datetime.fromisoformat(prefix + "0:00+00:00")
            first, last = hour_start(start, self.zone), hour_start(start + timedelta(seconds=599), self.zone)
            hour = self.by_text[prefix] = first if first == last else None
        return hour if hour is not None else hour_start(at, self.zone)


@lru_cache(maxsize=4096)  # pure; the live paths ask it for every message (measured: serve 0.82x -> see perf doc)
def resets_at(window: str, period: str, zone: ZoneInfo) -> str:
    """When the window named by ``period`` ends (ISO 8601 UTC): the next
    local hour, midnight or first of the month."""
    if window == "hour":  # (a change of offset by half an hour, as Lord Howe's, is not modelled)
        return stored_time(datetime.fromisoformat(period.replace("Z", "+00:00")) + timedelta(hours=1))
    if window == "day":
        nxt = date.fromisoformat(period) + timedelta(days=1)
    else:
        year, month = int(period[:4]), int(period[5:7])
        nxt = date(year + month // 12, month % 12 + 1, 1)
    return stored_time(datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(timezone.utc))


def in_force(sender: SenderWindows, when: Periods, zone: ZoneInfo) -> tuple[tuple[Limit, ...], tuple[Counter, ...]]:
    """Every limit in force for a message of ``sender`` in ``when``, in the
    order the rule checks them, each with the counter of what it has used.

    The account's daily limit comes first: full, it refuses for good (its
    credentials are revoked); the others refuse until they reset. The
    credential's own caps come next, so a leaked credential is stopped before
    it can use up its account's day."""
    account_id, login = sender.account_id, sender.login
    found: list[tuple[Limit, Counter]] = [
        (Limit("account", "day", sender.account_day, subject=sender.account),
         Counter("account", account_id, "day", when.day, account_id))]
    for window, value in (("hour", sender.credential_hour), ("day", sender.credential_day)):
        if value is not None:
            period = when.hour if window == "hour" else when.day
            found.append((Limit("credential", window, value, subject=login, resets_at=resets_at(window, period, zone)),
                          Counter("credential", login, window, period, account_id)))
    for window, value in (("hour", sender.account_hour), ("month", sender.account_month)):
        if value is not None:
            period = when.hour if window == "hour" else when.month
            found.append((Limit("account", window, value, subject=sender.account,
                                resets_at=resets_at(window, period, zone)),
                          Counter("account", account_id, window, period, account_id)))
    if sender.agency_month is not None:
        found.append((Limit("agency", "month", sender.agency_month, subject=sender.agency,
                            resets_at=resets_at("month", when.month, zone)),
                      Counter("agency", sender.agency_id, "month", when.month)))  # (one counter for all its accounts)
    return tuple(limit for limit, _ in found), tuple(counter for _, counter in found)
