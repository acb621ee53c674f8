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

from smtpctl.core.store.clock import EPOCH_NOW

if TYPE_CHECKING:
    from smtpctl.core.store import Store

# serve's caps unless told otherwise (--max-auth-failures, --max-auth-failures-per-login, --auth-failure-window)
DEFAULT_MAX_AUTH_FAILURES = 5
DEFAULT_MAX_AUTH_FAILURES_PER_LOGIN = 10
DEFAULT_FAILURE_WINDOW = 300.0
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



# Per key: failures (a stale pending guess counts as one), guesses being
# verified, and the earliest end of a counted failure; with the client's
# trust for the login. One statement with four parameters: AUTH pays one
# round trip for it.
_USAGE = """
SELECT n.now AS now,
  (SELECT t.expires FROM auth_trusted t WHERE t.login = n.login AND t.client = n.client) AS trusted_until,
  SUM(CASE WHEN a.client = n.client AND {failed} THEN 1 ELSE 0 END) AS client_failures,
  SUM(CASE WHEN a.client = n.client AND {pending} THEN 1 ELSE 0 END) AS client_pending,
  MIN(CASE WHEN a.client = n.client AND {failed} THEN {ends} END) AS client_frees,
  SUM(CASE WHEN a.login = n.login AND {failed} THEN 1 ELSE 0 END) AS login_failures,
  SUM(CASE WHEN a.login = n.login AND {pending} THEN 1 ELSE 0 END) AS login_pending,
  MIN(CASE WHEN a.login = n.login AND {failed} THEN {ends} END) AS login_frees
FROM (SELECT {now} AS now, CAST(? AS TEXT) AS client, CAST(? AS TEXT) AS login,
             CAST(? AS DOUBLE PRECISION) AS w, CAST(? AS DOUBLE PRECISION) AS s) n
LEFT JOIN auth_attempts a ON (a.client = n.client OR a.login = n.login)
  AND a.at > n.now - n.w - n.s AND (a.state = 'pending' OR a.at > n.now - n.w)
GROUP BY n.now, n.client, n.login
"""
_FAILED = "(a.state = 'failed' OR a.at <= n.now - n.s)"
_PENDING = "(a.state = 'pending' AND a.at > n.now - n.s)"
_ENDS = "(CASE WHEN a.state = 'failed' THEN a.at + n.w ELSE a.at + n.s + n.w END)"
_USAGE_SQL = {engine: _USAGE.format(failed=_FAILED, pending=_PENDING, ends=_ENDS, now=now)
              for engine, now in EPOCH_NOW.items()}


def usage(store: "Store", client: str, login: str | None, limits: Limits) -> tuple[float, float, Budget, Budget]:
    """The store's time now, the seconds ``client``'s trust for ``login`` has
    left (0: none), and how much of the client's and the login's budgets is used."""
    row = store.query(_USAGE_SQL[store.engine], [client, login, limits.window, limits.stale])[0]
    now, expires = float(row["now"]), row["trusted_until"]
    budgets = [Budget(int(row[f"{key}_failures"] or 0), int(row[f"{key}_pending"] or 0),
                      None if row[f"{key}_frees"] is None else max(row[f"{key}_frees"] - now, 0.0))
               for key in ("client", "login")]
    return now, max(expires - now, 0.0) if expires is not None else 0.0, budgets[0], budgets[1]


def _judge(store: "Store", client: str, login: str | None, limits: Limits,
           exempt: bool) -> tuple[float, Verdict]:
    now, trusted_for, by_client, by_login = usage(store, client, login, limits)
    counted = login if trusted_for <= 0 else None
    full = False
    for name, used, limit in (("client", None if exempt else by_client, limits.per_client),
                              ("login", by_login if counted else None, limits.per_login)):
        if used is None:
            continue
        if used.failures >= limit:
            return now, Verdict("refused", refused_by=name, retry_in=used.frees_in or 0.0, counted=counted,
                                trusted_for=trusted_for)
        if used.failures + used.pending >= limit:
            full = True
    return now, Verdict("full" if full else "ok", counted=counted, trusted_for=trusted_for)


def check(store: "Store", client: str, login: str | None, limits: Limits, exempt: bool = False) -> Verdict:
    """Read only: is ``client`` (unless ``exempt``: a trusted network) or
    ``login`` (unless the client is trusted for it) out of guesses?
    ``status`` is ``refused``, or ``ok`` whatever is pending (a right
    password proven otherwise than by a verify is no guess)."""
    _, verdict = _judge(store, client, login, limits, exempt)
    if verdict.status == "full":
        return Verdict("ok", counted=verdict.counted, trusted_for=verdict.trusted_for)
    return verdict


def reserve(store: "Store", client: str, login: str | None, limits: Limits, prune: bool = False,
            exempt: bool = False) -> Verdict:
    """Count a guess that is about to be verified, in one write transaction:
    a ``pending`` row for the client (and the login, unless the client is
    trusted for it) when their budgets have room; ``exempt`` (a client in a
    trusted network) leaves the client's budget out of the check, never the
    login's (the row still names the client, so it is seen and listed).
    ``prune`` first deletes what has aged out of all counting, and the
    expired records of revoked credentials (the caller does it now and then)."""
    now_sql = EPOCH_NOW[store.engine]
    with store.write():
        if prune:
            store.execute(f"DELETE FROM auth_attempts WHERE at <= {now_sql} - ?", [limits.window + limits.stale])
            store.execute(f"DELETE FROM auth_trusted WHERE expires <= {now_sql}")
            store.prune_revoked_credentials()  # serve's other short-lived AUTH state (revoked.py)
        now, verdict = _judge(store, client, login, limits, exempt)
        if verdict.status != "ok":
            return verdict
        attempt = store._insert("auth_attempts", {"client": client, "login": verdict.counted, "state": "pending",
                                                  "at": now})
        return Verdict("ok", attempt=attempt, counted=verdict.counted, trusted_for=verdict.trusted_for)


def settle(store: "Store", attempt: int, failed: bool, trust: tuple[str, str] | None = None) -> None:
    """End a guess: ``failed`` keeps its row as a failure from now on; else
    the row goes (its slot comes back) and ``trust`` (login, client), when
    given, is trusted for a day from now."""
    now_sql = EPOCH_NOW[store.engine]
    with store.write():
        if failed:
            store.execute(f"UPDATE auth_attempts SET state = 'failed', at = {now_sql} "
                          "WHERE id = ? AND state = 'pending'", [attempt])
        else:
            store.execute("DELETE FROM auth_attempts WHERE id = ?", [attempt])
            if trust is not None:
                _trust(store, trust[0], trust[1])


def trust(store: "Store", login: str, client: str) -> None:
    """Trust ``client`` for ``login`` for a day from now (it authenticated)."""
    with store.write():
        _trust(store, login, client)


def _trust(store: "Store", login: str, client: str) -> None:
    store.execute(f"INSERT INTO auth_trusted (login, client, expires) VALUES (?, ?, {EPOCH_NOW[store.engine]} + ?) "
                  "ON CONFLICT (login, client) DO UPDATE SET expires = excluded.expires",
                  [login, client, TRUSTED_FOR])


@dataclass(frozen=True)
class Counted:
    """One guess that counts now against a budget: ``state`` is ``failed``
    (a stale pending guess included) or ``pending`` (being verified);
    ``ends`` when a failure stops counting (seconds since the epoch)."""
    client: str
    login: str | None
    state: str
    ends: float | None


def counted(store: "Store", limits: Limits, client: str | None = None,
            login: str | None = None) -> tuple[float, list[Counted]]:
    """The store's time now, and the guesses that count now (against
    ``limits``' window), of ``client`` or ``login`` when given (either
    matches), else of everyone."""
    where, params = _matching(client, login)
    now = float(store.scalar(f"SELECT {EPOCH_NOW[store.engine]}"))
    rows = store.query(f"SELECT client, login, state, at FROM auth_attempts WHERE at > ? {where} ORDER BY at, id",
                       [now - limits.window - limits.stale, *params])
    guesses = []
    for row in rows:
        at = float(row["at"])
        if row["state"] == "pending" and at > now - limits.stale:
            guesses.append(Counted(row["client"], row["login"], "pending", None))
            continue
        ends = at + limits.window if row["state"] == "failed" else at + limits.stale + limits.window
        if ends > now:
            guesses.append(Counted(row["client"], row["login"], "failed", ends))
    return now, guesses


def clear(store: "Store", client: str | None, login: str | None) -> int:
    """Delete every row of ``client``'s and ``login``'s guesses (either
    matches; at least one given), counting or not; call inside ``write()``.
    Returns the number of rows deleted."""
    if client is None and login is None:
        raise ValueError("clear needs a client or a login")
    where, params = _matching(client, login)
    return store.execute(f"DELETE FROM auth_attempts WHERE 1 = 1 {where}", params)


def _matching(client: str | None, login: str | None) -> tuple[str, list[str]]:
    terms = [(column, value) for column, value in (("client", client), ("login", login)) if value is not None]
    if not terms:
        return "", []
    return "AND (" + " OR ".join(f"{column} = ?" for column, _ in terms) + ")", [value for _, value in terms]
