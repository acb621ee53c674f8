"""What holds ``smtpctl serve`` against hostile clients: the AUTH throttle,
the connection caps, and the accept loop that applies them. Bookkeeping on
the event loop's thread (no locks: asyncio runs one callback at a time), a
dict lookup per connection; the AUTH throttle counts guesses in the store,
so a fleet of nodes shares one budget (core/store/throttle.py); nothing
per message."""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from smtpctl.core.model.clients import client_key
from smtpctl.core.model.errors import InvalidInput, StoreError
from smtpctl.core.store import throttle
from smtpctl.servers.metrics import NOOP, Metrics
from smtpctl.servers.replies import TOO_MANY_CONNECTIONS
from smtpctl.servers.runtime import log_event

# File descriptors the process needs besides its connections: the
# listeners, the store (database, WAL, shared memory), the log, the event
# loop's own, about 15 in all, and Maildir files being written (the delivery
# pool has 32 threads). A refused connection is closed inside the accept
# call that took it (``Listener``), so it never holds one.
FD_RESERVE = 64
# The kernel's queue of connections not yet accepted: a burst of clients
# waits there instead of having SYNs dropped (a retry after 1, 3, 7 s...).
LISTEN_BACKLOG = 1024  # capped by net.core.somaxconn
ACCEPT_BATCH = 64  # accepts per wake-up, so a flood does not starve the sessions already admitted
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 50  # Postfix's smtpd_client_connection_count_limit


def file_budget() -> int | None:
    """Descriptors RLIMIT_NOFILE leaves for connections, or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(soft - FD_RESERVE, 0)


def default_max_connections(fds_per_connection: int) -> int:
    """1,000, or fewer when the open files limit cannot hold that many:
    past the cap a connection is refused; at EMFILE nobody is served."""
    budget = file_budget()
    if budget is None:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, budget // fds_per_connection))


def checked_max_connections(wanted: int | None, fds_per_connection: int) -> int:
    """``--max-connections``, or its default; raises ``InvalidInput`` when
    the open files limit cannot hold that many (the server would hit EMFILE,
    and then serve nobody, instead of refusing the extra connections)."""
    if wanted is None:
        return default_max_connections(fds_per_connection)
    budget = file_budget()
    if budget is not None and wanted * fds_per_connection > budget:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        raise InvalidInput(f"--max-connections {wanted} needs about {wanted * fds_per_connection + FD_RESERVE} "
                           f"open files, and the limit is {soft}: raise it (ulimit -n, systemd LimitNOFILE=) "
                           f"or lower --max-connections")
    return wanted


class Listener:
    """Accepts connections on a bound socket and counts each against the
    caps in the same step, before asyncio sees it.

    With ``loop.create_server`` a connection is counted only when its
    protocol starts, after the accept loop has taken a whole batch, so a
    flood briefly holds descriptors beyond any cap. Here a connection past a
    cap is answered (when ``clear_refusal``: there is no clear-text channel on
    an implicit-TLS port) and closed inside the call that accepted it; an
    admitted one goes to ``admitted(conn, key)``, which must release ``key``
    when the connection ends.
    """

    def __init__(self, sock: socket.socket, name: str, limits: "ConnectionLimits",
                 admitted: Callable[[socket.socket, str], None], clear_refusal: bool):
        self.sock, self.name, self.limits, self.admitted, self.clear_refusal = (
            sock, name, limits, admitted, clear_refusal)
        self.loop = asyncio.get_running_loop()
        self.closed = False

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                # Out of descriptors all the same (another part of the process, or the system):
                # pause this listener for a second, as asyncio does, and say so once.
                log_event("accept_paused", listener=self.name, error=errno.errorcode.get(exc.errno, str(exc.errno)))
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(1.0, self.start)
                return
            conn.setblocking(False)
            key = client_key(peer)
            refused = self.limits.admit(key)
            if refused is None:
                self.admitted(conn, key)
                continue
            if self.clear_refusal:
                try:
                    conn.send(TOO_MANY_CONNECTIONS[refused].encode() + b"\r\n")
                except OSError:
                    pass
            conn.close()
            log_event("connection_refused", listener=self.name,
                      peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer), cap=refused)


class ConnectionLimits:
    """Concurrent connections, in total and per client."""

    def __init__(self, total: int, per_client: int, metrics: Metrics = NOOP):
        self.total, self.per_client, self.metrics = total, per_client, metrics
        metrics.connections_from(lambda: self.open)
        self.open = 0
        self.by_client: dict[str, int] = {}

    def admit(self, key: str) -> str | None:
        """Count a new connection; None when admitted, else which cap refused it ("total" or "client")."""
        if self.open >= self.total:
            self.metrics.connection_refused("total")
            return "total"
        count = self.by_client.get(key, 0)
        if count >= self.per_client:
            self.metrics.connection_refused("client")
            return "client"
        self.by_client[key] = count + 1
        self.open += 1
        self.metrics.connection_accepted()
        return None

    def release(self, key: str) -> None:
        count = self.by_client.get(key, 0) - 1
        if count > 0:
            self.by_client[key] = count
        else:
            self.by_client.pop(key, None)
        self.open = max(self.open - 1, 0)


@dataclass
class Attempt:
    """A guess with a reserved slot: its row in the store, its client, and
    the login whose budget counts it (None: the client is trusted for the
    login, or there is no login)."""
    id: int
    client: str
    login: str | None
    settled: bool = False


# What ``AuthThrottle.begin`` answers when, while it waited for a slot, the
# password was proven right otherwise (the AUTH cache): no guess to count.
PROVEN = Attempt(id=0, client="", login=None, settled=True)

POLL_FIRST, POLL_MOST = 0.02, 0.5  # a guess waiting for a slot asks the store again after these (doubling)
PRUNE_EVERY = 30.0  # seconds between two prunings of the store's aged-out rows by one node
TRUST_RENEW = 3600.0  # a cache-verified login renews its client's trust once it is this old
BLOCKED_HERE_FOR = 5.0  # seconds a node refuses a client on its own memory before it asks the store again


class AuthThrottle:
    """Password guesses per client and per login, counted in the store when
    they start, so that N parallel connections, to one node or to a fleet of
    nodes on one store, get no more verifies than N sequential ones to one.

    The store decides (core/store/throttle.py): ``begin`` reserves a slot
    for a guess about to be verified, in one write transaction; a failure
    keeps it for ``window`` seconds, a success gives it back and trusts the
    client for that login for a day. A client may hold ``per_client`` slots,
    a login ``per_login`` (from all clients together, except clients trusted
    for it, so that strangers failing on a login cannot lock its own sender
    out). When guesses being verified hold the slots left, a new one waits in
    line for one to settle: a settle on this node wakes the first in line at
    once; the other nodes' settles are seen by asking the store again after
    20 ms, doubling to 0.5 s, once per (client, login) however many wait for
    it. When failures hold them all, it is refused, and everyone in line for
    that budget with it. Unknown logins are counted like known ones.

    What this node remembers is only a cheap first gate: a client the store
    refused, until the failure that filled its budget ages out or
    ``BLOCKED_HERE_FOR`` passes, whichever is sooner (``blocked_here``), is
    refused again without a store call; nothing is ever let through on local
    knowledge.
    """

    def __init__(self, worker: Any, per_client: int, per_login: int, window: float,
                 clock: Callable[[], float] = time.monotonic):
        self.worker, self.clock = worker, clock
        self.limits = throttle.Limits(per_client, per_login, window)
        self.blocked: dict[str, float] = {}  # client -> this node's clock when the store may admit it again
        self.waiters: dict[tuple[str, str], list[asyncio.Future]] = {}
        self.settling: set[asyncio.Task] = set()  # abandoned guesses' settles (strong references)
        self.full_at: dict[tuple[str, str | None], float] = {}  # (client, login) -> when last told "full"
        self._pruned = -PRUNE_EVERY
        self._swept = clock()

    # -- the first gate ----------------------------------------------------------
    def blocked_here(self, client: str) -> bool:
        """Did the store refuse this client lately, for failures that still count? (no store call)"""
        until = self.blocked.get(client)
        if until is None:
            return False
        if until > self.clock():
            return True
        del self.blocked[client]
        return False

    def note(self, client: str, verdict: Any) -> None:
        """Remember a refusal of the client's budget until its oldest counted failure ages out
        (a refusal of the login's budget is not remembered: it depends on the client's trust)."""
        now = self._sweep()
        if verdict.status == "refused" and verdict.refused_by == "client" and verdict.retry_in > 0:
            # At most BLOCKED_HERE_FOR: `smtpctl auth throttle clear` empties the store's rows, and
            # every node must see that soon, at one store read per refused client that often.
            self.blocked[client] = now + min(verdict.retry_in, BLOCKED_HERE_FOR)

    def _sweep(self) -> float:
        """Forget, now and then, what no longer applies: memory follows recent refusals and waits only."""
        now = self.clock()
        if now - self._swept > self.limits.window:
            self._swept = now
            for key in [k for k, until in self.blocked.items() if until <= now]:
                del self.blocked[key]
            for pair in [k for k, at in self.full_at.items() if now - at > POLL_MOST]:
                del self.full_at[pair]
        return now

    # -- on the store's thread -----------------------------------------------------
    def check(self, store: Any, client: str, login: str | None, exempt: bool = False) -> Any:
        """Read only: is the client (unless ``exempt``), or the login for this client, out of guesses?
        (``throttle.check``)"""
        return throttle.check(store, client, login, self.limits, exempt)

    # -- a guess ---------------------------------------------------------------------
    async def begin(self, client: str, login: str | None,
                    proven: Callable[[], bool] | None = None, exempt: bool = False) -> Attempt | None:
        """Reserve a slot for a guess; None when the client or the login is out
        of guesses (answer 454, verify nothing); ``PROVEN`` when ``proven()``
        turned true while waiting for a slot. ``exempt``: the client is in a
        trusted network, out of the per-client cap (never the per-login one).
        Raises ``StoreError`` (nothing counted) when the store cannot be written."""
        # A slot held by a dead node's guess frees (or counts as failed) within `stale`.
        deadline = self.clock() + self.limits.stale + 5.0
        pause = POLL_FIRST
        pair = (client, login)
        while True:
            if self.blocked_here(client):
                return None
            now = self._sweep()
            prune = now - self._pruned >= PRUNE_EVERY
            if prune:
                self._pruned = now
            verdict = await self.worker.call(throttle.reserve, client, login, self.limits, prune, exempt)
            keys = [("client", client)] + ([("login", verdict.counted)] if verdict.counted else [])
            if verdict.status == "ok":
                self.full_at.pop(pair, None)
                return Attempt(verdict.attempt, client, verdict.counted)
            if verdict.status == "refused" or self.clock() >= deadline:
                self.full_at.pop(pair, None)
                self.note(client, verdict)
                if verdict.status == "refused":  # everyone in line for this budget: refused (here, if known)
                    self._wake([("client", client)] if verdict.refused_by == "client" else keys[1:], every=True)
                return None
            self.full_at[pair] = self.clock()
            while True:
                woken = await self._wait(keys, pause)
                # Asked again when woken (a guess settled here), or when no guess of the same client and
                # login was told "full" within the pause (its answer is this one's: one poll, not one each).
                if woken or self.blocked_here(client) or self.clock() - self.full_at.get(pair, 0.0) >= pause:
                    break
            pause = min(pause * 2, POLL_MOST)
            if proven is not None and proven():
                return PROVEN

    async def succeeded(self, attempt: Attempt, login: str | None = None) -> None:
        """The guess was right: give its slot back, and trust this client for ``login``."""
        await self._settle(attempt, failed=False, login=login)

    async def failed(self, attempt: Attempt) -> None:
        """The guess was wrong: its slot counts until the window passes."""
        await self._settle(attempt, failed=True)

    def abandoned(self, attempt: Attempt) -> None:
        """The guess was left unsettled (the client went away mid-verify): it
        counts as failed, settled in the background."""
        if attempt.settled:
            return
        task = asyncio.ensure_future(self._settle(attempt, failed=True))
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)

    async def renew_trust(self, client: str, login: str, trusted_for: float) -> None:
        """A right password proven without a verify (the AUTH cache): trust
        the client for the login for a day again, once an hour at most."""
        if trusted_for > throttle.TRUSTED_FOR - TRUST_RENEW:
            return
        try:
            await self.worker.call(throttle.trust, login, client)
        except StoreError as exc:  # the trust ends a little sooner; the AUTH stands
            log_event("store_error", client=client, login=login, during="auth_trust", error=exc.message)

    async def _settle(self, attempt: Attempt, failed: bool, login: str | None = None) -> None:
        if attempt.settled:
            return
        attempt.settled = True
        trust = (login, attempt.client) if login is not None and not failed else None
        try:
            await self.worker.call(throttle.settle, attempt.id, failed, trust)
        except StoreError as exc:  # the row stays pending: it counts as failed once stale
            log_event("store_error", client=attempt.client, during="auth_settle", error=exc.message)
        finally:
            self._wake([("client", attempt.client)] + ([("login", attempt.login)] if attempt.login else []))

    async def _wait(self, keys: list[tuple[str, str]], timeout: float) -> bool:
        """Wait in line on ``keys`` until woken (True) or ``timeout`` passes (False)."""
        future = asyncio.get_running_loop().create_future()
        for key in keys:
            self.waiters.setdefault(key, []).append(future)
        try:
            await asyncio.wait([future], timeout=timeout)
            return future.done()
        finally:
            for key in keys:
                waiting = self.waiters.get(key)
                if waiting is not None and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self.waiters[key]

    def _wake(self, keys: list[tuple[str, str]], every: bool = False) -> None:
        """Wake the first guess waiting on each key (a settle frees one slot at most), or ``every`` one."""
        for key in keys:
            for future in self.waiters.get(key, ()):
                if not future.done():
                    future.set_result(None)
                    if not every:
                        break
