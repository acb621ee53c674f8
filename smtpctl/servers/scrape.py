"""The ``--metrics`` endpoint of both servers: ``GET /metrics`` in
Prometheus' text format, on the server's own loop, serving sockets bound by
``runtime.listen_sockets`` (so a port in use is ``CannotListen``, exit 9,
before anything starts). Anything else gets 404 or 405; a request head
larger than 8 KiB, or slower than 10 seconds, is dropped.

Connections are accepted by ``guard.Listener``, as ``serve``'s own: at most
``MAX_SCRAPES`` at once (``MAX_SCRAPES_PER_CLIENT`` from one address), each
refused one closed in the call that accepted it, and an accept that runs out
of descriptors pauses the listener with one log line. A flood of 400
connections at ``ulimit -n 256`` took every descriptor of the process
(Maildir deliveries failed with 451) and logged ~20,000 tracebacks (issue 23);
these few connections fit in the descriptors ``guard.FD_RESERVE`` keeps.
"""

from __future__ import annotations

import asyncio
import socket

from smtpctl.servers.guard import ConnectionLimits, Listener
from smtpctl.servers.metrics import Metrics
from smtpctl.servers.runtime import log_event

MAX_HEAD = 8192
READ_TIMEOUT = 10.0
MAX_SCRAPES = 8  # a scraper or two, and an operator's curl: within guard.FD_RESERVE
MAX_SCRAPES_PER_CLIENT = 4


class Endpoint:
    """The listeners of ``--metrics`` and the scrapes being answered."""

    def __init__(self, metrics: Metrics, sockets: list[socket.socket]):
        self.metrics = metrics
        self.limits = ConnectionLimits(MAX_SCRAPES, MAX_SCRAPES_PER_CLIENT)
        self.loop = asyncio.get_running_loop()
        self.scrapes: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones
        self.listeners = [Listener(sock, "metrics", self.limits, self._admitted, clear_refusal=False)
                          for sock in sockets]

    def start(self) -> None:
        for listener in self.listeners:
            listener.start()
            log_event("listening", listener="metrics", address=listener.address,
                      note=_everyone(listener.address))

    def _admitted(self, conn: socket.socket, key: str) -> None:
        task = self.loop.create_task(self._scrape(conn, key))
        self.scrapes.add(task)
        task.add_done_callback(self.scrapes.discard)

    async def _scrape(self, conn: socket.socket, key: str) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD)
        except OSError:
            conn.close()
            self.limits.release(key)
            return
        try:
            await self._answer(reader, writer)
        finally:
            writer.close()
            self.limits.release(key)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET /metrics\n", "text/plain; charset=utf-8"
            elif path != "/metrics":
                status, body, kind = "404 Not Found", b"GET /metrics\n", "text/plain; charset=utf-8"
            else:
                status, (body, kind) = "200 OK", self.metrics.exposition()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a scraper that went away, or a stranger: nothing to answer

    def close(self) -> None:
        # Not waiting for the scrapes: a slow one would hold every stop up to READ_TIMEOUT.
        for listener in self.listeners:
            listener.close()
        for task in list(self.scrapes):
            task.cancel()


def _everyone(address: str) -> str | None:
    """A note when the endpoint listens on every interface (``0:9100``, ``*:9100``, ``[::]:9100``)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host in ("0.0.0.0", "::"):
        return "all interfaces: anyone who can reach this host can read the metrics"
    return None


async def serve_endpoint(metrics: Metrics, sockets: list[socket.socket]) -> Endpoint:
    """Serve ``GET /metrics`` on ``sockets`` (bound already); log each address as ``listener=metrics``."""
    endpoint = Endpoint(metrics, sockets)
    endpoint.start()
    return endpoint
