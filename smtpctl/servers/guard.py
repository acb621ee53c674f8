"""What holds ``smtpctl serve`` against hostile clients: the AUTH throttle,
the connection caps, and the accept loop that applies them. Bookkeeping on
the event loop's thread (no locks: asyncio runs one callback at a time), a
dict lookup per connection or AUTH, nothing per message."""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from smtpctl.core.errors import InvalidInput
from smtpctl.servers.metrics import NOOP, Metrics
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
DEFAULT_MAX_AUTH_FAILURES = 5
DEFAULT_MAX_AUTH_FAILURES_PER_LOGIN = 10
DEFAULT_FAILURE_WINDOW = 300.0
TRUSTED_FOR = 86400.0  # a client that authenticated as a login passes that login's cap for a day

TOO_MANY_AUTH = "454 4.7.0 Too many failed authentications; try again later"
TOO_MANY_CONNECTIONS = {
    "client": "421 4.7.0 Too many connections from your address; try again later",
    "total": "421 4.7.0 Too many connections; try again later",
}


def client_key(peer: Any) -> str:
    """The client a cap counts: its IPv4 address, or its IPv6 /64 (one
    subscriber's network: counting single IPv6 addresses would hand a client
    2^64 fresh budgets)."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


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
    client: str
    login: str | None
    settled: bool = False


class AuthThrottle:
    """Password guesses per client and per login, counted when an attempt
    starts, so that N parallel connections get no more verifies than N
    sequential ones.

    An attempt holds a slot while it is verified; a failure keeps its slot
    for ``window`` seconds; a success gives it back. A client may hold
    ``per_client`` slots, a login ``per_login`` (from all clients together),
    except from a client that authenticated as that login within a day, so
    that strangers failing on a login cannot lock its own sender out. When
    the slots are all held by attempts still being verified, a new attempt
    waits for one to settle (a sender opening ten sessions at once is
    served, five at a time); when failures hold them all, it is refused.
    Unknown logins are counted like known ones: a refusal reveals nothing.
    """

    def __init__(self, per_client: int, per_login: int, window: float,
                 clock: Callable[[], float] = time.monotonic):
        self.per_client, self.per_login, self.window, self.clock = per_client, per_login, window, clock
        self.clients: dict[str, _Slots] = {}
        self.logins: dict[str, _Slots] = {}
        self.trusted: dict[tuple[str, str], float] = {}
        self._swept = clock()

    async def begin(self, client: str, login: str | None) -> Attempt | None:
        """Reserve a guess; None when the client or the login is out of guesses (answer 454, verify nothing)."""
        while True:
            now = self.clock()
            if now - self._swept > self.window:
                self._sweep(now)
            cutoff = now - self.window
            counted = login is not None and self.trusted.get((login, client), 0.0) < now
            # Looked up, not created: a refused attempt must not grow the tables (random logins).
            by_client = self.clients.get(client)
            by_login = self.logins.get(login) if counted else None
            full = None
            for slots, limit in ((by_client, self.per_client), (by_login, self.per_login)):
                if slots is None:
                    continue
                if slots.recent_failures(cutoff) >= limit:
                    return None
                if slots.recent_failures(cutoff) + slots.pending >= limit:
                    full = slots
            if full is None:
                if by_client is None:
                    by_client = self.clients[client] = _Slots()
                by_client.pending += 1
                if counted:
                    if by_login is None:
                        by_login = self.logins[login] = _Slots()
                    by_login.pending += 1
                return Attempt(client, login if counted else None)
            waiter = asyncio.get_running_loop().create_future()
            full.waiters.append(waiter)
            await waiter  # an attempt in flight settled: look again

    def succeeded(self, attempt: Attempt, login: str | None = None) -> None:
        """The guess was right: give its slots back, and trust this client for ``login``."""
        if self._settle(attempt, failed=False) and login is not None:
            self.trusted[(login, attempt.client)] = self.clock() + TRUSTED_FOR

    def failed(self, attempt: Attempt) -> None:
        """The guess was wrong (or abandoned): its slots count until the window passes."""
        self._settle(attempt, failed=True)

    def _settle(self, attempt: Attempt, failed: bool) -> bool:
        if attempt.settled:
            return False
        attempt.settled = True
        now = self.clock()
        for table, key in ((self.clients, attempt.client), (self.logins, attempt.login)):
            slots = table.get(key) if key is not None else None
            if slots is None:
                continue
            slots.pending -= 1
            if failed:
                slots.failures.append(now)
            waiters, slots.waiters = slots.waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        return True

    def _sweep(self, now: float) -> None:
        """Forget what has aged out, so memory follows recent attempts only."""
        self._swept = now
        cutoff = now - self.window
        for table in (self.clients, self.logins):
            idle = [k for k, s in table.items() if not s.pending and not s.waiters and not s.recent_failures(cutoff)]
            for key in idle:
                del table[key]
        for key in [k for k, until in self.trusted.items() if until < now]:
            del self.trusted[key]


class _Slots:
    __slots__ = ("pending", "failures", "waiters")

    def __init__(self) -> None:
        self.pending = 0
        self.failures: collections.deque[float] = collections.deque()
        self.waiters: list[asyncio.Future] = []

    def recent_failures(self, cutoff: float) -> int:
        failures = self.failures
        while failures and failures[0] < cutoff:
            failures.popleft()
        return len(failures)
