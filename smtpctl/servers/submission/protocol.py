"""The SMTP side of ``smtpctl serve``: aiosmtpd's protocol, with its known
traps handled:
- under implicit TLS (port 465) aiosmtpd does not know the session is
  encrypted, so with ``auth_require_tls`` it would never offer AUTH
  (aio-libs/aiosmtpd#274, #281): those listeners pass
  ``auth_require_tls=False`` and check the transport really is TLS;
- its AUTH LOGIN challenges end in a NUL byte that breaks some clients
  (#566): we send the customary ``Username:`` / ``Password:``;
- its authenticator is called synchronously, and an argon2 verify costs
  ~40 ms: we verify on worker threads and keep the event loop free;
- it has no connection caps: ``guard.Listener`` counts connections in the
  call that accepts them (on the implicit-TLS port before the handshake,
  see ``ImplicitTLSGate``), and ``guard.AuthThrottle`` counts AUTH attempts
  when they start, in the store, so a fleet of nodes shares one budget;
- its address parser defines a ``typing.Protocol`` class on every MAIL and
  RCPT: ``SubmissionSMTP._getaddr`` parses the same way without it, and
  answers a plain ``<local@domain>`` without the standard library's parser;
- it cancels and makes a timeout timer on every command line:
  ``SubmissionSMTP._reset_timeout`` moves one deadline instead;
- its DATA holds a whole body in memory, and joins it into one more copy:
  ``SubmissionSMTP.smtp_DATA`` receives into a ``Body`` (servers/body.py),
  spooled to disk past ``--spool-above``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, Callable

from aiosmtpd.smtp import SMTP, AuthResult, Session

from smtpctl.servers.body import Body, Spool
from smtpctl.servers.guard import ConnectionLimits
from smtpctl.servers.runtime import log_event

_DEFERRED = AuthResult(success=False, handled=True)
# Command lines a client may send before it authenticates (EHLO, STARTTLS, EHLO, AUTH and its exchange take
# about six), as Postfix's smtpd_junk_command_limit bounds NOOP/RSET/VRFY: past it the session is closed, so
# keep-alives cannot hold a pre-AUTH slot (issue 23).
MAX_PRE_AUTH_COMMANDS = 20
TOO_MANY_PRE_AUTH = b"421 4.7.0 Too many commands before authentication; closing\r\n"
# aiosmtpd's DATA replies, unchanged
_DATA_GO_AHEAD = "354 End data with <CR><LF>.<CR><LF>"
_LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
_TOO_MUCH_DATA = "552 Error: Too much mail data"


# What nearly every client sends: ``<local@domain>``, alone or followed by its
# parameters, the local part a dot-atom (RFC 5322 atext) and the domain plain
# labels. For these the standard library's parser answers exactly the text
# between the brackets and the parameters after the blanks (it takes blanks
# and a comment after ``>`` as CFWS: a comment goes the slow way), at a tenth
# of its cost; anything else is parsed by it.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+(?=[^ \t(])|\Z)")


class SubmissionSMTP(SMTP):
    """One client's SMTP session. Its ``handler`` is a ``SubmissionHandler``
    (handler.py, which imports this module for ``peer_of``)."""

    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler: Any, *, listener: str, implicit_tls: bool,
                 limits: ConnectionLimits | None = None, pre_auth_timeout: float | None = None,
                 spool: Spool | None = None, **kwargs: Any):
        self.listener, self.implicit_tls, self.limits = listener, implicit_tls, limits
        self.spool = spool or Spool()
        self.slot: str | None = None  # the client this connection is counted under (guard.Listener), until it closes
        self._pending: tuple[str, Any] | None = None
        self._deadline, self._armed = 0.0, False  # _reset_timeout
        # Before AUTH the whole unauthenticated phase has one deadline (set at connect), which no command
        # moves, and at most MAX_PRE_AUTH_COMMANDS lines; once authenticated, the per-command timeout.
        self._phase_deadline: float | None = None
        self._pre_auth_lines = -1  # (aiosmtpd resets the timeout once when the session starts: no command)
        self._junk = False
        super().__init__(handler, **kwargs)
        self.authenticated_timeout = self._timeout_duration
        if pre_auth_timeout:
            self._timeout_duration = min(pre_auth_timeout, self.authenticated_timeout)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.implicit_tls and transport.get_extra_info("ssl_object") is None:
            transport.close()  # never offer AUTH on a clear channel
            return
        starttls = self._tls_protocol is not None  # aiosmtpd calls us again on the TLS transport
        if self._phase_deadline is None and not starttls:
            self._phase_deadline = self.loop.time() + self._timeout_duration
        super().connection_made(transport)
        log_event("starttls" if starttls else "connect", listener=self.listener, peer=peer_of(self.session))

    def release_slot(self) -> None:
        key, self.slot = self.slot, None
        if key is not None and self.limits is not None:
            self.limits.release(key)

    def connection_lost(self, exc: Exception | None) -> None:
        self.release_slot()
        if self.session is None:
            return  # closed before a session began
        log_event("disconnect", listener=self.listener, peer=peer_of(self.session),
                  login=self.session.auth_data if self.session.authenticated else None)
        self.event_handler.end_transaction(self.envelope)  # a client gone between MAIL and DATA
        super().connection_lost(exc)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd calls this on every command line, and its own cancels the
        timer and makes a new one each time. Here the deadline moves and one
        timer follows it: when it fires early it re-arms for the rest."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        if self._phase_deadline is not None:  # not authenticated yet
            self._pre_auth_lines += 1
            if self._pre_auth_lines > MAX_PRE_AUTH_COMMANDS and not self._junk:
                self._junk = True  # this line's answer is the 421, and the session ends (push)
                log_event("too_many_commands", listener=self.listener, peer=peer_of(self.session),
                          note=f"more than {MAX_PRE_AUTH_COMMANDS} before AUTH; closed")
            self._deadline = min(self._deadline, self._phase_deadline)
        handle = self._timeout_handle
        if handle is not None and not handle.cancelled() and self._armed and handle.when() <= self._deadline:
            return  # the armed timer fires first and re-arms itself for the rest
        if handle is not None:
            handle.cancel()
        self._armed = True
        self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_due)

    def _timeout_due(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_due)
            return
        self._armed = False
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        log_event("timeout", listener=self.listener, peer=peer_of(self.session),
                  login=self.session.auth_data if self.session and self.session.authenticated else None)
        super()._timeout_cb()

    async def push(self, status: Any) -> None:
        """Every reply goes out here: past the command bound before AUTH the
        answer is the 421 and the connection closes, whatever the command (a
        client that pipelines hundreds of NOOPs gets no other answer)."""
        if self._junk:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(TOO_MANY_PRE_AUTH)
                self.transport.close()
            return
        await super().push(status)

    async def smtp_DATA(self, arg: str) -> None:
        """DATA as aiosmtpd 1.4 answers it (the same replies, limits and
        states), but each line goes into a ``Body`` as it arrives, which
        spools to disk past ``--spool-above``, instead of a list joined at
        the end (issue 23: 20 bodies of 24 MB took 579 MB). The handler gets
        it as ``envelope.body`` and owns it from then on (it closes it)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push(_DATA_GO_AHEAD)
        body = self.spool.body()
        try:
            problem = await self._receive(body)
        except BaseException:
            body.close()
            raise
        if problem is not None:
            body.close()
            self._set_post_data_state()
            await self.push(problem)
            return
        self.envelope.body = body
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def _receive(self, body: Body) -> str | None:
        """Read the body up to the lone dot; None, or the reply refusing it
        (given only once the whole body has been read, RFC 5321 4.2.5, and
        with nothing of it kept past the point it went wrong)."""
        limit, received, problem = self.data_size_limit, 0, None
        # Inside a line longer than the reader's limit: refused already, and none of it kept (aiosmtpd keeps
        # its pieces, so a client that never sends CRLF grows the server's memory without end).
        in_long_line = False
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                self._writer.close()  # the connection went during DATA
                raise
            except asyncio.LimitOverrunError as exc:
                if problem is None:
                    problem = _LINE_TOO_LONG
                    body.close()  # what was kept goes at once
                line = await self._reader.read(exc.consumed)  # drained, not kept
            if not in_long_line and line == b".\r\n":
                break
            received += len(line)
            if problem is None and limit and received > limit:
                problem = _TOO_MUCH_DATA
                body.close()
            in_long_line = not line.endswith(b"\r\n")
            if problem is None:
                if len(line) > self.line_length_limit:
                    problem = _LINE_TOO_LONG
                    body.close()
                else:
                    body.add(line[1:] if line[:1] == b"." else line)  # dot-transparency undone (RFC 5321 4.5.2)
        return problem

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address of a MAIL FROM or RCPT TO argument, and the rest (its
        parameters), as aiosmtpd's own, which defines a ``typing.Protocol``
        class on every call: a fifth of the event loop's time under load
        (py-spy, docs/performance.md). Arguments that crash the standard
        library's parser are malformed addresses here."""
        if not arg:
            return "", ""
        simple = _SIMPLE_ADDRESS.match(arg)
        if simple is not None and "=?" not in simple[1]:  # "=?": an encoded word, which the parser decodes
            addr, rest = simple[1], arg[simple.end():]
            if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return addr, rest
        try:
            parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
            address, rest = parse(arg)
            addr = address.addr_spec
        except (HeaderParseError, IndexError, AttributeError):  # the last two: "<", "1@[" crash the stdlib parser
            return None, None  # "553 5.1.3 Error: malformed address", not aiosmtpd's "500 Error: (IndexError)"
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        self._pending = (mechanism, auth_data)  # checked asynchronously below
        return _DEFERRED

    async def _checked(self, result: AuthResult) -> AuthResult:
        if result is not _DEFERRED or self._pending is None:
            return result
        mechanism, data = self._pending
        self._pending = None
        result = await self.event_handler.authenticate(self.session, mechanism, data.login, data.password)
        if result.success:
            self._timeout_duration = self.authenticated_timeout
            self._phase_deadline = None  # authenticated: each command has its own timeout from now on
            self._reset_timeout()  # the running timer was set with the pre-AUTH timeout
        return result

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_LOGIN(_, args))


def peer_of(session: Session | None) -> str | None:
    if session is None:
        return None
    return _peer_text(session.peer)


def _peer_text(peer: Any) -> str | None:
    if not peer:
        return None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class ImplicitTLSGate(asyncio.Protocol):
    """The first protocol of an admitted connection to an implicit-TLS listener.

    The connection was counted when accepted, before the TLS handshake (which
    costs the server CPU, and which a hostile client may never finish: with
    ``create_server(ssl=...)`` such a connection would hold a slot with no
    protocol to release it). This runs the handshake with
    ``loop.start_tls``, releases the slot if it fails, else hands the
    encrypted transport, and the slot, to a ``SubmissionSMTP``.
    """

    def __init__(self, make: Callable[[], "SubmissionSMTP"], context: ssl.SSLContext, limits: ConnectionLimits,
                 handshake_timeout: float, key: str):
        self.make, self.context, self.limits, self.handshake_timeout = make, context, limits, handshake_timeout
        self.key: str | None = key
        self.task: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # the ClientHello waits for start_tls, not for this protocol
        self.task = asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.BaseTransport) -> None:
        app = self.make()
        try:
            encrypted = await asyncio.get_running_loop().start_tls(
                transport, app, self.context, server_side=True, ssl_handshake_timeout=self.handshake_timeout)
        except asyncio.CancelledError:
            transport.abort()
            self.release()
            raise
        except Exception as exc:  # a failed or abandoned handshake: the client's problem, one line
            transport.abort()
            self.release()
            log_event("tls_failed", listener="smtps", peer=_peer_text(transport.get_extra_info("peername")),
                      error=type(exc).__name__)
            return
        if encrypted is None or encrypted.is_closing():
            self.release()
            return
        app.slot, self.key = self.key, None
        app.connection_made(encrypted)

    def connection_lost(self, exc: Exception | None) -> None:
        # Only before start_tls took the transport over: the client left first.
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.release()

    def release(self) -> None:
        key, self.key = self.key, None
        if key is not None:
            self.limits.release(key)


