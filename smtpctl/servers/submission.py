"""``smtpctl serve``: SMTP submission authenticated against the store.

Built on aiosmtpd, with its known traps handled:
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
  ``SubmissionSMTP._reset_timeout`` moves one deadline instead.

What is ours: every message is checked against the daily limit and billed in
one transaction before its ``250`` (``usage.admit_message``, shared by many
sessions through group commit); a Maildir message is staged in ``tmp/``,
billed, then published, and ``MaildirSpool.reconcile`` settles a crash; with
``--relay`` each recipient is asked of the next hop while the client waits
(docs/servers.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from pathlib import Path
from typing import Any, Callable

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from smtpctl.core.model import passwords
from smtpctl.core.directory.credentials import store_rehash
from smtpctl.core.metering.live import cancel_message, envelope_check
from smtpctl.core.model import rules
from smtpctl.core.model.errors import InvalidInput, StoreError
from smtpctl.servers import authcache, guard
from smtpctl.servers.authcache import AuthCache
from smtpctl.servers.guard import AuthThrottle, ConnectionLimits, Listener, client_key
from smtpctl.servers.metering import GroupCommit, ReadBatch
from smtpctl.servers.metrics import NOOP, Metrics, close_endpoint, create_metrics, serve_endpoint
from smtpctl.servers.runtime import Lanes, StoreWorker, listen_sockets, log_event

DEFAULT_SUBMISSION = ("127.0.0.1:2525", "127.0.0.1:587")
DEFAULT_SMTPS = ("127.0.0.1:465",)
STORE_UNAVAILABLE = "451 4.3.0 Temporary failure; try again later"
STORE_UNAVAILABLE_AUTH = "454 4.7.0 Temporary authentication failure; try again later"
REFUSALS = {
    "revoked": "550 5.7.1 Your SMTP credentials were revoked (daily sending limit exceeded or removed by an "
               "operator); please contact support",
    "unknown": "550 5.7.1 Unknown sender",
    "over_limit": "550 5.7.1 Daily sending limit exceeded; message refused; please contact support",
    "too_many_recipients": "452 4.5.3 Too many recipients",
    "invalid": "550 5.7.1 Message refused",
}


@dataclass
class ServeConfig:
    store_path: Path
    actor: str
    submission: list[tuple[str, int]]
    smtps: list[tuple[str, int]]
    tls: ssl.SSLContext
    maildir: Path
    relay: tuple[str, int] | None = None
    relay_starttls: bool = False
    relay_username: str | None = None
    relay_password: str | None = field(default=None, repr=False)
    hostname: str = "localhost"
    auth_delay: float = 1.0
    auth_cache_size: int = authcache.DEFAULT_SIZE  # 0: every AUTH verifies
    auth_cache_ttl: float = authcache.DEFAULT_TTL
    max_auth_failures: int = guard.DEFAULT_MAX_AUTH_FAILURES
    max_auth_failures_per_login: int = guard.DEFAULT_MAX_AUTH_FAILURES_PER_LOGIN
    failure_window: float = guard.DEFAULT_FAILURE_WINDOW
    data_size_limit: int = 25 * 1024 * 1024
    max_connections: int | None = None  # None: guard.default_max_connections
    max_connections_per_client: int = guard.DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    timeout: float = 300.0  # per command once authenticated (RFC 5321 4.5.3.2.7)
    pre_auth_timeout: float = 60.0  # per command before AUTH: an idle stranger frees its slot sooner
    # Sockets already bound by runtime.listen_sockets, per listener kind; empty: serve() binds them.
    bound: dict[str, list[socket.socket]] = field(default_factory=dict, repr=False)
    # The --metrics endpoint's sockets, bound already; empty: no metrics (and prometheus-client not imported).
    metrics_bound: list[socket.socket] = field(default_factory=list, repr=False)

    @property
    def fds_per_connection(self) -> int:
        return 2 if self.relay is not None else 1  # a relayed session also holds its next-hop socket


_DEFERRED = AuthResult(success=False, handled=True)


# What nearly every client sends: ``<local@domain>``, alone or followed by its
# parameters, the local part a dot-atom (RFC 5322 atext) and the domain plain
# labels. For these the standard library's parser answers exactly the text
# between the brackets and the parameters after the blanks (it takes blanks
# and a comment after ``>`` as CFWS: a comment goes the slow way), at a tenth
# of its cost; anything else is parsed by it.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+(?=[^ \t(])|\Z)")


class SubmissionSMTP(SMTP):
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler: "SubmissionHandler", *, listener: str, implicit_tls: bool,
                 limits: ConnectionLimits | None = None, pre_auth_timeout: float | None = None, **kwargs: Any):
        self.listener, self.implicit_tls, self.limits = listener, implicit_tls, limits
        self.slot: str | None = None  # the client this connection is counted under (guard.Listener), until it closes
        self._pending: tuple[str, Any] | None = None
        self._deadline, self._armed = 0.0, False  # _reset_timeout
        super().__init__(handler, **kwargs)
        self.authenticated_timeout = self._timeout_duration
        if pre_auth_timeout:
            self._timeout_duration = min(pre_auth_timeout, self.authenticated_timeout)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.implicit_tls and transport.get_extra_info("ssl_object") is None:
            transport.close()  # never offer AUTH on a clear channel
            return
        starttls = self._tls_protocol is not None  # aiosmtpd calls us again on the TLS transport
        super().connection_made(transport)
        log_event("starttls" if starttls else "connect", listener=self.listener, peer=_peer(self.session))

    def release_slot(self) -> None:
        key, self.slot = self.slot, None
        if key is not None and self.limits is not None:
            self.limits.release(key)

    def connection_lost(self, exc: Exception | None) -> None:
        self.release_slot()
        if self.session is None:
            return  # closed before a session began
        log_event("disconnect", listener=self.listener, peer=_peer(self.session),
                  login=self.session.auth_data if self.session.authenticated else None)
        self.event_handler.close_leg(self.envelope)  # a client gone between MAIL and DATA
        super().connection_lost(exc)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd calls this on every command line, and its own cancels the
        timer and makes a new one each time. Here the deadline moves and one
        timer follows it: when it fires early it re-arms for the rest."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
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
        log_event("timeout", listener=self.listener, peer=_peer(self.session),
                  login=self.session.auth_data if self.session and self.session.authenticated else None)
        super()._timeout_cb()

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
            self._reset_timeout()  # the running timer was set with the pre-AUTH timeout
        return result

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_LOGIN(_, args))


def _peer(session: Session | None) -> str | None:
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


class SubmissionHandler:
    def __init__(self, config: ServeConfig, worker: StoreWorker, metrics: Metrics = NOOP):
        self.config, self.worker, self.metrics = config, worker, metrics
        self.auth_cache = AuthCache(config.auth_cache_size, config.auth_cache_ttl)
        # Counted in the store, so every node on it shares the budget (core/store/throttle.py).
        self.throttle = AuthThrottle(worker, config.max_auth_failures, config.max_auth_failures_per_login,
                                     config.failure_window)
        self.cpu = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="smtpctl-verify")
        self.relay_pool = Lanes(32, "smtpctl-deliver")  # the Maildir fsync and the relay's sockets
        self.spool = MaildirSpool(config.maildir)
        self.meter = GroupCommit(worker, metrics)
        self.envelope_checks = ReadBatch(worker, envelope_check)

    async def authenticate(self, session: Session, mechanism: str, raw_login: bytes,
                           raw_password: bytes) -> AuthResult:
        try:
            login_text, password = raw_login.decode("utf-8"), raw_password.decode("utf-8")
            name, domain = rules.parse_login(login_text)
            login = f"{name}@{domain}"
        except (UnicodeDecodeError, InvalidInput):
            login, password = None, None
        client = client_key(session.peer)
        throttle = self.throttle
        if throttle.blocked_here(client):  # the store refused this client lately: no store call
            return self._throttled(session, mechanism, login)
        try:
            credential, verdict = await self.worker.read(
                lambda store: (store.credential(login) if login else None, throttle.check(store, client, login)))
        except StoreError as exc:  # the store is down or locked: not the client's fault, and no guess
            return self._store_error(session, login, exc)
        if verdict.status == "refused":  # out of guesses: even a right password is refused, unverified
            throttle.note(client, verdict)
            return self._throttled(session, mechanism, login)

        def cached() -> bool:  # the password verified against this very stored hash, within the TTL
            return credential is not None and self.auth_cache.verified(login, password, credential.password_hash)

        if cached():  # a right password is no guess: no slot, no store write
            await throttle.renew_trust(client, login, verdict.trusted_for)
            return self._authenticated(session, mechanism, login, "cache")
        # A guess: counted in the store before it is verified, so parallel sessions on every node share one budget.
        try:
            attempt = await throttle.begin(client, login, proven=cached)
        except StoreError as exc:
            return self._store_error(session, login, exc)
        if attempt is None:
            return self._throttled(session, mechanism, login)
        if attempt is guard.PROVEN:  # a parallel session verified it meanwhile
            await throttle.renew_trust(client, login, verdict.trusted_for)
            return self._authenticated(session, mechanism, login, "cache")
        try:
            loop = asyncio.get_running_loop()
            if credential is None:
                await loop.run_in_executor(self.cpu, passwords.decoy_verify, password or "")
                ok, new_hash, verified_by = False, None, "decoy"
            else:
                ok, new_hash = await loop.run_in_executor(self.cpu, passwords.verify_password, password,
                                                          credential.password_hash)
                verified_by = "hash"
            if not ok:
                await throttle.failed(attempt)
                log_event("auth_failed", peer=_peer(session), mechanism=mechanism, login=login or "(invalid)")
                self.metrics.auth("failed")
                await asyncio.sleep(self.config.auth_delay)  # a failed AUTH costs the client time
                return AuthResult(success=False, handled=False)
            await throttle.succeeded(attempt, login)  # a right password is no guess to count
            # The credential was just read: it exists, on a dedicated domain (a manual block does not stop
            # sending, docs/rules.md); DATA checks again in the transaction that records the message.
            if new_hash is not None:
                await self.worker.call(store_rehash, credential, new_hash)
            self.auth_cache.remember(login, password, new_hash or credential.password_hash)
            return self._authenticated(session, mechanism, login, verified_by)
        finally:
            throttle.abandoned(attempt)  # left mid-verify (client gone, store error): it was a guess

    def _authenticated(self, session: Session, mechanism: str, login: str, verified_by: str) -> AuthResult:
        log_event("auth_ok", peer=_peer(session), mechanism=mechanism, login=login, verified=verified_by)
        self.metrics.auth("ok")
        return AuthResult(success=True, auth_data=login)

    def _throttled(self, session: Session, mechanism: str, login: str | None) -> AuthResult:
        log_event("auth_throttled", peer=_peer(session), mechanism=mechanism, login=login or "(invalid)")
        self.metrics.auth("throttled")
        return AuthResult(success=False, handled=False, message=guard.TOO_MANY_AUTH)

    def _store_error(self, session: Session, login: str | None, exc: StoreError) -> AuthResult:
        log_event("store_error", peer=_peer(session), login=login or "(invalid)", error=exc.message)
        return AuthResult(success=False, handled=False, message=STORE_UNAVAILABLE_AUTH)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        login = session.auth_data
        try:
            check = await self.envelope_checks.read(login, address)  # read now, whatever AUTH read
        except StoreError as exc:
            log_event("store_error", peer=_peer(session), login=login, error=exc.message)
            self.metrics.refused("store_error")
            return STORE_UNAVAILABLE
        if check.status != "ok":
            log_event("mail_refused", peer=_peer(session), login=login, reason=check.status)
            self.metrics.refused(check.status)
            return REFUSALS[check.status]
        if not check.sender_allowed:
            log_event("mail_refused", peer=_peer(session), login=login, reason="sender_mismatch",
                      sender=address or "<>")
            self.metrics.refused("sender_mismatch")
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user {login}"
        if self.config.relay is not None:
            leg = RelayLeg(self.config)
            try:
                code, text = await self.relay_pool.run(leg.open, address, mail_options)
            except (OSError, smtplib.SMTPException) as exc:
                leg.close()
                log_event("relay_unavailable", login=login, error=type(exc).__name__)
                self.metrics.refused("relay_unavailable")
                return "451 4.4.1 Next hop unavailable; try again later"
            if code >= 300:
                leg.close()
                return _reply(code, text)
            envelope.relay_leg = leg  # closed at DATA, RSET or disconnect
        envelope.max_recipients = check.max_recipients
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        # An address given twice is delivered, and counted, once.
        if any(address.lower() == a.lower() for a in envelope.rcpt_tos):
            return "250 OK"
        if len(envelope.rcpt_tos) >= getattr(envelope, "max_recipients", 0):
            self.metrics.refused("too_many_recipients")
            return REFUSALS["too_many_recipients"]
        leg: RelayLeg | None = getattr(envelope, "relay_leg", None)
        if leg is not None:  # the next hop decides each recipient while the client waits
            try:
                code, text = await self.relay_pool.run(leg.rcpt, address, rcpt_options)
            except (OSError, smtplib.SMTPException) as exc:
                log_event("relay_unavailable", login=session.auth_data, error=type(exc).__name__)
                self.metrics.refused("relay_unavailable")
                return "451 4.4.1 Next hop unavailable; try again later"
            if code >= 300:
                log_event("rcpt_refused_by_relay", login=session.auth_data, code=code)
                self.metrics.refused("relay_refused")
                return _reply(code, text)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.close_leg(envelope)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            return await self._data(session, envelope)
        finally:
            self.close_leg(envelope)

    def close_leg(self, envelope: Envelope | None) -> None:
        """End a transaction's relay conversation, off the event loop (QUIT waits for a reply)."""
        leg = getattr(envelope, "relay_leg", None)
        if leg is not None:
            envelope.relay_leg = None
            self._close_soon(leg)

    def _close_soon(self, leg: "RelayLeg") -> None:
        try:
            self.relay_pool.submit(leg.close)
        except RuntimeError:  # shutting down: no pool left
            leg.close()

    async def _data(self, session: Session, envelope: Envelope) -> str:
        login = session.auth_data
        recipients = envelope.rcpt_tos  # distinct already (handle_RCPT); RCPT TO is the truth, Bcc included
        queue_id = os.urandom(10).hex().upper()  # 80 random bits, as uuid4's 20 digits without its object (3 -> 0.7 us)
        source_id = f"serve:{queue_id}"
        content = (f"Received: from {session.host_name or 'unknown'} ({_peer(session)}) by {self.config.hostname} "
                   f"(smtpctl) with ESMTPSA id {queue_id}\r\n").encode() + (envelope.original_content or b"")
        leg: RelayLeg | None = getattr(envelope, "relay_leg", None)
        envelope.relay_leg = None  # the settling below owns it now, to the end
        staged: str | None = None
        if leg is None:  # Maildir: stage in tmp/, bill, then publish to new/ (docs/servers.md, crash safety)
            try:
                staged = await self.relay_pool.run(self.spool.stage, queue_id, envelope.mail_from, content)
            except OSError as exc:
                log_event("delivery_failed", login=login, queue_id=queue_id, error=type(exc).__name__)
                self.metrics.refused("delivery_failed")
                return "451 4.3.0 Delivery failed temporarily; try again later"
        # From here on the message is settled to the end even if the client goes
        # away (aiosmtpd cancels the handler): billed and staged, it is published.
        settle = asyncio.ensure_future(self._settle(login, recipients, queue_id, source_id, content, staged, leg))
        return await asyncio.shield(settle)

    async def _settle(self, login: str, recipients: list[str], queue_id: str, source_id: str, content: bytes,
                      staged: str | None, leg: "RelayLeg | None") -> str:
        try:
            return await self._bill_and_deliver(login, recipients, queue_id, source_id, content, staged, leg)
        finally:
            if leg is not None:
                self._close_soon(leg)

    async def _bill_and_deliver(self, login: str, recipients: list[str], queue_id: str, source_id: str,
                                content: bytes, staged: str | None, leg: "RelayLeg | None") -> str:
        """Admit (check and bill) the message, then publish it (Maildir) or send its data on (relay,
        taking it off the bill if the next hop refuses it): delivered equals billed."""
        try:
            admission = await self.meter.admit(login, len(recipients), source_id)
        except Exception as exc:  # the store: nothing recorded, nothing delivered; the client retries
            if staged is not None:
                self.spool.discard(staged)
            log_event("store_error", login=login, queue_id=queue_id, error=getattr(exc, "message", type(exc).__name__))
            self.metrics.refused("store_error")
            return STORE_UNAVAILABLE
        for crossing in admission.crossings:
            log_event("limit_exceeded", account=crossing.account, day=crossing.day, emails=crossing.emails,
                      limit=crossing.limit, revoked=",".join(crossing.revoked_credentials))
            self.metrics.crossing()
        if not admission.accepted:
            if staged is not None:
                self.spool.discard(staged)
            log_event("message_refused", login=login, queue_id=queue_id, recipients=len(recipients),
                      reason=admission.status)
            self.metrics.refused(admission.status)
            return REFUSALS.get(admission.status, REFUSALS["invalid"])
        if staged is not None:
            try:
                self.spool.publish(staged)  # one rename: cheaper on the loop than a hop to a thread and back
            except OSError as exc:  # billed and staged: the next start publishes it (reconcile)
                log_event("publish_failed", login=login, queue_id=queue_id, error=type(exc).__name__)
            where = "maildir"
        else:
            assert leg is not None
            try:
                code, text = await self.relay_pool.run(leg.data, content)
            except (OSError, smtplib.SMTPException) as exc:
                code, text = 451, f"4.4.1 Next hop failed ({type(exc).__name__}); try again later".encode()
            if code != 250:  # not delivered: not billed
                await self.worker.call(cancel_message, source_id)
                log_event("relay_refused", login=login, queue_id=queue_id, code=code)
                self.metrics.refused("relay_refused")
                return _reply(code, text)
            where = f"relay:{self.config.relay[0]}:{self.config.relay[1]}"
        log_event("message", login=login, queue_id=queue_id, recipients=len(recipients), emails=admission.emails,
                  delivered=where)
        self.metrics.accepted(admission.emails)
        return f"250 2.0.0 OK: queued as {queue_id}"

    def close(self) -> None:
        self.cpu.shutdown(wait=False)
        self.relay_pool.shutdown(wait=False)


def _reply(code: int, text: bytes | str) -> str:
    """A next hop's reply, passed on to the client on one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


class RelayLeg:
    """One client transaction's conversation with the next hop, opened at
    MAIL: each RCPT is asked of the next hop while the client waits, so a
    recipient it refuses is refused to the client and never billed."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.client: smtplib.SMTP | None = None

    def open(self, mail_from: str, options: list[str]) -> tuple[int, bytes]:
        host, port = self.config.relay  # type: ignore[misc]
        client = self.client = smtplib.SMTP(host, port, local_hostname=self.config.hostname, timeout=30)
        client.ehlo()
        if self.config.relay_starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if self.config.relay_username:
            client.login(self.config.relay_username, self.config.relay_password or "")
        return client.mail(mail_from, [o for o in options if o.upper().startswith(("BODY=", "SIZE="))])

    def rcpt(self, address: str, options: list[str]) -> tuple[int, bytes]:
        assert self.client is not None
        return self.client.rcpt(address)

    def data(self, content: bytes) -> tuple[int, bytes]:
        assert self.client is not None
        try:
            return self.client.data(content)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


_STAGED = re.compile(r"^\d+\.M(?P<queue_id>[0-9A-F]{20})P(?P<pid>\d+)\.")


class MaildirSpool:
    """Maildir delivery that agrees with billing across crashes.

    A message is written (and fsynced) to ``tmp/`` first, billed in the
    store's transaction, and only then renamed into ``new/``. On start,
    ``reconcile`` settles what a killed process left in ``tmp/``: a message
    whose queue id was billed is published, one that was not is removed (its
    client never got a 250 and sends it again). So delivered equals billed.
    """

    def __init__(self, path: Path):
        self.path = path
        # The folders as text, and this process's part of a file name: a path
        # of a message is joined as a string (pathlib took ~9 us a message on
        # the event loop).
        self.tmp, self.new = f"{path}/tmp/", f"{path}/new/"
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"
        self.suffix = f"P{os.getpid()}.{host}"

    def stage(self, queue_id: str, mail_from: str, content: bytes) -> str:
        """Write the message to ``tmp/`` and fsync it; the staged file's path."""
        staged = f"{self.tmp}{int(time.time())}.M{queue_id}{self.suffix}"
        data = memoryview(b"Return-Path: <" + mail_from.encode() + b">\r\n" + content)
        # os.open, not open(): the buffered file's fstat, ioctl and lseek are syscalls a message need not make.
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.discard(staged)
            raise
        os.close(fd)
        return staged

    def publish(self, staged: str) -> None:
        # No fsync of new/ here: a rename lost to a power cut leaves the billed
        # message in tmp/, and the next start's reconcile publishes it.
        os.rename(staged, self.new + os.path.basename(staged))

    @staticmethod
    def discard(staged: str) -> None:
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass

    def reconcile(self, billed: "Callable[[list[str]], set[str]]") -> tuple[int, int]:
        """Publish or remove what dead processes left in ``tmp/``; returns (published, removed)."""
        orphans: dict[str, str] = {}
        for entry in os.scandir(self.path / "tmp"):
            m = _STAGED.match(entry.name)
            if m and not _alive(int(m["pid"])):
                orphans[f"serve:{m['queue_id']}"] = entry.path
        if not orphans:
            return 0, 0
        recorded = billed(list(orphans))
        published = removed = 0
        for source_id, staged in orphans.items():
            if source_id in recorded:
                self.publish(staged)
                published += 1
            else:
                self.discard(staged)
                removed += 1
        return published, removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a file of this pid can only be a previous process's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_maildir(path: Path) -> None:
    """Create a Maildir (cur, new, tmp; 0700) if it is not one yet."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


async def serve(config: ServeConfig, stop: asyncio.Event) -> None:
    """Listen on every address until ``stop`` is set; log each listener."""
    import logging
    import warnings

    # aiosmtpd logs, unstructured, on every AUTH (an attribute it sets itself)
    # and on every implicit-TLS session (AUTH without auth_require_tls, which
    # SubmissionSMTP makes safe by refusing clear transports). Our own event
    # lines say what happened.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    loop = asyncio.get_running_loop()
    bound = config.bound or bind_listeners(config)  # every address or none, before anything else
    worker = StoreWorker(config.store_path, config.actor)
    metrics = create_metrics("serve") if config.metrics_bound else NOOP  # imports prometheus-client
    handler = SubmissionHandler(config, worker, metrics)
    await worker.call(lambda store: None)  # open (and migrate) the store before accepting anyone
    if config.relay is None:
        published, removed = await worker.call(
            lambda store: handler.spool.reconcile(store.existing_source_ids))
        if published or removed:
            log_event("reconciled", published=published, removed=removed,
                      note="messages a stopped server left staged: billed ones delivered, the rest removed")

    limits = ConnectionLimits(config.max_connections or guard.default_max_connections(config.fds_per_connection),
                              config.max_connections_per_client, metrics)

    def factory(listener: str, implicit: bool):
        def make() -> SubmissionSMTP:
            common = dict(hostname=config.hostname, auth_required=True, data_size_limit=config.data_size_limit,
                          ident="smtpctl", loop=loop, limits=limits, timeout=config.timeout,
                          pre_auth_timeout=config.pre_auth_timeout)
            if implicit:
                return SubmissionSMTP(handler, listener=listener, implicit_tls=True, auth_require_tls=False,
                                      **common)
            return SubmissionSMTP(handler, listener=listener, implicit_tls=False, tls_context=config.tls,
                                  require_starttls=True, auth_require_tls=True, **common)
        return make

    handshake_timeout = min(config.pre_auth_timeout, 60.0)

    adopting: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    async def adopt(conn: socket.socket, protocol: asyncio.Protocol, release: Callable[[], None]) -> None:
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock=conn)
        except asyncio.CancelledError:
            conn.close()
            release()
            raise
        except Exception:  # the client is gone already; its slot goes back
            conn.close()
            release()

    def start_adopting(conn: socket.socket, protocol: asyncio.Protocol, release: Callable[[], None]) -> None:
        task = loop.create_task(adopt(conn, protocol, release))
        adopting.add(task)
        task.add_done_callback(adopting.discard)

    def submission_admitted(conn: socket.socket, key: str) -> None:
        app = make_submission()
        app.slot = key
        start_adopting(conn, app, app.release_slot)

    def smtps_admitted(conn: socket.socket, key: str) -> None:
        gate = ImplicitTLSGate(make_smtps, config.tls, limits, handshake_timeout, key)
        start_adopting(conn, gate, gate.release)

    make_submission, make_smtps = factory("submission", False), factory("smtps", True)
    scrapes = await serve_endpoint(metrics, config.metrics_bound) if config.metrics_bound else []
    listening: list[Listener] = []
    for name, admitted, clear in (("submission", submission_admitted, True), ("smtps", smtps_admitted, False)):
        for sock in bound[name]:
            listener = Listener(sock, name, limits, admitted, clear_refusal=clear)
            listener.start()
            listening.append(listener)
            log_event("listening", listener=name, address=listener.address,
                      tls="starttls-required" if clear else "implicit")
    log_event("ready", delivery=f"relay:{config.relay[0]}:{config.relay[1]}" if config.relay else
              f"maildir:{config.maildir}", max_connections=limits.total,
              max_connections_per_client=limits.per_client)
    try:
        await stop.wait()
    finally:
        log_event("stopping")
        for listener in listening:
            listener.close()
        if scrapes:
            close_endpoint(scrapes)
        handler.close()
        worker.close()
        log_event("stopped")


def bind_listeners(config: ServeConfig) -> dict[str, list[socket.socket]]:
    """Bind every listener of ``config``, all or nothing (raises ``CannotListen``)."""
    sockets = listen_sockets([*config.submission, *config.smtps], backlog=guard.LISTEN_BACKLOG)
    split = len(config.submission)
    return {"submission": [s for group in sockets[:split] for s in group],
            "smtps": [s for group in sockets[split:] for s in group]}
