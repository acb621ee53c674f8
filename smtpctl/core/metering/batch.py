"""Recording messages after the fact, one or a stream of them (``usage
record``, ``usage import``), each batch in one transaction under the cap rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import islice
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from smtpctl.core.directory.settings import effective_settings, store_zone
from smtpctl.core.ingest.message import BadLine, UsageInput
from smtpctl.core.metering.credits import PrepaidAgency, prepaid_agencies
from smtpctl.core.metering.enforcement import Crossing, enforce
from smtpctl.core.metering.rule import (
    REFUSED_NO_CREDITS,
    REFUSED_OVER_LIMIT,
    REFUSED_WINDOW,
    WARN_AT,
    account_day,
    decide,
    refusal,
    too_many_recipients,
)
from smtpctl.core.metering.notices import tell, tell_credits
from smtpctl.core.metering.windows import Counter, Hours, Periods, SenderWindows, in_force, periods
from smtpctl.core.store.usage import WindowLimits
from smtpctl.core.model import rules
from smtpctl.core.model.clock import iso_z, stored_time
from smtpctl.core.model.errors import InvalidInput, LimitReached, NotFound
from smtpctl.core.store import DomainOwner, Store

FUTURE_TOLERANCE = timedelta(hours=1)


BATCH_SIZE = rules.IMPORT_BATCH_SIZE


@dataclass
class BatchResult:
    recorded: int = 0
    duplicates: int = 0
    messages: int = 0
    emails: int = 0
    rejected: list[BadLine] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # why each rejected item was refused, in order
    crossings: list[Crossing] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    found_old_ids: bool = False  # a batch recorded with speculate=True held ids already stored


@dataclass(frozen=True, eq=False)
class _Target:
    """Who a message belongs to. Compared by identity: the resolver makes one
    for each sender, and a batch gathers its senders as the set of its
    messages' targets, made in C (0.04 us a message, where four sets of the
    targets' fields, each made a message, took 0.24 us)."""

    agency_id: int
    account_id: int  # 0: none (inbound to an agency-assigned domain)
    account: str | None
    domain: str
    login: str


class _Resolver:
    """Who a message belongs to, cached per import (one look-up per login)."""

    def __init__(self, store: Store, *, bulk: bool = False):
        self.store, self.bulk = store, bulk
        self.owners: dict[str, DomainOwner] | None = None
        self.cache: dict[tuple[str, str], _Target | InvalidInput | NotFound] = {}
        self.senders: dict[str | None, _Target] = {}  # outbound login -> its target, for _apply's hot path

    def resolve(self, item: UsageInput) -> _Target:
        """The sender's agency, account and domain; raises ``NotFound`` or ``InvalidInput``."""
        key = (item.direction, item.user or item.domain or "")
        hit = self.cache.get(key)
        if hit is None:
            try:
                hit = self._lookup(item)
            except (InvalidInput, NotFound) as exc:
                hit = exc
            self.cache[key] = hit
        if isinstance(hit, (InvalidInput, NotFound)):
            raise type(hit)(hit.text, subject=hit.subject, fix=hit.fix)  # a fresh one: a raise adds a traceback
        if item.direction == "outbound":
            self.senders[item.user] = hit
        return hit

    def _owner(self, domain_name: str) -> DomainOwner | None:
        if self.bulk:
            if self.owners is None:
                self.owners = self.store.domain_owners()  # one query per import, not one per login
            return self.owners.get(domain_name)
        return self.store.domain_owners(domain_name).get(domain_name)

    def _lookup(self, item: UsageInput) -> _Target:
        if item.direction == "outbound":
            name, domain_name = rules.parse_login(item.user or "")
            owner = self._owner(domain_name)
            if owner is None:
                raise NotFound(f"unknown sender {name}@{domain_name}: domain {domain_name} is not in the store")
            if owner.account is None:
                raise InvalidInput(f"{name}@{domain_name} cannot send: {domain_name} is agency-assigned and holds "
                                   "no SMTP credentials")
            login = f"{name}@{domain_name}"
        else:
            domain_name = rules.normalise_domain(item.domain or "")
            owner = self._owner(domain_name)
            if owner is None:
                raise NotFound(f"domain {domain_name!r} not found")
            login = ""
        return _Target(owner.agency_id, owner.account_id or 0, owner.account, domain_name, login)


class _Days:
    """UTC instant -> calendar day in the store's zone, cached per quarter hour.

    A quarter hour of UTC time is cached only when it is one local day
    throughout: the same offset and the same local date at its first and its
    last second. That holds for almost every quarter hour, whatever the
    zone; one that holds a local midnight (which, with offsets such as
    Monrovia's -0:44:30 before 1972, need not fall on a quarter hour) or an
    offset change is worked out for each instant. (No zone in the tz
    database changes its offset twice within 15 minutes, which a test checks,
    so two equal ends cannot hide a change and back.)
    """

    SPAN = 900

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self.cache: dict[int, str | None] = {}
        self.by_text: dict[str, str | None] = {}  # "2026-11-26T10:1" (ten minutes of UTC) -> day

    def __call__(self, at: datetime) -> str:
        key = int(at.timestamp()) // self.SPAN
        day = self.cache.get(key, "")
        if day == "":
            day = self.cache[key] = self._span_day(key)
        if day is None:
            return at.astimezone(self.zone).date().isoformat()
        return day

    def of_text(self, at: datetime, text: str) -> str:
        """The day of ``at``, given also as stored ("2026-11-26T10:15:00Z"):
        cached by its first 15 characters, ten minutes of UTC, under the same
        rule (one offset and one local date throughout); no timestamp is
        worked out for each message."""
        prefix = text[:15]
        day = self.by_text.get(prefix, "")
        if day == "":
            start = datetime.fromisoformat(prefix + "0:00+00:00")
            day = self.by_text[prefix] = self._day_throughout(start, start + timedelta(seconds=599))
        if day is None:
            return at.astimezone(self.zone).date().isoformat()
        return day

    def _span_day(self, key: int) -> str | None:
        return self._day_throughout(datetime.fromtimestamp(key * self.SPAN, timezone.utc),
                                    datetime.fromtimestamp(key * self.SPAN + self.SPAN - 1, timezone.utc))

    def _day_throughout(self, first_utc: datetime, last_utc: datetime) -> str | None:
        first, last = first_utc.astimezone(self.zone), last_utc.astimezone(self.zone)
        if first.utcoffset() != last.utcoffset() or first.date() != last.date():
            return None
        return first.date().isoformat()


LIMIT_REFUSALS = (REFUSED_OVER_LIMIT, REFUSED_WINDOW, REFUSED_NO_CREDITS)  # exit 5 (LimitReached), not 2


def _apply(store: Store, items: list[UsageInput | BadLine], *, strict: bool, resolver: _Resolver,
           zone: ZoneInfo, keep_events: bool = False, days: _Days | None = None, hours: Hours | None = None,
           speculate: bool = False) -> BatchResult:
    """Check and record one batch, and enforce the limit; call inside ``store.write()``.

    The hard cap: for each account and day, the messages are taken in input
    order against the total already recorded; the message that takes the
    total over the limit is recorded (the crossing), every later one is
    refused and not recorded. A message with more recipients than
    ``max_recipients_per_message`` is refused whatever the total.

    ``speculate`` (not with ``strict``): work the batch out as if none of its
    ids were stored yet, skipping their look-up; the insert checks them
    anyway, and if one was stored it inserts nothing and the batch is worked
    out again the careful way (``found_old_ids`` says so). The result is the
    same either way; a batch of new messages saves one index look-up each.
    """
    from smtpctl.core.ingest.message import BadLine, UsageInput

    speculate = speculate and not strict
    result = BatchResult()
    now = store.now()  # the store's clock: one day boundary for every node of a fleet
    latest = now + FUTURE_TOLERANCE
    days = days or _Days(zone)
    hours = hours or Hours(zone)
    current_day = now.astimezone(zone).date().isoformat()
    settings = effective_settings(store)
    max_recipients = int(settings["max_recipients_per_message"])
    horizon = store.pruned_before()  # usage before it can no longer be told from what was billed
    seen_ids: set[str] = set()
    if speculate:
        existing: set[str] = set()
    else:
        wanted_ids = [i.source_id for i in items if isinstance(i, UsageInput) and i.source_id]
        existing = store.existing_source_ids(wanted_ids) if wanted_ids else set()

    def reject(item: UsageInput | BadLine, reason: str, kind: str) -> None:
        if strict:
            raise (LimitReached if kind in LIMIT_REFUSALS else InvalidInput)(
                f"line {item.line}: {reason}" if item.line else reason)
        result.rejected.append(BadLine(item.line, reason))
        result.kinds.append(kind)

    # First pass: who and when, without touching the totals.
    accepted: list[tuple[UsageInput, _Target, str, str, int, datetime]] = []  # item, target, time as stored,
    #                                                                           day, emails, time
    accept = accepted.append
    touched_keys: set[tuple[int, str]] = set()
    touch = touched_keys.add
    senders = resolver.senders
    day_of_text = days.by_text.get
    for item in items:
        if isinstance(item, BadLine):
            reject(item, item.reason, "invalid")
            continue
        emails = item.to + item.cc + item.bcc
        try:
            # One dict look-up for a sender seen before (the import's usual case).
            target = (senders.get(item.user) if item.direction == "outbound" else None) or resolver.resolve(item)
            at = item.at or now
            if at > latest:
                raise InvalidInput(f"time {iso_z(at)} is in the future")
        except (InvalidInput, NotFound) as exc:
            if not item.line:
                raise
            reject(item, exc.message, "invalid")
            continue
        if too_many_recipients(emails, max_recipients):  # the rule's first step, before any id or total
            cap = decide(emails, max_recipients, (), ())
            reject(item, refusal(cap, emails, max_recipients), cap.refused)
            continue
        source_id = item.source_id
        if source_id is not None:
            if source_id in existing or source_id in seen_ids:
                result.duplicates += 1
                continue
            seen_ids.add(source_id)
        # Every time here is already UTC (parse_time, PostfixLog, utc_now); a
        # time the input gave as stored ("...Z") is not formatted again, and
        # its day comes from its first 15 characters (``_Days.of_text``).
        at_text = item.at_text
        if at_text is None or item.at is None:
            at_text, day = stored_time(at), days(at)
        else:
            day = day_of_text(at_text[:15]) or days.of_text(at, at_text)
        if horizon is not None and day < horizon:
            reject(item, f"usage dated {day} is before {horizon}: the raw events of those months were pruned after "
                         "they were billed, so this line could be billed twice; not recorded", "pruned")
            continue
        if item.direction == "outbound":
            touch((target.account_id, day))
        accept((item, target, at_text, day, emails, at))
    if not accepted:
        return result

    # Second pass: the cap, in input order, against the totals under this lock.
    touched = sorted(touched_keys)
    before = store.outbound_totals(touched) if touched else {}
    accounts = {a.id: a for a in store.accounts_by_id({acc for acc, _ in touched})} if touched else {}
    default_limit = int(settings["default_daily_limit"])
    limits = {i: a.daily_limit if a.daily_limit is not None else default_limit for i, a in accounts.items()}
    running = dict(before)
    crossed_at: dict[tuple[int, str], int] = {}
    refused_over: dict[tuple[int, str], int] = {}
    recorded_at = iso_z(now)
    rows: list[tuple] = []
    append = rows.append
    targets = set(map(itemgetter(1), accepted))  # the batch's senders and receiving domains
    agency_ids = {t.agency_id for t in targets}
    prepaid = prepaid_agencies(store, agency_ids)
    windows = store.window_limits(list(accounts), list({t.login for t in targets if t.login}), list(agency_ids))
    # What the loop below needs of each target, looked up once a batch, where
    # eight look-ups a message took ~0.2 us of it.
    facts = {t: _facts(t, prepaid, windows, limits, accounts) for t in targets}
    plans: dict[tuple[str, str, str], tuple[tuple, tuple[Counter, ...]]] = {}  # (login, day, hour) -> in force
    counted: dict[Counter, int] = {}  # what each limit but the account's day has used, kept up to date
    hourly: dict[tuple, int] = {}  # what the rows of senders with an hourly limit add to the hourly rollup
    tells: list[tuple] = []  # the recorded messages that may warn or cross (metering/notices.py)
    credit_spans: dict[int, list] = {}  # prepaid agency id -> [its credits, its charges before this batch]
    for item, target, at_text, day, emails, at in accepted:
        credits, windowed, day_limit, warn_from, daily, agency_id, account_id, domain, login = facts[target]
        direction = item.direction
        if direction == "outbound":
            key = (account_id, day)
            total = running[key]
            if windowed:
                hour = hours.by_text.get(at_text[:15]) or hours.of_text(at, at_text)
                plan = plans.get((target.login, day, hour))
                if plan is None:
                    plan = plans[(target.login, day, hour)] = _plan(target, limits, windows,
                                                                    Periods(hour, day, day[:7]), zone)
                limits_in_force, counters = plan
                used = (total, *[_counted(store, counted, c) for c in counters[1:]])
            else:
                limits_in_force, counters, used = day_limit, (), (total,)
            if credits is not None:
                limits_in_force, used = (*limits_in_force, credits.limit(day)), (*used, credits.charges)
            decision = decide(emails, max_recipients, limits_in_force, used)
            if not decision.accepted:
                if decision.refused == REFUSED_OVER_LIMIT:
                    refused_over[key] = total
                reject(item, refusal(decision, emails, max_recipients, target.account, day,
                                     credits.name if credits else ""), decision.refused)
                continue
            running[key] = total + emails
            if decision.crossed and any(limit.permanent for limit in decision.crossed):
                crossed_at[key] = total + emails
            if counters:
                for counter in counters[1:]:
                    counted[counter] += emails
                # every limit in force: its notices, if it is one of the windows now
                if decision.crossed or any((u + emails) * 100 >= WARN_AT[0] * lim.limit
                                           for lim, u in zip(limits_in_force, used)):
                    tells.append((limits_in_force[:len(counters)], counters, used[:len(counters)], emails,
                                  decision.crossed))
                if any(c.window == "hour" for c in counters):  # (its account's or its own hourly limit)
                    hour_key = (target.account_id, hour, target.login)
                    hourly[hour_key] = hourly.get(hour_key, 0) + emails
            elif day == current_day and (total + emails) * 100 >= warn_from:
                tells.append((limits_in_force[:1], (Counter("account", target.account_id, "day", day,
                                                            target.account_id),), (total,), emails, ()))
        if credits is not None:
            credit_spans.setdefault(target.agency_id, [credits, credits.charges])
            credits.charge(emails, day)
        append((item.source_id, at_text, day, direction, agency_id, account_id, domain, login, item.to, item.cc,
                item.bcc, emails, recorded_at))  # an EventRow's fields, in order: the insert's parameters
        counts = daily.get(day)  # (the target's own rollup: a day's key, not a tuple of six made a message)
        if counts is None:
            daily[day] = [1, emails]
        else:
            counts[0] += 1
            counts[1] += emails
        if keep_events:
            result.events.append({"id": item.source_id, "at": at_text, "day": day, "direction": direction,
                                  "user": target.login or None, "domain": target.domain, "account": target.account,
                                  "to": item.to, "cc": item.cc, "bcc": item.bcc, "emails": emails})
    result.recorded = result.messages = len(rows)
    result.emails = sum(emails for found in facts.values() for _, emails in found[_DAILY].values())
    if rows and not store.insert_usage(rows, _daily_rollup(facts), hourly, only_new=speculate and bool(seen_ids)):
        again = _apply(store, items, strict=strict, resolver=resolver, zone=zone, keep_events=keep_events,
                       days=days, hours=hours)
        again.found_old_ids = True
        return again
    now_periods = periods(now, zone)
    current = {"hour": now_periods.hour, "day": now_periods.day, "month": now_periods.month}
    for limits_told, counters_told, before_told, emails_told, crossed_told in tells:
        now_only = [i for i, c in enumerate(counters_told) if c.period == current[c.window]]  # past windows: no
        if now_only:
            tell(store, [limits_told[i] for i in now_only], [counters_told[i] for i in now_only],
                 [before_told[i] for i in now_only], emails_told, crossed_told)
    for credits_told, charged_before in credit_spans.values():  # a level crossed within the batch is crossed by it
        tell_credits(store, credits_told, charged_before, credits_told.charges)
    # A refusal on today's total also re-applies the rule: an account unblocked
    # while over today's limit is revoked and blocked again by its next message.
    for key, total in refused_over.items():
        crossed_at.setdefault(key, total)
    result.crossings = enforce(store, crossed_at, before, accounts, limits, current_day)
    return result


_DAILY = 4  # where a target's rollup is in its facts


def _facts(target: _Target, prepaid: dict[int, PrepaidAgency], windows: WindowLimits, limits: dict[int, int],
           accounts: dict[int, Any]) -> tuple:
    """What ``_apply`` needs of one target in a batch, in this order:

    - its agency's credits, when prepaid (else None);
    - ``windowed``: a limit beyond its account's day is set on it, its account
      or its agency. Only such a sender needs more than the day's total: the
      others take the rule with their day alone, as every sender did before
      windows;
    - its account's daily limit, alone: the limits in force when not windowed;
    - 100 x the daily total at which its messages may warn (the first of WARN_AT);
    - its rollup, day -> [messages, emails], which the loop fills (``_DAILY``);
    - its agency id, account id, domain and login, as its rows take them.

    A receiving domain's target has no limits. A plain tuple: unpacked for
    each message, a named tuple took 0.05 us more (no fast path for a subclass).
    """
    t = target
    if not t.login:
        return prepaid.get(t.agency_id), False, (), 0, {}, t.agency_id, t.account_id, t.domain, t.login
    limit = limits[t.account_id]
    windowed = t.account_id in windows.accounts or t.login in windows.credentials or t.agency_id in windows.agencies
    return (prepaid.get(t.agency_id), windowed, (account_day(limit, accounts[t.account_id].name),),
            WARN_AT[0] * limit, {}, t.agency_id, t.account_id, t.domain, t.login)


def _daily_rollup(facts: dict[_Target, tuple]) -> dict[tuple, list[int]]:
    """What the rows add to the per-day rollup, by its key: (day, agency id,
    account id, domain, login, direction) -> [messages, emails]."""
    rollup: dict[tuple, list[int]] = {}
    for target, found in facts.items():
        direction = "outbound" if target.login else "inbound"  # (a receiving domain's target has no login)
        for day, (messages, emails) in found[_DAILY].items():
            key = (day, target.agency_id, target.account_id, target.domain, target.login, direction)
            counts = rollup.setdefault(key, [0, 0])  # (two targets of one sender, named in two ways)
            counts[0] += messages
            counts[1] += emails
    return rollup


def _plan(target: _Target, limits: dict[int, int], windows: WindowLimits, when: Periods,
          zone: ZoneInfo) -> tuple[tuple, tuple[Counter, ...]]:
    """The limits in force for the messages in ``when`` of ``target``, a
    sender with a limit beyond its account's day (``_apply``'s ``windowed``),
    and their counters (``windows.in_force``)."""
    account_id, login, agency_id = target.account_id, target.login, target.agency_id
    account_hour, account_month = windows.accounts.get(account_id) or (None, None)
    credential_hour, credential_day = windows.credentials.get(login) or (None, None)
    agency_name, agency_month = windows.agencies.get(agency_id) or ("", None)
    sender = SenderWindows(account_id, target.account or "", agency_id, agency_name, login, limits[account_id],
                           account_hour, account_month, credential_hour, credential_day, agency_month)
    return in_force(sender, when, zone)


def _counted(store: Store, counted: dict[Counter, int], counter: Counter) -> int:
    found = counted.get(counter)
    if found is None:
        found = counted[counter] = store.window_total(*counter)
    return found


def record_usage(store: Store, item: UsageInput) -> BatchResult:
    """Record one message (idempotent by ``source_id``) and enforce the limit.

    Raises ``InvalidInput`` (bad fields, a time in the future, an agency-
    assigned sender, more recipients than ``max_recipients_per_message``),
    ``NotFound`` (unknown domain) or ``LimitReached`` (the account is already
    over its daily limit that day: the message is refused, not recorded).
    """
    zone = store_zone(store)
    resolver = _Resolver(store)
    resolver.resolve(item)  # NotFound / InvalidInput with their own exit codes, before the lock
    with store.write():
        result = _apply(store, [item], strict=False, resolver=resolver, zone=zone, keep_events=True)
    if result.rejected:  # raised after the commit: a refusal still re-applies the limit rule
        kind, reason = result.kinds[0], result.rejected[0].reason
        raise (LimitReached if kind in LIMIT_REFUSALS else InvalidInput)(reason)
    return result


MAX_REJECTED_SHOWN = 100


@dataclass
class ImportSummary:
    lines: int = 0
    messages: int = 0
    emails: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_lines: list[dict[str, Any]] = field(default_factory=list)
    crossings: list[Crossing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        revoked = sorted({login for c in self.crossings for login in c.revoked_credentials})
        return {
            "messages": self.messages, "emails": self.emails, "duplicates_skipped": self.duplicates,
            "lines_rejected": self.rejected, "rejected": self.rejected_lines,
            "limit_exceeded": [c.as_dict() for c in self.crossings],
            "revoked_credentials": revoked, "notes": self.notes,
        }


def import_usage(store: Store, items: Iterable[UsageInput | BadLine], *, strict: bool = False,
                 batch_size: int = BATCH_SIZE, progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Record a stream of messages in transactions of ``batch_size``.

    Each batch is one transaction with its limit enforcement. A bad line is
    counted and reported; with ``strict`` it raises ``InvalidInput`` naming
    the line, and nothing of its batch is kept (earlier batches stay).
    """
    zone = store_zone(store)
    days, hours = _Days(zone), Hours(zone)
    resolver = _Resolver(store, bulk=True)
    summary = ImportSummary()
    batch: list[UsageInput | BadLine] = []
    # Skip looking up each id before the insert until a batch turns out to
    # hold ids already stored (a re-run after Ctrl-C, an overlapping log).
    speculate = [not strict]

    def flush() -> None:
        with store.write():
            result = _apply(store, batch, strict=strict, resolver=resolver, zone=zone, days=days, hours=hours,
                            speculate=speculate[0])
        if result.found_old_ids:
            speculate[0] = False
        summary.messages += result.messages
        summary.emails += result.emails
        summary.duplicates += result.duplicates
        summary.rejected += len(result.rejected)
        for bad in result.rejected:
            if len(summary.rejected_lines) < MAX_REJECTED_SHOWN:
                summary.rejected_lines.append({"line": bad.line, "reason": bad.reason})
        summary.crossings.extend(result.crossings)
        if progress:
            progress(len(batch))
        batch.clear()

    # An import makes millions of short-lived objects and no reference
    # cycles: the cyclic collector, run every 700 allocations over a heap
    # that holds a whole batch, cost ~8% of it. It runs here when 200,000
    # more objects are held than freed, which a batch of 20,000 (~100,000
    # objects) never reaches, and never over the objects from before the
    # import (frozen). At 50,000 it ran twice a batch, each time over the
    # batch in hand: 0.21 s of a 1,000,000-event JSONL import (issue 22).
    import gc

    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 200_000), *threshold[1:])
    try:
        # Each batch taken from the input in C: 0.008 us a message, where a
        # loop adding each and checking the batch's size took 0.03 us.
        iterator = iter(items)
        while True:
            batch.extend(islice(iterator, batch_size))
            if not batch:
                break
            flush()
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
    return summary
