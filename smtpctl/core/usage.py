"""Usage use cases: record and import messages, enforce the daily limit,
block and unblock accounts, report usage and cost, estimate prices.

The daily limit is enforced in the same transaction that records the
emails: when an account's outbound emails for today (in the store's time
zone) go over its limit, every credential on its dedicated domains is
deleted and credential creation is blocked, before the transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable
from zoneinfo import ZoneInfo

from smtpctl.core import billing, rules
from smtpctl.core.clock import iso_z, now_iso
from smtpctl.core.errors import InvalidInput, LimitReached, NotFound
# reads, not services, and ingest only where a batch is applied: ``usage
# status`` compiles neither (~90 KB of source); ``usage report`` does not
# even import this module (core/report.py).
from smtpctl.core.reads import effective_limit, effective_settings, get_account
from smtpctl.core.reads import today as services_today
from smtpctl.core.models import Account
from smtpctl.core.report import GROUPS, parse_day, usage_report  # noqa: F401 - re-exported (core/report.py says why)
from smtpctl.core.store import DomainOwner, Store

if TYPE_CHECKING:
    from smtpctl.core.ingest import BadLine, UsageInput

FUTURE_TOLERANCE = timedelta(hours=1)
BATCH_SIZE = rules.IMPORT_BATCH_SIZE
WARN_RATIO = Decimal("0.8")


@dataclass(frozen=True)
class Crossing:
    """An account went over its daily limit."""

    account: str
    day: str
    emails: int  # the day's outbound count at the email that crossed
    limit: int
    enforced: bool  # False when the day is already over (a late import)
    revoked_credentials: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "day": self.day, "emails": self.emails, "limit": self.limit,
                "enforced": self.enforced, "revoked_credentials": list(self.revoked_credentials)}


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


@dataclass(frozen=True)
class _Target:
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
            raise type(hit)(hit.message)
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


def store_zone(store: Store) -> ZoneInfo:
    return ZoneInfo(str(effective_settings(store)["timezone"]))


def today(store: Store, zone: ZoneInfo | None = None) -> str:
    return services_today(store, zone or store_zone(store))


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


def _iso(at: datetime) -> str:
    # iso_z() for an aware UTC datetime, without strftime's cost on the import path.
    return at.isoformat()[:19] + "Z"


REFUSED_OVER_LIMIT = "over_limit"
REFUSED_TOO_MANY = "too_many_recipients"


def _apply(store: Store, items: list[UsageInput | BadLine], *, strict: bool, resolver: _Resolver,
           zone: ZoneInfo, keep_events: bool = False, days: _Days | None = None,
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
    from smtpctl.core.ingest import BadLine, UsageInput  # not at import: see the imports above

    speculate = speculate and not strict
    result = BatchResult()
    now = store.now()  # the store's clock: one day boundary for every node of a fleet
    latest = now + FUTURE_TOLERANCE
    days = days or _Days(zone)
    current_day = now.astimezone(zone).date().isoformat()
    settings = effective_settings(store)
    max_recipients = int(settings["max_recipients_per_message"])
    seen_ids: set[str] = set()
    wanted_ids = [i.source_id for i in items if isinstance(i, UsageInput) and i.source_id]
    existing = store.existing_source_ids(wanted_ids) if wanted_ids and not speculate else set()

    def reject(item: UsageInput | BadLine, reason: str, kind: str) -> None:
        if strict:
            raise (LimitReached if kind == REFUSED_OVER_LIMIT else InvalidInput)(
                f"line {item.line}: {reason}" if item.line else reason)
        result.rejected.append(BadLine(item.line, reason))
        result.kinds.append(kind)

    # First pass: who and when, without touching the totals.
    accepted: list[tuple[UsageInput, _Target, str, str, int]] = []  # item, target, time as stored, day, emails
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
            if emails > max_recipients:
                raise InvalidInput(f"{emails:,} recipients in one message: more than the "
                                   f"{max_recipients:,} allowed (store setting max_recipients_per_message); "
                                   "not recorded")
        except (InvalidInput, NotFound) as exc:
            kind = REFUSED_TOO_MANY if "max_recipients_per_message" in exc.message else "invalid"
            if not item.line and kind == "invalid":
                raise
            reject(item, exc.message, kind)
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
            at_text, day = _iso(at), days(at)
        else:
            day = day_of_text(at_text[:15]) or days.of_text(at, at_text)
        if item.direction == "outbound":
            touch((target.account_id, day))
        accept((item, target, at_text, day, emails))
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
    total_emails = 0
    for item, target, at_text, day, emails in accepted:
        direction = item.direction
        if direction == "outbound":
            key = (target.account_id, day)
            total = running[key]
            limit = limits[target.account_id]
            if total > limit:
                refused_over[key] = total
                reject(item, f"account {target.account} is over its daily limit on {day} ({total:,} of "
                             f"{limit:,} emails): message refused, not recorded", REFUSED_OVER_LIMIT)
                continue
            running[key] = total + emails
            if total + emails > limit:
                crossed_at[key] = total + emails
        total_emails += emails
        append((item.source_id, at_text, day, direction, target.agency_id, target.account_id,
                target.domain, target.login, item.to, item.cc, item.bcc, emails, recorded_at))
        if keep_events:
            result.events.append({"id": item.source_id, "at": at_text, "day": day, "direction": direction,
                                  "user": target.login or None, "domain": target.domain, "account": target.account,
                                  "to": item.to, "cc": item.cc, "bcc": item.bcc, "emails": emails})
    result.recorded = result.messages = len(rows)
    result.emails = total_emails
    if rows and not store.insert_usage(rows, only_new=speculate and bool(wanted_ids)):
        again = _apply(store, items, strict=strict, resolver=resolver, zone=zone, keep_events=keep_events,
                       days=days)
        again.found_old_ids = True
        return again
    # A refusal on today's total also re-applies the rule: an account unblocked
    # while over today's limit is revoked and blocked again by its next message.
    for key, total in refused_over.items():
        crossed_at.setdefault(key, total)
    result.crossings = _enforce(store, crossed_at, before, accounts, limits, current_day)
    return result


def _enforce(store: Store, crossed_at: dict[tuple[int, str], int], before: dict[tuple[int, str], int],
             accounts: dict[int, Account] | dict[int, _AccountView], limits: dict[int, int],
             current_day: str) -> list[Crossing]:
    """Apply the daily-limit rule to every (account, day) this batch took over its limit."""
    crossings = []
    for (account_id, day), count in sorted(crossed_at.items()):
        account, limit = accounts[account_id], limits[account_id]
        if day != current_day:
            if before.get((account_id, day), 0) <= limit:  # newly over, on a day already past
                crossings.append(Crossing(account.name, day, count, limit, enforced=False))
            continue
        live = store.account_logins(account_id)
        if not live and account.blocked:
            continue  # already revoked and blocked: nothing outlives the crossing
        reason = f"daily limit of {limit:,} emails exceeded on {day} ({count:,} sent)"
        store.revoke_account_credentials(account_id)
        for key in [k for k in store.txn_memo if k[0] == "sender"]:
            del store.txn_memo[key]  # the admissions after this one see the credentials gone
        if not account.blocked:
            store.update_account(account_id, blocked_at=now_iso(), block_kind="limit", block_reason=reason)
        store.audit("account.limit_exceeded", "account", account.name, account=account.name,
                    details={"day": day, "emails": count, "limit": limit, "revoked_credentials": live,
                             "blocked": not account.blocked})
        crossings.append(Crossing(account.name, day, count, limit, enforced=True, revoked_credentials=tuple(live)))
    return crossings


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
        raise (LimitReached if kind == REFUSED_OVER_LIMIT else InvalidInput)(reason)
    return result


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


MAX_REJECTED_SHOWN = 100


def import_usage(store: Store, items: Iterable[UsageInput | BadLine], *, strict: bool = False,
                 batch_size: int = BATCH_SIZE, progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Record a stream of messages in transactions of ``batch_size``.

    Each batch is one transaction with its limit enforcement. A bad line is
    counted and reported; with ``strict`` it raises ``InvalidInput`` naming
    the line, and nothing of its batch is kept (earlier batches stay).
    """
    zone = store_zone(store)
    days = _Days(zone)
    resolver = _Resolver(store, bulk=True)
    summary = ImportSummary()
    batch: list[UsageInput | BadLine] = []
    # Skip looking up each id before the insert until a batch turns out to
    # hold ids already stored (a re-run after Ctrl-C, an overlapping log).
    speculate = [not strict]

    def flush() -> None:
        with store.write():
            result = _apply(store, batch, strict=strict, resolver=resolver, zone=zone, days=days,
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
    # that holds a whole batch, cost ~8% of it. It runs every 50,000 here,
    # and never over the objects from before the import (frozen).
    import gc

    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
    try:
        for item in items:
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
    return summary


# -- live submission (the SMTP server and the Postfix policy service) ------------------


@dataclass(frozen=True)
class _Sender:
    """A login as an admission sees it (``Store.meter_sender``)."""

    login: str  # normalised name@domain
    domain: str
    account_id: int
    agency_id: int
    account: str
    daily_limit: int | None
    blocked: bool
    live: bool  # the credential exists


_UNKNOWN = "unknown"  # in the transaction memo: a login whose domain is not a dedicated one of ours


def _login_domain(login: str) -> str | None:
    """The stored domain of ``login`` (None: not a login)."""
    try:
        return rules.parse_login(login)[1]
    except InvalidInput:
        return None


def _sender(store: Store, login: str) -> _Sender | None:
    """Who ``login`` is (None: not ours). In a metering transaction the answer
    is kept for the rest of it once it was read under the account's lock (no
    other transaction can change it then; a revocation in this one empties
    the memo)."""
    memo = store.txn_memo if store.metering else None
    if memo is not None:
        hit = memo.get(("sender", login))
        if hit is not None:
            return None if hit is _UNKNOWN else hit
    try:
        name, domain_name = rules.parse_login(login)
    except InvalidInput:
        return None
    full = f"{name}@{domain_name}"
    row = store.meter_sender(full, domain_name)
    if row is None or row[0] is None:
        if memo is not None:
            memo[("sender", login)] = _UNKNOWN  # domains change only under the exclusive write lock
        return None
    account_id, agency_id, account, daily_limit, blocked, live = row
    sender = _Sender(full, domain_name, account_id, agency_id, account, daily_limit, bool(blocked), bool(live))
    if memo is not None and store.holds_account(account_id):
        memo[("sender", login)] = sender
    return sender


def _settings(store: Store) -> Any:
    """``effective_settings``, worked out once per metering transaction (no
    other writer can change a setting while it holds the write lock shared)."""
    if not store.metering:
        return effective_settings(store)
    settings = store.txn_memo.get("settings")
    if settings is None:
        settings = store.txn_memo["settings"] = effective_settings(store)
    return settings


def max_recipients(store: Store) -> int:
    """The store setting ``max_recipients_per_message`` (in a metering
    transaction, from the settings it read once)."""
    return int(_settings(store)["max_recipients_per_message"])


def sender_status(store: Store, login: str) -> str:
    """May ``login`` send now? ``ok``, ``unknown`` (its domain is not ours) or
    ``revoked`` (the credential is gone). A manual block stops credential
    creation only (docs/rules.md): it does not stop a live credential."""
    sender = _sender(store, login)
    if sender is None:
        return "unknown"
    return "ok" if sender.live else "revoked"


def sender_allowed(store: Store, login: str, sender: str) -> bool:
    """Sender alignment (Postfix's ``reject_sender_login_mismatch``): may
    ``login`` use the envelope sender ``sender``? Only addresses in the
    dedicated domains of the login's own account; never the null sender.
    Always true when the store setting ``sender_alignment`` is off."""
    if _settings(store)["sender_alignment"] == "off":
        return True
    local, at, domain_part = sender.strip().strip("<>").rpartition("@")
    if not at or not local or not domain_part:
        return False  # <> or not an address: a submission has a real sender
    try:
        _, login_domain = rules.parse_login(login)
        sender_domain = rules.normalise_domain(domain_part)
    except InvalidInput:
        return False
    if sender_domain == login_domain:
        return True
    mine, theirs = store.domain(login_domain), store.domain(sender_domain)
    return mine is not None and theirs is not None and mine.account is not None and theirs.account == mine.account


@dataclass(frozen=True)
class Admission:
    """The answer to one live message: accepted (and recorded) or refused (and not)."""

    accepted: bool
    status: str  # accepted | duplicate | over_limit | too_many_recipients | revoked | unknown | invalid
    reason: str = ""
    emails: int = 0
    crossings: tuple[Crossing, ...] = ()


def admit_message(store: Store, login: str, recipients: int, source_id: str) -> Admission:
    """The live paths' hard cap (``serve`` at end of DATA, the policy service
    at END-OF-MESSAGE): check the credential, the per-message recipient cap
    and the account's daily total, and record the message, in one write
    transaction that holds the account's lock, before the message is
    accepted. So at most one message per account and day crosses the limit
    whatever the concurrency or the number of processes. A ``source_id``
    already recorded is accepted again without billing it twice. Raises
    nothing for a refusal (it is an answer); store errors propagate. The
    servers run it as a step of ``run_steps`` (group commit: many sessions'
    messages, one commit)."""
    if store.backend.in_transaction:  # group commit's step: joins the shared transaction, as write() would
        return _admit(store, login, recipients, source_id)
    with store.write():
        return _admit(store, login, recipients, source_id)


def run_steps(store: Store, steps: list[Callable[[Store], Any]], logins: list[str] | None = None) -> list[Any]:
    """Run ``steps`` in order in one write transaction, each as if inside its
    own savepoint. A step that raises gets its exception in the answer list
    (its writes undone); the others are committed together. Store errors of
    the transaction itself (the lock, the commit) propagate, and then
    nothing of the batch was written.

    ``logins``: the steps only read and admit messages (``admit_message``)
    of these logins: one metering transaction (``Store.write(metering=True)``)
    that first takes the lock of every account the logins belong to, in
    ascending order, so on PostgreSQL batches of different accounts run in
    parallel on several nodes and never wait on each other in a circle. (A
    step admitting another login takes that account's lock when it gets
    there: as safe, only no longer ordered.) Such a batch first runs without
    savepoints (two statements fewer per step); if a step raises, that
    transaction is rolled back whole and the batch runs again, each step in
    its savepoint: its steps only read the store and write through it, so
    running them again answers as the first run would have."""
    if logins is not None:
        try:
            return _run_steps(store, steps, logins, savepoints=False)
        except _StepFailed:
            pass  # rolled back, nothing written: again, the careful way
    return _run_steps(store, steps, logins, savepoints=True)


class _StepFailed(Exception):
    """A step raised in a batch run without savepoints: roll it all back."""


def _run_steps(store: Store, steps: list[Callable[[Store], Any]], logins: list[str] | None, *,
               savepoints: bool) -> list[Any]:
    answers: list[Any] = []
    with store.write(metering=logins is not None):
        if logins and store.locks_accounts:
            domains = {_login_domain(login) for login in logins}  # as _sender reads them: else late, unordered locks
            store.lock_accounts(store.accounts_of_domains([d for d in domains if d]))
        for step in steps:
            if not savepoints:
                try:
                    answers.append(step(store))
                except Exception as exc:
                    raise _StepFailed from exc
                continue
            try:
                with store.savepoint():
                    answers.append(step(store))
            except Exception as exc:  # noqa: BLE001 - the answer for this step; the rest go on
                answers.append(exc)
    return answers


def _txn_now(store: Store) -> datetime:
    """The store's clock, read once per metering transaction after its locks:
    the messages of one group commit share its instant (and so its day)."""
    if not store.metering:
        return store.now()
    now = store.txn_memo.get("now")
    if now is None:
        now = store.txn_memo["now"] = store.now()
    return now


def _stamp(now: datetime, timezone: str, memo: dict[Any, Any]) -> tuple[str, str]:
    """The day ``now`` falls on in ``timezone`` and its time as stored: worked
    out once per metering transaction (``memo``), whose messages share one
    instant and one zone setting."""
    stamp = memo.get(("stamp", now, timezone))
    if stamp is None:
        stamp = memo[("stamp", now, timezone)] = (now.astimezone(ZoneInfo(timezone)).date().isoformat(), _iso(now))
    return stamp


@dataclass(frozen=True)
class _AccountView:
    """What ``_enforce`` reads of an account."""

    name: str
    blocked: bool


def _admit(store: Store, login: str, recipients: int, source_id: str) -> Admission:
    """The hard cap for one message, in the caller's write transaction: the
    same answers, in the same order of checks, as recording it through
    ``_apply`` (the credential, the recipient cap, a stored id, the day's
    total), with 3 statements in a metering transaction's steady state (the
    sender, the event, the rollup) instead of ~12: the settings, the clock and
    each account's total are read once per transaction and kept up to date."""
    sender = _sender(store, login)
    if sender is not None and not store.holds_account(sender.account_id):
        # A login the batch did not announce: take its account's lock now and
        # read the sender again under it (its account cannot change: domains
        # change only under the exclusive write lock).
        store.lock_accounts([sender.account_id])
        sender = _sender(store, login)
    if sender is None:
        return Admission(False, "unknown", "not a credential of this service")
    if not sender.live:
        return Admission(False, "revoked", "the credential was revoked or removed")
    settings = _settings(store)
    max_recipients = int(settings["max_recipients_per_message"])
    if recipients > max_recipients:
        return Admission(False, REFUSED_TOO_MANY, f"{recipients:,} recipients in one message: more than the "
                         f"{max_recipients:,} allowed (store setting max_recipients_per_message); not recorded")
    memo = store.txn_memo if store.metering else {}
    day, at = _stamp(_txn_now(store), str(settings["timezone"]), memo)
    account_id = sender.account_id
    key = (account_id, day)
    total = memo.get(("total", key))
    if total is None:
        total = store.outbound_totals([key])[key]
    limit = sender.daily_limit if sender.daily_limit is not None else int(settings["default_daily_limit"])
    if total > limit:
        if source_id is not None and store.source_id_stored(source_id):
            return Admission(True, "duplicate", "already recorded", 0)
        # A refusal on today's total also re-applies the rule: an account unblocked
        # while over today's limit is revoked and blocked again by its next message.
        account = {account_id: _AccountView(sender.account, sender.blocked)}
        crossings = _enforce(store, {key: total}, {key: total}, account, {account_id: limit}, day)
        return Admission(False, REFUSED_OVER_LIMIT, f"account {sender.account} is over its daily limit on {day} "
                         f"({total:,} of {limit:,} emails): message refused, not recorded", 0, tuple(crossings))
    if not store.record_admission((source_id, at, day, "outbound", sender.agency_id, account_id, sender.domain,
                                   sender.login, recipients, 0, 0, recipients, at)):
        return Admission(True, "duplicate", "already recorded", 0)
    if store.metering:
        memo[("total", key)] = total + recipients
    crossings = ()
    if total + recipients > limit:
        account = {account_id: _AccountView(sender.account, sender.blocked)}
        crossings = tuple(_enforce(store, {key: total + recipients}, {key: total}, account, {account_id: limit}, day))
    return Admission(True, "accepted", "", recipients, crossings)


@dataclass(frozen=True)
class EnvelopeCheck:
    status: str  # ok | unknown | revoked
    sender_allowed: bool
    max_recipients: int


def envelope_check(store: Store, login: str, sender: str) -> EnvelopeCheck:
    """What ``serve`` asks at MAIL: may the login still send, may it use this
    envelope sender, and how many recipients may the message have."""
    status = sender_status(store, login)
    allowed = status == "ok" and sender_allowed(store, login, sender)
    return EnvelopeCheck(status, allowed, max_recipients(store))


def cancel_message(store: Store, source_id: str) -> bool:
    """Take back a message admitted by ``admit_message`` that was then not
    delivered (the next hop refused it at the end of DATA): its emails leave
    the day's total and the bill, in one transaction. A crossing it caused
    stays enforced (the limit was reached when it was admitted)."""
    with store.write():
        return store.delete_usage_event(source_id)


# -- blocks ----------------------------------------------------------------------


def block_account(store: Store, name: str, reason: str, *, revoke: bool = False) -> dict[str, Any]:
    """Block credential creation for an account by hand; optionally revoke its credentials.

    Raises ``NotFound`` or ``InvalidInput`` (empty reason). An account already
    blocked keeps its block (and may still have its credentials revoked).
    """
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("a block needs a reason (--reason TEXT)")
    if len(reason) > 500:
        raise InvalidInput("the reason is longer than 500 characters")
    with store.write():
        account = get_account(store, name)
        revoked = store.account_logins(account.id) if revoke else []
        if revoke:
            store.revoke_account_credentials(account.id)
        status = "unchanged"
        if not account.blocked:
            store.update_account(account.id, blocked_at=now_iso(), block_kind="manual", block_reason=reason)
            status = "blocked"
        if status == "blocked" or revoked:
            store.audit("account.block", "account", account.name, account=account.name,
                        details={"reason": reason, "revoked_credentials": revoked, "already_blocked": account.blocked})
        account = get_account(store, name)
    return {**account.as_dict(), "status": status, "revoked_credentials": revoked}


def unblock_account(store: Store, name: str) -> dict[str, Any]:
    """Lift either kind of block. Deleted credentials are not restored.

    The result carries today's count (``sent_today``), the limit and
    ``warnings``: an account already at or over today's limit is blocked
    again by its next email.
    """
    from smtpctl.core.services import limit_warning, sent_today

    with store.write():
        account = get_account(store, name)
        status = "unchanged"
        if account.blocked:
            store.update_account(account.id, blocked_at=None, block_kind=None, block_reason=None)
            store.audit("account.unblock", "account", account.name, account=account.name,
                        details={"was": account.block_kind, "reason": account.block_reason,
                                 "since": account.blocked_at})
            account = get_account(store, name)
            status = "unblocked"
        sent, limit = sent_today(store, account), effective_limit(store, account)
    warning = limit_warning(account, sent, limit, again=True) if status == "unblocked" else None
    return {**account.as_dict(), "status": status, "sent_today": sent, "effective_daily_limit": limit,
            "warnings": [warning] if warning else []}


# -- status and reports ------------------------------------------------------------


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
    from decimal import InvalidOperation

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


def estimate(*, emails: int, rate: Decimal, compare: list[tuple[str, Decimal]]) -> dict[str, Any]:
    """The cost of ``emails`` at ``rate`` per 1,000 and at each comparison rate."""
    if emails < 0:
        raise InvalidInput("the number of emails must not be negative")
    ours = billing.cost(emails, rate)
    return {
        "emails": emails,
        "rate_per_1000": billing.plain(rate),
        "cost": billing.plain(ours),
        "cost_rounded": format(billing.to_cents(ours), "f"),
        "comparisons": [
            {
                "name": name, "rate_per_1000": billing.plain(other_rate),
                "cost": billing.plain(theirs := billing.cost(emails, other_rate)),
                "cost_rounded": format(billing.to_cents(theirs), "f"),
                "saving": billing.plain(theirs - ours),
                "saving_rounded": format(billing.to_cents(theirs - ours), "f"),
                # what the two amounts to pay differ by: each is rounded to the cent on its own
                "saving_as_billed": format(billing.to_cents(theirs) - billing.to_cents(ours), "f"),
            }
            for name, other_rate in compare
        ],
    }
