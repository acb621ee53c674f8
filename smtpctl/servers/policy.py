"""``smtpctl policy serve``: Postfix SMTP access policy delegation.

The protocol (Postfix SMTPD_POLICY_README): Postfix writes ``name=value``
lines ended by an empty line; we answer one ``action=...`` line and an empty
line, and keep the connection open for the next request.

Every protocol state gets an answer. A login that is not ours, or no login,
is ``DUNNO``. For our logins: a credential that is gone is refused in every
state; from MAIL on the envelope sender must be one of the account's own
(sender alignment); from DATA on ``recipient_count`` may not exceed
``max_recipients_per_message``; and at END-OF-MESSAGE the message is
admitted against the daily limit and recorded in one transaction (once per
``instance``), so the hard cap holds however many processes share the store.
"""

from __future__ import annotations

import asyncio
import grp
import os
import re
import socket
import stat
import struct
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from smtpctl.core.metering.live import Admission, admit_message, max_recipients, sender_allowed, sender_status
from smtpctl.core.model.errors import InvalidInput, SmtpctlError
from smtpctl.servers.metering import GroupCommit
from smtpctl.servers.metrics import NOOP, Metrics, close_endpoint, create_metrics, serve_endpoint
from smtpctl.servers.runtime import StoreWorker, event_line, log_event

MAX_REQUEST_BYTES = 64 * 1024  # Postfix's requests are about 1 KiB
MAX_ATTRIBUTES = 256  # Postfix 3.7 sends about 30
REQUEST_TIMEOUT = 100.0  # seconds for the rest of a started request (Postfix's smtpd_policy_service_timeout)
MAX_ECHO = 256  # the longest sender or login echoed back in a reply text
DEFAULT_SOCKET_MODE = 0o660
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL (Linux)

SENDER_STATES = frozenset({"MAIL", "RCPT", "DATA", "END-OF-MESSAGE"})  # the envelope sender is known
COUNT_STATES = frozenset({"DATA", "END-OF-MESSAGE"})  # recipient_count is the message's (SMTPD_POLICY_README)

DUNNO = "DUNNO"
DEFER_ERROR = "DEFER_IF_PERMIT 4.3.0 Policy service error; try again later"
DEFER_MALFORMED = "DEFER_IF_PERMIT 4.5.0 Malformed policy request"
TOO_MANY = "REJECT 5.5.3 Too many recipients"  # RFC 3463: X.5.3 too many recipients
REJECTS = {
    "revoked": "REJECT 5.7.1 SMTP credentials revoked: daily sending limit exceeded or removed; contact support",
    "over_limit": "REJECT 5.7.1 Daily sending limit exceeded; message refused; contact support",
    "too_many_recipients": TOO_MANY,
    "invalid": "REJECT 5.7.1 Message refused",
}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_INSTANCE = 128  # Postfix's instance is about 20 characters; it becomes the usage event's id


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


def parse_count(text: str | None) -> int | None:
    """``recipient_count`` as Postfix writes it (ASCII digits); None for
    anything else (negative, signed, non-numeric). An absurdly long number
    is returned as a number larger than any cap, not converted."""
    text = (text or "").strip() or "0"
    if not (text.isascii() and text.isdigit()):  # [0-9]+, not every Unicode digit
        return None
    return int(text) if len(text) <= 18 else 10**18


def _echo(text: str) -> str:
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


Meter = tuple[str, int, str]  # (login, recipients, source id): a message to admit


def decide(store: Any, attrs: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The action for one request, and the fields of its log line (``state``
    among them), in one call. Runs on the store thread; store errors
    propagate (the caller answers DEFER_IF_PERMIT)."""
    action, info, meter = precheck(store, attrs)
    if meter is None:
        return action, info
    return settle(admit_message(store, *meter), info)


def check_and_admit(store: Any, attrs: dict[str, str]) -> tuple[str, dict[str, Any], Admission | None]:
    """``precheck``, then the admission of its message if it has one, on the
    store thread inside the caller's transaction (group commit's step)."""
    action, info, meter = precheck(store, attrs)
    return action, info, admit_message(store, *meter) if meter is not None else None


def precheck(store: Any, attrs: dict[str, str]) -> tuple[str, dict[str, Any], Meter | None]:
    """Everything but the metering: the answer, or (at END-OF-MESSAGE) the
    message to admit, which the server hands to group commit."""
    action, info = _precheck(store, attrs)
    return action, info, info.pop("_meter", None)


def _precheck(store: Any, attrs: dict[str, str]) -> tuple[str, dict[str, Any]]:
    state = attrs.get("protocol_state", "").strip().upper()
    info: dict[str, Any] = {"state": state or "(none)"}
    if attrs.get("request") != "smtpd_access_policy":
        return DEFER_MALFORMED, {**info, "reason": "not an smtpd_access_policy request"}
    login = attrs.get("sasl_username", "").strip().lower()
    if not login:
        return DUNNO, {**info, "reason": "not authenticated"}
    info["login"] = login
    status = sender_status(store, login)
    if status == "unknown":
        return DUNNO, {**info, "reason": "not ours"}
    if status != "ok":
        return REJECTS[status], {**info, "reason": status}
    if state in SENDER_STATES and "sender" in attrs:  # Postfix always sends it; empty is the null sender
        sender = attrs["sender"].strip()
        if not sender_allowed(store, login, sender):
            # Postfix puts its own context first ("<rcpt>: Recipient address rejected: ").
            return (f"REJECT 5.7.1 Sender address <{_echo(sender)}> not owned by user {_echo(login)}",
                    {**info, "reason": "sender_mismatch", "sender": sender or "<>"})
    if state not in COUNT_STATES:
        return DUNNO, info
    recipients = parse_count(attrs.get("recipient_count"))
    if recipients is None:
        return DEFER_MALFORMED, {**info, "reason": "recipient_count is not a number",
                                 "recipient_count": attrs.get("recipient_count")}
    info["recipients"] = recipients
    if recipients > max_recipients(store):
        return TOO_MANY, {**info, "reason": "too_many_recipients", "metered": False}
    if state != "END-OF-MESSAGE":
        return DUNNO, info
    instance = attrs.get("instance") or attrs.get("queue_id") or ""
    if len(instance) > MAX_INSTANCE:
        return DEFER_MALFORMED, {**info, "reason": f"instance longer than {MAX_INSTANCE} characters"}
    if recipients == 0 or not instance:
        return DUNNO, {**info, "reason": "nothing to meter", "metered": False}
    info["queue_id"] = attrs.get("queue_id") or None
    info["_meter"] = (login, recipients, source_id(attrs, instance))
    return DUNNO, info


def source_id(attrs: dict[str, str], instance: str) -> str:
    """The message's id in the store, the same each time Postfix asks about
    it and unique across a fleet: ``instance`` is unique only within one
    Postfix host, so the id also names that host (``server_address``, the
    address its smtpd took the connection on) and the message's
    ``queue_id``. A request without them keeps the plain ``policy:INSTANCE``."""
    server, queue_id = attrs.get("server_address", "").strip(), attrs.get("queue_id", "").strip()
    if not server or not queue_id:
        return f"policy:{instance}"
    return f"policy:{server}/{queue_id[:MAX_INSTANCE]}/{instance}"


def settle(admission: Admission, info: dict[str, Any], metrics: Metrics = NOOP) -> tuple[str, dict[str, Any]]:
    """The answer to an END-OF-MESSAGE request once its message was admitted or refused."""
    for crossing in admission.crossings:
        log_event("limit_exceeded", account=crossing.account, day=crossing.day, emails=crossing.emails,
                  limit=crossing.limit, revoked=",".join(crossing.revoked_credentials))
        metrics.crossing()
    info.update(metered=admission.status == "accepted")
    if info["metered"]:  # not a duplicate instance: Postfix asked again about a message already counted
        metrics.accepted(admission.emails)
    if not admission.accepted:
        return REJECTS.get(admission.status, REJECTS["invalid"]), {**info, "reason": admission.status}
    # The message that crosses the limit is accepted (it is recorded and
    # billed); every later one is refused by admit_message.
    return DUNNO, info


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


Answer = tuple[str, dict[str, Any], "Admission | None"]


class PolicyServer:
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
        if attrs.get("protocol_state", "").strip().upper() == "END-OF-MESSAGE":
            future = self.meter.start(partial(check_and_admit, attrs=attrs),
                                      attrs.get("sasl_username", "").strip().lower())
        else:
            future = asyncio.ensure_future(self._check(attrs))
        future.add_done_callback(partial(self._settled, attrs, done))

    async def _check(self, attrs: dict[str, str]) -> Answer:
        action, info, meter = await self.worker.read(precheck, attrs)
        return action, info, await self.meter.admit(*meter) if meter is not None else None

    def _settled(self, attrs: dict[str, str], done: Callable[[str, dict[str, Any]], None],
                 future: asyncio.Future[Answer]) -> None:
        if future.cancelled():  # the server is stopping
            return
        try:
            action, info, admission = future.result()
            if admission is not None:
                action, info = settle(admission, info, self.metrics)
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


# -- the unix socket -----------------------------------------------------------


def parse_socket_mode(text: str) -> int:
    """``--socket-mode``: octal permission bits (``0660``, ``660``, ``0o660``).
    Raises ``InvalidInput`` for anything else or bits beyond 0777."""
    raw = text.strip().lower()
    digits = raw[2:] if raw.startswith("0o") else raw
    if not digits or not re.fullmatch(r"[0-7]{1,4}", digits):
        raise InvalidInput(f"--socket-mode takes octal permission bits such as 0660, not {text!r}")
    mode = int(digits, 8)
    if mode > 0o777:
        raise InvalidInput(f"--socket-mode {text}: only permission bits (at most 0777), no setuid/setgid/sticky")
    return mode


def parse_socket_group(text: str) -> int:
    """``--socket-group``: a group name or a numeric gid; the gid. Raises
    ``InvalidInput`` for a group that does not exist."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        return grp.getgrnam(raw).gr_gid
    except KeyError:
        raise InvalidInput(f"--socket-group: no group named {text!r}") from None


@dataclass(frozen=True)
class UnixListen:
    path: Path
    mode: int = DEFAULT_SOCKET_MODE
    gid: int | None = None


def check_unix(path: Path) -> None:
    """May a server listen at ``path``? Nothing there, or a stale socket
    (nobody answers on it), yes; a live socket (another server listens) or a
    file that is not a socket, no (``InvalidInput``); nor a path too long
    for a unix socket or in a folder that does not exist."""
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise InvalidInput(f"--listen unix:{path}: a unix socket path may be at most {MAX_UNIX_PATH} bytes")
    if not path.parent.is_dir():
        raise InvalidInput(f"--listen unix:{path}: the folder {path.parent} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InvalidInput(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidInput(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: nobody listens there
    except OSError as exc:
        raise InvalidInput(f"cannot use {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise InvalidInput(f"another server is listening on {path}")


def bind_unix(spec: UnixListen) -> socket.socket:
    """A listening unix socket at ``spec.path`` with its mode (and group) set
    before anyone can connect: it is bound under a temporary name beside the
    path, given its mode and group, then renamed onto the path (replacing a
    stale socket). Raises ``InvalidInput`` as ``check_unix`` does, or when
    the socket cannot be made."""
    path = spec.path
    check_unix(path)
    staging = path.with_name(f".smtpctl{os.getpid()}")  # short: it has the same path length limit
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staging.unlink(missing_ok=True)
        sock.bind(str(staging))
        os.chmod(staging, spec.mode)
        if spec.gid is not None:
            os.chown(staging, -1, spec.gid)
        sock.listen(128)
        os.rename(staging, path)
    except OSError as exc:
        sock.close()
        staging.unlink(missing_ok=True)
        what = f"give {path} to group {spec.gid}" if exc.errno == 1 and spec.gid is not None else f"listen on {path}"
        raise InvalidInput(f"cannot {what}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def serve_policy(store_path: Path, actor: str, listen: str, stop: asyncio.Event,
                       unix: UnixListen | None = None, sockets: list[socket.socket] | None = None,
                       metrics_sockets: list[socket.socket] | None = None) -> None:
    """Listen on ``listen`` (HOST:PORT), or on the unix socket ``unix``, until
    ``stop`` is set; with ``metrics_sockets`` (bound already) serve the
    metrics there. Raises ``InvalidInput`` when it cannot listen."""
    from smtpctl.servers.runtime import listen_sockets, parse_address

    worker = StoreWorker(store_path, actor)
    loop = asyncio.get_running_loop()
    try:
        await worker.call(lambda store: None)
        metrics = create_metrics("policy") if metrics_sockets else NOOP  # imports prometheus-client
        policy = PolicyServer(worker, metrics)
        scrapes = await serve_endpoint(metrics, metrics_sockets) if metrics_sockets else []
        inode = None
        if unix is not None:
            sock = bind_unix(unix)
            inode = os.stat(unix.path).st_ino
            servers = [await loop.create_unix_server(policy.connection, sock=sock)]
            address = f"unix:{unix.path}"
            extra = {"mode": f"{unix.mode:04o}", "gid": unix.gid}
        else:
            if sockets is None:
                [sockets] = listen_sockets([parse_address(listen, "--listen")])
            # A name such as localhost may give one socket per address family.
            servers = [await loop.create_server(policy.connection, sock=s) for s in sockets]
            bound = sockets[0].getsockname()
            address = f"{bound[0]}:{bound[1]}"
            extra = {}
        log_event("listening", listener="policy", address=address, **extra)
        try:
            await stop.wait()
        finally:
            log_event("stopping")
            close_endpoint(scrapes)
            for server in servers:
                server.close()
            for server in servers:
                await server.wait_closed()
            policy.close()
            if unix is not None:
                try:  # remove our socket, not one a successor has put there since
                    if os.stat(unix.path).st_ino == inode:
                        os.unlink(unix.path)
                except OSError:
                    pass
    finally:
        worker.close()
    log_event("stopped")
