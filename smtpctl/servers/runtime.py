"""What both servers share: structured log lines, the store on its own
thread, listen addresses bound all or nothing, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from smtpctl.core.clock import now_iso
from smtpctl.core.errors import CannotListen, InvalidInput
from smtpctl.core.store import Store

T = TypeVar("T")


def log_event(event: str, **fields: Any) -> None:
    """One line per event on stderr: ``ts=... event=... key=value``. Never a secret."""
    parts = [f"ts={now_iso()}", f"event={event}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    sys.stderr.write(" ".join(parts) + "\n")
    sys.stderr.flush()


class StoreWorker:
    """Runs store calls on one thread that owns its own connection, so the
    event loop never waits on SQLite and no connection crosses threads."""

    def __init__(self, path: Path, actor: str):
        self.path, self.actor = path, actor
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smtpctl-store")
        self._store: Store | None = None

    def _run(self, fn: Callable[..., T], args: tuple) -> T:
        if self._store is None:
            self._store = Store.open(self.path, actor=self.actor)
        return fn(self._store, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, fn, args)

    def close(self) -> None:
        def shut() -> None:
            if self._store is not None:
                self._store.close()

        self._pool.submit(shut).result()
        self._pool.shutdown(wait=True)


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
