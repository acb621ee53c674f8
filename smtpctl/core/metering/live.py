"""Admitting live messages (``serve`` at the end of DATA, the policy service
at END-OF-MESSAGE): the credential, the envelope and the cap rule, checked
and recorded in one transaction before the message is accepted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smtpctl.core.directory.settings import effective_settings, zone_of
from smtpctl.core.metering.credits import PrepaidAgency, prepaid_agencies
from smtpctl.core.metering.enforcement import AccountState, Crossing, enforce
from smtpctl.core.metering.notices import tell, tell_credits
from smtpctl.core.metering.rule import REFUSED_OVER_LIMIT, Limit, decide, refusal
from smtpctl.core.metering.windows import Counter, Periods, SenderWindows, in_force, periods
from smtpctl.core.model import rules
from smtpctl.core.model.clock import stored_time
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.model.records import Credential
from smtpctl.core.store import Store
from smtpctl.core.store.usage import EventRow


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
    agency: str = ""
    windows: tuple[int | None, ...] = (None,) * 5  # account hour, month; credential hour, day; agency month


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
    if row is None or row.account_id is None:
        if memo is not None:
            memo[("sender", login)] = _UNKNOWN  # domains change only under the exclusive write lock
        return None
    account_id = row.account_id
    sender = _Sender(full, domain_name, account_id, row.agency_id, row.account, row.daily_limit, row.blocked,
                     row.live, row.agency or "", (row.account_hour, row.account_month, row.credential_hour,
                                                  row.credential_day, row.agency_month))
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
    status: str  # accepted | duplicate | over_limit | over_window_limit | out_of_credits | too_many_recipients
    #              | revoked | unknown | invalid
    reason: str = ""
    emails: int = 0
    crossings: tuple[Crossing, ...] = ()
    refused_by: Limit | None = None  # the window that refused it (over_window_limit)


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


def _stamp(now: datetime, settings: Any, memo: dict[Any, Any]) -> tuple[Periods, str]:
    """The hour, day and month ``now`` falls in in the store's zone and its
    time as stored: worked out once per metering transaction (``memo``), whose
    messages share one instant and one zone setting."""
    key = ("stamp", now, settings["timezone"])
    stamp = memo.get(key)
    if stamp is None:
        stamp = memo[key] = (periods(now, zone_of(settings)), stored_time(now))
    return stamp


def _admit(store: Store, login: str, recipients: int, source_id: str) -> Admission:
    """One live message, in the caller's write transaction: the credential,
    then the cap rule (``rule.decide``) on the account's total today, then the
    record. What is fast here is how the rule's inputs are gathered: in a
    metering transaction the settings, the clock and each account's total are
    read once and kept up to date, so a message costs 3 statements (the
    sender, the event, the rollup) instead of ~12."""
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
        if source_id is not None and store.source_id_stored(source_id):  # billed before the credential went
            return Admission(True, "duplicate", "already recorded", 0)
        return Admission(False, "revoked", "the credential was revoked or removed")
    settings = _settings(store)
    max_recipients = int(settings["max_recipients_per_message"])
    cap = decide(recipients, max_recipients, (), ())  # the per-message cap, before the total is read
    if not cap.accepted:
        return Admission(False, cap.refused, refusal(cap, recipients, max_recipients))
    memo = store.txn_memo if store.metering else {}
    when, at = _stamp(_txn_now(store), settings, memo)
    day, account_id = when.day, sender.account_id
    limit = sender.daily_limit if sender.daily_limit is not None else int(settings["default_daily_limit"])
    account_hour, account_month, credential_hour, credential_day, agency_month = sender.windows
    held = SenderWindows(account_id, sender.account, sender.agency_id, sender.agency, sender.login, limit,
                         account_hour, account_month, credential_hour, credential_day, agency_month)
    if held.needs_agency_lock:
        store.lock_agency(sender.agency_id)  # its other accounts, on other nodes, count in its month too
    found = memo.get(("in_force", held, when))  # a group commit's messages of one sender share them
    if found is None:
        found = memo[("in_force", held, when)] = in_force(held, when, zone_of(settings))
    limits, counters = found
    used = [_used(store, counter, memo) for counter in counters]
    credits = _prepaid(store, sender.agency_id, memo)
    if credits is not None:
        limits, used = (*limits, credits.limit(day)), [*used, credits.charges]
    decision = decide(recipients, max_recipients, limits, used)
    key, total = (account_id, day), used[0]  # the account's day comes first (windows.in_force)
    if not decision.accepted:
        if source_id is not None and store.source_id_stored(source_id):
            return Admission(True, "duplicate", "already recorded", 0)
        text = refusal(decision, recipients, max_recipients, sender.account, day,
                       agency=credits.name if credits else "")
        if decision.refused != REFUSED_OVER_LIMIT:  # temporary: nothing to enforce, credentials kept
            return Admission(False, decision.refused, text, refused_by=decision.refused_by)
        # A refusal on today's total also re-applies the rule: an account unblocked
        # while over today's limit is revoked and blocked again by its next message.
        account = {account_id: AccountState(sender.account, sender.blocked)}
        crossings = enforce(store, {key: total}, {key: total}, account, {account_id: limit}, day)
        return Admission(False, decision.refused, text, 0, tuple(crossings))
    if not store.record_admission(EventRow(source_id, at, day, "outbound", sender.agency_id, account_id,
                                           sender.domain, sender.login, recipients, 0, 0, recipients, at),
                                  when.hour if held.hourly else None):
        return Admission(True, "duplicate", "already recorded", 0)
    if store.metering:
        for counter, so_far in zip(counters, used):
            memo[counter] = so_far + recipients
    tell(store, limits, counters, used, recipients, decision.crossed)
    if credits is not None:
        charged = credits.charges
        credits.charge(recipients, day)
        tell_credits(store, credits, charged, credits.charges)
    crossings = ()
    if any(limit.permanent for limit in decision.crossed):
        account = {account_id: AccountState(sender.account, sender.blocked)}
        crossings = tuple(enforce(store, {key: total + recipients}, {key: total}, account, {account_id: limit}, day))
    return Admission(True, "accepted", "", recipients, crossings)


def _used(store: Store, counter: Counter, memo: dict[Any, Any]) -> int:
    """What ``counter`` holds: from the transaction's memo (kept up to date as
    it records) or the store, under the locks the caller holds."""
    found = memo.get(counter)
    if found is None:
        found = store.window_total(*counter)
        if store.metering:
            memo[counter] = found
    return found


def _prepaid(store: Store, agency_id: int, memo: dict[Any, Any]) -> PrepaidAgency | None:
    """The sender's agency, if prepaid, with its credits and charges read under
    its lock (once per metering transaction: the memo keeps them up to date)."""
    key = ("prepaid", agency_id)
    if key in memo:
        return memo[key]
    if not store.prepaid_agencies([agency_id]):
        found = None
    else:
        store.lock_agency(agency_id)  # its accounts on other nodes charge the same credits
        found = prepaid_agencies(store, [agency_id])[agency_id]
    memo[key] = found
    return found


@dataclass(frozen=True)
class EnvelopeCheck:
    status: str  # ok | unknown | revoked
    sender_allowed: bool
    max_recipients: int
    stamp: tuple[int, str] | None = None  # the credential now: its id and when its password last changed


def credential_stamp(credential: Credential) -> tuple[int, str]:
    """What tells a credential from its successor: a delete and create changes
    the id, a reset the hash. Not ``updated_at``, which counts whole seconds:
    a reset in the second the session authenticated went unseen. A rehash of
    the same password changes the hash too: the session that made it takes
    the new hash as its stamp (submission/handler.py)."""
    return credential.id, credential.password_hash


def envelope_check(store: Store, login: str, sender: str) -> EnvelopeCheck:
    """What ``serve`` asks at MAIL: may the login still send, may it use this
    envelope sender, how many recipients may the message have, and is the
    credential still the one the session authenticated with (``stamp``)."""
    status = sender_status(store, login)
    allowed = status == "ok" and sender_allowed(store, login, sender)
    credential = store.credential(login) if status == "ok" else None
    return EnvelopeCheck(status, allowed, max_recipients(store),
                         credential_stamp(credential) if credential is not None else None)


def cancel_message(store: Store, source_id: str) -> bool:
    """Take back a message admitted by ``admit_message`` that was then not
    delivered (the next hop refused it at the end of DATA): its emails leave
    the day's total and the bill, in one transaction. A crossing it caused
    stays enforced (the limit was reached when it was admitted)."""
    with store.write():
        return store.delete_usage_event(source_id)
