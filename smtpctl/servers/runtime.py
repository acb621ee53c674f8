"""What both servers share: structured log lines, the store on its own
thread, listen addresses bound all or nothing, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import errno
import queue
import re
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from smtpctl.core.model.clock import iso_z
from smtpctl.core.model.errors import CannotListen, InvalidInput
from smtpctl.core.store import Store
from smtpctl.core.store.dsn import is_dsn

T = TypeVar("T")


_STAMP: list[Any] = [0, ""]  # (a second, its now_iso() text): a line per request formats its time once a second


def _stamp() -> str:
    second = int(time.time())
    if second != _STAMP[0]:
        _STAMP[:] = [second, iso_z(datetime.fromtimestamp(second, timezone.utc))]
    return _STAMP[1]


_QUOTED = re.compile('[ "=]')  # a value with one of these is written in quotes


def log_event(event: str, **fields: Any) -> None:
    """One line per event on stderr: ``ts=... event=... key=value``. Never a secret."""
    sys.stderr.write(event_line(event, **fields))
    sys.stderr.flush()


def event_line(event: str, **fields: Any) -> str:
    """The line ``log_event`` writes, newline included (for a caller that writes several at once)."""
    parts = [f"ts={_stamp()}", f"event={event}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or _QUOTED.search(text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts) + "\n"


READERS = 2  # PostgreSQL: reader threads, each with its own connection


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # its caller went away (cancelled): the call ran all the same
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Lanes:
    """Up to ``size`` threads that run blocking calls for the event loop (the
    store, an fsync, a relay's socket), started as needed.

    ``run`` is ``loop.run_in_executor`` with a leaner hand-off: one queue put
    there and one ``call_soon_threadsafe`` back, no ``concurrent.futures``
    future, locks or callbacks between. On this 2-core VM a round trip cost
    ~33 us of CPU against ~51 us through a ``ThreadPoolExecutor`` (medians)
    (measured when this was chosen; ``git show 8c95e20:benchmarks/hops.py``), and a message of ``serve`` takes two or
    three. A call whose caller is cancelled still runs to its end, as in an
    executor once it started.
    """

    def __init__(self, size: int, name: str):
        self.size, self.name = size, name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call (under _lock)
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on one of the threads; its answer or its exception."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put((loop, future, fn, args))
        return await future

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on one of the threads, nobody waiting for it; raises
        ``RuntimeError`` once shut down."""
        self._put((None, None, fn, args))

    def _put(self, call: tuple) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: shut down")
            if self._idle:
                self._idle -= 1  # claimed: the next call does not count on this thread
            elif len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put(call)

    def _work(self) -> None:
        get, lock = self._queue.get, self._lock
        while True:
            call = get()
            if call is None:
                return
            loop, future, fn, args = call
            try:
                answer, ok = fn(*args), True
            except BaseException as exc:  # noqa: BLE001 - the caller's to handle, as run_in_executor does
                answer, ok = exc, False
            if future is not None:
                try:
                    loop.call_soon_threadsafe(_settle, future, ok, answer)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass
            del call, future, answer, fn, args
            with lock:
                self._idle += 1

    def shutdown(self, wait: bool = True) -> None:
        """No more calls; each thread ends after the calls already queued."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()


class StoreWorker:
    """Runs store calls on one thread that owns its own connection, so the
    event loop never waits on the store and no connection crosses threads.

    On PostgreSQL, reads that need no lock (``read``: the AUTH credential,
    MAIL's envelope check, the policy checks before END-OF-MESSAGE) run on
    ``READERS`` more threads, each with its own connection, so they do not
    queue behind a group commit's write batch (each of its statements a
    round trip to the server). On SQLite everything stays on the one thread:
    a read there is a few microseconds of the same CPU, no round trip."""

    def __init__(self, path: Path, actor: str, readers: int = READERS):
        self.path, self.actor = path, actor
        self._pool = Lanes(1, "smtpctl-store")
        self._store: Store | None = None
        self._readers = (Lanes(readers, "smtpctl-read")
                         if readers and is_dsn(str(path)) else None)
        self._local = threading.local()
        self._reader_stores: list[Store] = []
        self._lock = threading.Lock()

    def _run(self, fn: Callable[..., T], args: tuple) -> T:
        if self._store is None:
            self._store = Store.open(self.path, actor=self.actor)
        return fn(self._store, *args)

    def _run_read(self, fn: Callable[..., T], args: tuple) -> T:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store.open(self.path, actor=self.actor)
            with self._lock:
                self._reader_stores.append(store)
        return fn(store, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._pool.run(self._run, fn, args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``call`` for ``fn`` that only reads (and takes no lock): on a reader
        thread on PostgreSQL, on the store thread on SQLite."""
        if self._readers is None:
            return await self.call(fn, *args)
        return await self._readers.run(self._run_read, fn, args)

    def close(self) -> None:
        def shut() -> None:
            if self._store is not None:
                self._store.close()

        if self._readers is not None:
            self._readers.shutdown(wait=True)
            for store in self._reader_stores:
                store.close()
        self._pool.submit(shut)
        self._pool.shutdown(wait=True)  # after the calls queued before it: shut() closes the store last


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise InvalidInput(f"{option} takes HOST:PORT, not {text!r}")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise InvalidInput(f"{option}: port must be a number, not {port!r}") from None
    if not 0 <= number <= 65535:
        raise InvalidInput(f"{option}: port {number} is out of range")
    return host, number


def show_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_sockets(addresses: list[tuple[str, int]], backlog: int = 100) -> list[list[socket.socket]]:
    """Bind and listen on every address, all or nothing: one list of sockets
    per address, in order (a name such as ``localhost`` may give one socket
    per address family, as ``asyncio`` does). Hand them to
    ``loop.create_server(sock=...)``. Raises ``CannotListen`` naming the
    address and the cause after closing every socket already bound, so a
    server that cannot take all its addresses takes none."""
    bound: list[list[socket.socket]] = []
    try:
        for host, port in addresses:
            bound.append(_listen(host, port, backlog))
    except CannotListen:
        for sockets in bound:
            for sock in sockets:
                sock.close()
        raise
    return bound


def _listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    where = show_address(host, port)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {where}: {exc.strerror.lower()}") from None
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio: a restart is not "in use"
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CannotListen(f"cannot listen on {where}: {_cause(exc, port)}") from None
    return sockets


def _cause(exc: OSError, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno in (errno.EACCES, errno.EPERM):
        if 0 < port < 1024:
            return "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
        return "permission denied"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this host has no such address"
    return (exc.strerror or type(exc).__name__).lower()


def run_until_stopped(main: Callable[[asyncio.Event], Any]) -> None:
    """Run ``main(stop)`` on a new loop until SIGTERM or SIGINT sets ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
