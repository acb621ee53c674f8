"""The AUTH throttle of ``smtpctl serve``, kept in the store so that every
node on one store (two processes on one SQLite file, a fleet on one
PostgreSQL) counts one budget, exactly as one node would.

A password guess is counted when its verify starts: ``reserve`` checks the
client's and the login's budgets and inserts a ``pending`` row in one write
transaction (the store's write lock: ``BEGIN IMMEDIATE`` on SQLite, the
advisory lock on PostgreSQL), so parallel guesses on any number of nodes
get no more verifies than sequential ones. ``settle`` deletes the row (a
right password gives its slot back, and trusts the (login, client) pair for
a day) or marks it ``failed`` (it counts for ``window`` seconds from the
failure). A ``pending`` row older than ``stale`` seconds (its node died
mid-verify, or lost the store) counts as a failure at ``at + stale``, so it
never blocks a budget for longer than a failed guess would. Rows past all
counting are pruned by ``reserve``.

Times are seconds since the epoch on the store's clock (``Store.now()``:
PostgreSQL's on a fleet), so every node reads the same window. No function
here keeps state between calls: the server's guard (servers/guard.py) keeps
what it may remember locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtpctl.core.errors import StoreError

if TYPE_CHECKING:
    from smtpctl.core.store import Store

TRUSTED_FOR = 86400.0  # a client that authenticated as a login passes that login's cap for a day
STALE_AFTER = 60.0  # a guess still pending after this long counts as failed (a verify takes ~40 ms)


@dataclass(frozen=True)
class Limits:
    per_client: int
    per_login: int
    window: float
    stale: float = STALE_AFTER


@dataclass(frozen=True)
class Budget:
    """One key's use of its budget now: guesses that failed (stale pending
    ones included) and guesses being verified, and when the oldest counted
    failure stops counting (seconds from now; None without failures)."""
    failures: int
    pending: int
    frees_in: float | None


@dataclass(frozen=True)
class Verdict:
    """What the throttle says of a guess.

    ``status``: ``ok`` (a slot is reserved: ``attempt`` is its row), ``full``
    (guesses being verified hold every slot left: wait for one to settle),
    or ``refused`` (failures fill a budget: answer 454, verify nothing).
    ``refused_by`` names the budget (``client`` or ``login``), ``retry_in``
    how long (seconds) that stays so at least; ``counted`` is the login
    whose budget counts this guess (None when the client is trusted for it,
    or there is no login); ``trusted_for`` the seconds the client's trust for
    the login has left (0 when not trusted).
    """
    status: str
    attempt: int | None = None
    refused_by: str | None = None
    retry_in: float = 0.0
    counted: str | None = None
    trusted_for: float = 0.0


def budget(store: "Store", column: str, value: str, now: float, limits: Limits) -> Budget:
    """How much of ``value``'s budget (``column``: client or login) is used at ``now``."""
    window_start, stale_before = now - limits.window, now - limits.stale
    row = store._rows(
        f"SELECT "
        f"COALESCE(SUM(CASE WHEN state = 'failed' OR at <= ? THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN state = 'pending' AND at > ? THEN 1 ELSE 0 END), 0), "
        f"MIN(CASE WHEN state = 'failed' THEN at END), "
        f"MIN(CASE WHEN state = 'pending' AND at <= ? THEN at END) "
        f"FROM auth_attempts WHERE {column} = ? AND at > ? AND (state = 'pending' OR at > ?)",
        [stale_before, stale_before, stale_before, value, window_start - limits.stale, window_start])[0]
    failures, pending, oldest_failed, oldest_stale = int(row[0]), int(row[1]), row[2], row[3]
    ends = [t + limits.window for t in (oldest_failed,) if t is not None]
    ends += [t + limits.stale + limits.window for t in (oldest_stale,) if t is not None]
    return Budget(failures, pending, max(min(ends) - now, 0.0) if ends else None)


def _trusted_for(store: "Store", client: str, login: str | None, now: float) -> float:
    if login is None:
        return 0.0
    row = store._rows("SELECT expires FROM auth_trusted WHERE login = ? AND client = ?", [login, client])
    return max(row[0][0] - now, 0.0) if row else 0.0


def _judge(store: "Store", client: str, login: str | None, now: float, limits: Limits) -> Verdict:
    trusted_for = _trusted_for(store, client, login, now)
    counted = login if trusted_for <= 0 else None
    full = False
    for name, value, limit in (("client", client, limits.per_client), ("login", counted, limits.per_login)):
        if value is None:
            continue
        used = budget(store, name, value, now, limits)
        if used.failures >= limit:
            return Verdict("refused", refused_by=name, retry_in=used.frees_in or 0.0, counted=counted,
                           trusted_for=trusted_for)
        if used.failures + used.pending >= limit:
            full = True
    return Verdict("full" if full else "ok", counted=counted, trusted_for=trusted_for)


def check(store: "Store", client: str, login: str | None, limits: Limits) -> Verdict:
    """Read only: is ``client`` (or ``login``, unless the client is trusted
    for it) out of guesses? ``status`` is ``refused``, or ``ok`` whatever is
    pending (a right password proven otherwise than by a verify is no guess)."""
    try:
        now = store.now().timestamp()  # outside a transaction: its error is not mapped by write()
    except store.backend.errors as exc:
        raise StoreError(store.backend.describe(exc)) from None
    verdict = _judge(store, client, login, now, limits)
    if verdict.status == "full":
        return Verdict("ok", counted=verdict.counted, trusted_for=verdict.trusted_for)
    return verdict


def reserve(store: "Store", client: str, login: str | None, limits: Limits, prune: bool = False) -> Verdict:
    """Count a guess that is about to be verified, in one write transaction:
    a ``pending`` row for the client (and the login, unless the client is
    trusted for it) when their budgets have room. ``prune`` first deletes
    what has aged out of all counting (the caller does it now and then)."""
    with store.write():
        now = store.now().timestamp()
        if prune:
            store.execute("DELETE FROM auth_attempts WHERE at <= ?", [now - limits.window - limits.stale])
            store.execute("DELETE FROM auth_trusted WHERE expires <= ?", [now])
        verdict = _judge(store, client, login, now, limits)
        if verdict.status != "ok":
            return verdict
        attempt = store._insert("auth_attempts", {"client": client, "login": verdict.counted, "state": "pending",
                                                  "at": now})
        return Verdict("ok", attempt=attempt, counted=verdict.counted, trusted_for=verdict.trusted_for)


def settle(store: "Store", attempt: int, failed: bool, trust: tuple[str, str] | None = None) -> None:
    """End a guess: ``failed`` keeps its row as a failure from now on; else
    the row goes (its slot comes back) and ``trust`` (login, client), when
    given, is trusted for a day from now."""
    with store.write():
        now = store.now().timestamp()
        if failed:
            store.execute("UPDATE auth_attempts SET state = 'failed', at = ? WHERE id = ? AND state = 'pending'",
                          [now, attempt])
        else:
            store.execute("DELETE FROM auth_attempts WHERE id = ?", [attempt])
            if trust is not None:
                _trust(store, trust[0], trust[1], now)


def trust(store: "Store", login: str, client: str) -> None:
    """Trust ``client`` for ``login`` for a day from now (it authenticated)."""
    with store.write():
        _trust(store, login, client, store.now().timestamp())


def _trust(store: "Store", login: str, client: str, now: float) -> None:
    store.execute("INSERT INTO auth_trusted (login, client, expires) VALUES (?, ?, ?) "
                  "ON CONFLICT (login, client) DO UPDATE SET expires = excluded.expires",
                  [login, client, now + TRUSTED_FOR])
