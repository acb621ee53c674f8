"""The policy protocol: a connection's bytes split into requests, each
answered in order, one ``action=...`` line and an empty line each
(Postfix SMTPD_POLICY_README). What each answer is: ``decision``."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import sys
from functools import partial
from typing import Any, Callable

from smtpctl.core.model.errors import SmtpctlError
from smtpctl.servers.metering import GroupCommit
from smtpctl.servers.metrics import NOOP, Metrics
from smtpctl.servers.policy.decision import Answer, check, check_and_admit, login_of, metered, settle
from smtpctl.servers.replies import DEFER_ERROR, DEFER_MALFORMED, DUNNO
from smtpctl.servers.runtime import StoreWorker, event_line, log_event

MAX_REQUEST_BYTES = 64 * 1024  # Postfix's requests are about 1 KiB
MAX_ATTRIBUTES = 256  # Postfix 3.7 sends about 30
REQUEST_TIMEOUT = 100.0  # seconds for the rest of a started request (Postfix's smtpd_policy_service_timeout)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class MalformedRequest(ValueError):
    """A request block that is not ``name=value`` lines (answered DEFER_IF_PERMIT 4.5.0)."""


def parse_request(block: list[str]) -> dict[str, str]:
    """``name=value`` lines to a dict (the value may itself contain ``=``;
    empty lines are skipped). Raises ``MalformedRequest`` for a line with no
    ``=`` or an empty name."""
    attrs = {}
    control = _CONTROL.search("=".join(block))  # one search for the whole request: Postfix sends none
    for line in block:
        if not line:
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise MalformedRequest("a line without name=value")
        if control and _CONTROL.search(line):  # one would reach our log and reply lines
            raise MalformedRequest(f"a control character in {name[:40]!r}")
        attrs[name] = value
    return attrs


class _Refused(Exception):
    """A request we will not read to its end: the connection is closed."""


class RequestSplitter:
    """A connection's bytes, split into requests as they arrive (``feed``,
    then ``take`` until it answers None). Each request is its ``name=value``
    lines up to an empty one, decoded (8-bit bytes replaced, never refused:
    Postfix may pass a HELO name or a certificate subject in them). Raises
    ``_Refused`` for a line longer than ``MAX_REQUEST_BYTES``, a request
    larger than that or of more than ``MAX_ATTRIBUTES`` lines."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.lines: list[str] = []  # the lines of the request begun
        self.size = 0

    @property
    def started(self) -> bool:
        """A request is begun (a line of it read, or a part of one waiting): a
        close now cuts it short, and its deadline runs once a line is read."""
        return bool(self.lines or self.size or self.buffer)

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def take(self) -> list[str] | None:
        """The next whole request, or None until more bytes come."""
        buffer = self.buffer
        if not self.lines and not self.size:
            # Postfix's request: one block of "\n" lines, plain ASCII, in one piece.
            end = buffer.find(b"\n\n")
            if 0 < end <= MAX_REQUEST_BYTES - 2 and buffer[0] != 10:
                block = bytes(buffer[:end])
                if block.isascii() and b"\r" not in block and block.count(b"\n") < MAX_ATTRIBUTES:
                    del buffer[:end + 2]
                    return block.decode("ascii").split("\n")
        start = 0
        try:
            while True:
                newline = buffer.find(b"\n", start)
                if newline < 0:
                    if len(buffer) - start > MAX_REQUEST_BYTES:
                        raise _Refused(f"request line longer than {MAX_REQUEST_BYTES} bytes")
                    return None
                if newline - start > MAX_REQUEST_BYTES:
                    raise _Refused(f"request line longer than {MAX_REQUEST_BYTES} bytes")
                self.size += newline + 1 - start
                if self.size > MAX_REQUEST_BYTES:
                    raise _Refused(f"request larger than {MAX_REQUEST_BYTES} bytes")
                text = bytes(buffer[start:newline]).rstrip(b"\r\n")
                start = newline + 1
                if not text:
                    lines, self.lines, self.size = self.lines, [], 0
                    return lines
                if len(self.lines) >= MAX_ATTRIBUTES:
                    raise _Refused(f"request with more than {MAX_ATTRIBUTES} attributes")
                self.lines.append(text.decode("utf-8", errors="replace"))
        finally:
            del buffer[:start]


def _peer(transport: asyncio.BaseTransport) -> dict[str, Any]:
    name = transport.get_extra_info("peername")
    if name:
        return {"peer": f"{name[0]}:{name[1]}"}
    sock = transport.get_extra_info("socket")
    fields: dict[str, Any] = {"peer": "unix"}
    try:  # who is on the other end of a unix socket (Linux SO_PEERCRED: pid, uid, gid)
        pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
        fields.update(peer_pid=pid, peer_uid=uid)
    except (AttributeError, OSError):
        pass
    return fields


class PolicyServer:
    """The service's side of every connection: each request answered from
    the store (``decision``), END-OF-MESSAGE's through group commit, and
    each answer logged before it is sent."""

    def __init__(self, worker: StoreWorker, metrics: Metrics = NOOP):
        self.worker, self.metrics = worker, metrics
        self.meter = GroupCommit(worker, metrics)
        self.connections: set[PolicyConnection] = set()
        self.outbox: list[tuple[PolicyConnection, str, bytes]] = []  # answers to log and send (send)
        metrics.connections_from(lambda: len(self.connections))

    def connection(self) -> "PolicyConnection":
        """A protocol for one accepted connection (``loop.create_server``'s factory)."""
        return PolicyConnection(self)

    def ask(self, block: list[str], done: Callable[[str, dict[str, Any]], None]) -> None:
        """Answer one request: ``done(action, log fields)``, at once for a
        malformed request, else when the store has answered. END-OF-MESSAGE is
        a step of the next group commit (the checks and the metering in one
        store hop) and needs no task; the other states read the store."""
        try:
            attrs = parse_request(block)
        except MalformedRequest as exc:
            return done(DEFER_MALFORMED, {"reason": str(exc)})
        future: asyncio.Future[Answer]
        if metered(attrs):
            future = self.meter.start(partial(check_and_admit, attrs=attrs), login_of(attrs))
        else:
            future = asyncio.ensure_future(self.worker.read(check, attrs))
        future.add_done_callback(partial(self._settled, attrs, done))

    def _settled(self, attrs: dict[str, str], done: Callable[[str, dict[str, Any]], None],
                 future: asyncio.Future[Answer]) -> None:
        if future.cancelled():  # the server is stopping
            return
        try:
            action, info = settle(future.result(), self.metrics)
        except Exception as exc:  # never leave Postfix hanging: a temporary failure, logged once
            action, info = DEFER_ERROR, {"state": attrs.get("protocol_state") or "(none)",
                                         "error": type(exc).__name__,
                                         "message": exc.message if isinstance(exc, SmtpctlError) else str(exc)}
        done(action, info)

    def count(self, verb: str, action: str, info: dict[str, Any]) -> None:
        self.metrics.policy_request(verb, info.get("state", "(none)"))
        if action == DEFER_ERROR:
            self.metrics.refused("store_error")
        elif action == DEFER_MALFORMED:
            self.metrics.refused("malformed")
        elif verb != DUNNO:
            self.metrics.refused(info.get("reason", "invalid"))

    def send(self, connection: "PolicyConnection", line: str, reply: bytes) -> None:
        """Log an answer, then send it. The answers of one pass of the event
        loop (a group commit's batch is answered in one) share one write to
        the log, each line still written before its reply leaves."""
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self._send_all)
        self.outbox.append((connection, line, reply))

    def _send_all(self) -> None:
        outbox, self.outbox = self.outbox, []
        sys.stderr.write("".join(line for _, line, _ in outbox))
        sys.stderr.flush()
        for connection, _, reply in outbox:
            connection.replied(reply)

    def close(self) -> None:
        """Close every connection (at stop, after the listeners)."""
        for connection in list(self.connections):
            connection.transport.close()


class PolicyConnection(asyncio.Protocol):
    """One client: its requests answered one at a time, in order, each as
    its bytes complete it (no task and no await per line). Postfix keeps a
    connection open between requests, so there is no deadline before a
    request's first line; from then on the rest must come within
    ``REQUEST_TIMEOUT``. A client that does not read its answers is not
    read either: its next request waits until the transport has room, and
    while one is answered at most ``2 * MAX_REQUEST_BYTES`` more are read."""

    transport: asyncio.Transport

    def __init__(self, server: PolicyServer):
        self.server = server
        self.requests = RequestSplitter()
        self.peer: dict[str, Any] = {}
        self.busy = False  # a request is being answered
        self.full = False  # the transport's buffer is over its high-water mark
        self.eof = False
        self.closed = False
        self.reading = True
        self.stepping = False  # inside _next
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = _peer(transport)
        self.server.connections.add(self)
        self.server.metrics.connection_accepted()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._cancel_deadline()

    def data_received(self, data: bytes) -> None:
        self.requests.feed(data)
        self._next()

    def eof_received(self) -> bool:
        self.eof = True
        self._next()
        return True  # a request being answered still gets its answer; _next closes after it

    def pause_writing(self) -> None:
        self.full = True

    def resume_writing(self) -> None:
        self.full = False
        self._next()

    def _next(self) -> None:
        """Answer the waiting requests in turn while each is answered at once
        (a malformed one), until one waits for the store or none is whole."""
        if self.stepping:
            return  # _answered within this loop: it goes on by itself
        self.stepping = True
        try:
            while not (self.busy or self.full or self.closed or self.transport.is_closing()):
                try:
                    block = self.requests.take()
                except _Refused as exc:
                    return self._refuse(str(exc))
                if not self.reading:
                    self.reading = True
                    self.transport.resume_reading()
                if block is None:
                    if self.eof:
                        if self.requests.started:
                            return self._refuse("request cut short by the client")
                        self.transport.close()  # Postfix closed the connection
                    elif self.requests.lines and self.deadline is None:
                        self.deadline = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, self._late)
                    return
                self._cancel_deadline()
                self.busy = True
                self.server.ask(block, self._answered)
            if self.reading and len(self.requests.buffer) > 2 * MAX_REQUEST_BYTES:
                self.reading = False  # answer the ones read first
                self.transport.pause_reading()
        finally:
            self.stepping = False

    def _answered(self, action: str, info: dict[str, Any]) -> None:
        verb = action.split()[0]
        self.server.count(verb, action, info)
        self.server.send(self, event_line("policy", action=verb, **info), f"action={action}\n\n".encode())

    def replied(self, reply: bytes) -> None:
        """Send the answer (logged already), and go on to the next request."""
        if not self.transport.is_closing():  # a client gone meanwhile: its message is metered all the same
            self.transport.write(reply)
        self.busy = False
        self._next()

    def _late(self) -> None:
        self.deadline = None
        if not self.busy:
            self._refuse(f"request not finished within {REQUEST_TIMEOUT:g} seconds")

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _refuse(self, error: str) -> None:
        log_event("policy_refused", **self.peer, error=error, note="connection closed")
        self._cancel_deadline()
        self.transport.close()
