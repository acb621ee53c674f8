"""``smtpctl serve``: SMTP submission authenticated against the store.

Built on aiosmtpd, with its known traps handled:
- under implicit TLS (port 465) aiosmtpd does not know the session is
  encrypted, so with ``auth_require_tls`` it would never offer AUTH
  (aio-libs/aiosmtpd#274, #281): those listeners pass
  ``auth_require_tls=False`` and check the transport really is TLS;
- its AUTH LOGIN challenges end in a NUL byte that breaks some clients
  (#566): we send the customary ``Username:`` / ``Password:``;
- its authenticator is called synchronously, and an argon2 verify costs
  ~40 ms: we verify on worker threads and keep the event loop free.
"""

from __future__ import annotations

import asyncio
import collections
import mailbox
import os
import smtplib
import ssl
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from smtpctl.core import passwords, rules, services, usage
from smtpctl.core.errors import InvalidInput
from smtpctl.servers.runtime import StoreWorker, log_event

DEFAULT_SUBMISSION = ("127.0.0.1:2525", "127.0.0.1:587")
DEFAULT_SMTPS = ("127.0.0.1:465",)
REFUSALS = {
    "revoked": "550 5.7.1 Your SMTP credentials were revoked (daily sending limit exceeded or removed by an "
               "operator); please contact support",
    "blocked": "550 5.7.1 Sending is blocked for this account; please contact support",
    "unknown": "550 5.7.1 Unknown sender",
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
    max_auth_failures: int = 5
    failure_window: float = 300.0
    data_size_limit: int = 25 * 1024 * 1024


class AuthThrottle:
    """Failed AUTHs per client address within a window."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.failures: dict[str, collections.deque[float]] = {}

    def blocked(self, address: str) -> bool:
        recent = self.failures.get(address)
        if not recent:
            return False
        cutoff = time.monotonic() - self.window
        while recent and recent[0] < cutoff:
            recent.popleft()
        return len(recent) >= self.limit

    def failed(self, address: str) -> None:
        self.failures.setdefault(address, collections.deque()).append(time.monotonic())


_DEFERRED = AuthResult(success=False, handled=True)


class SubmissionSMTP(SMTP):
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler: "SubmissionHandler", *, listener: str, implicit_tls: bool, **kwargs: Any):
        self.listener, self.implicit_tls = listener, implicit_tls
        self._pending: tuple[str, Any] | None = None
        super().__init__(handler, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.implicit_tls and transport.get_extra_info("ssl_object") is None:
            transport.close()  # never offer AUTH on a clear channel
            return
        starttls = self._tls_protocol is not None  # aiosmtpd calls us again on the TLS transport
        super().connection_made(transport)
        log_event("starttls" if starttls else "connect", listener=self.listener, peer=_peer(self.session))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            log_event("disconnect", listener=self.listener, peer=_peer(self.session),
                      login=self.session.auth_data if self.session.authenticated else None)
        super().connection_lost(exc)

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        self._pending = (mechanism, auth_data)  # checked asynchronously below
        return _DEFERRED

    async def _checked(self, result: AuthResult) -> AuthResult:
        if result is not _DEFERRED or self._pending is None:
            return result
        mechanism, data = self._pending
        self._pending = None
        return await self.event_handler.authenticate(self.session, mechanism, data.login, data.password)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_LOGIN(_, args))


def _peer(session: Session | None) -> str | None:
    if session is None or not session.peer:
        return None
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class SubmissionHandler:
    def __init__(self, config: ServeConfig, worker: StoreWorker):
        self.config, self.worker = config, worker
        self.throttle = AuthThrottle(config.max_auth_failures, config.failure_window)
        self.cpu = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="smtpctl-verify")
        self.relay_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="smtpctl-deliver")

    async def authenticate(self, session: Session, mechanism: str, raw_login: bytes,
                           raw_password: bytes) -> AuthResult:
        address = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        if self.throttle.blocked(address):
            log_event("auth_throttled", peer=_peer(session), mechanism=mechanism)
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Too many failed authentications; try again later")
        try:
            login_text, password = raw_login.decode("utf-8"), raw_password.decode("utf-8")
            name, domain = rules.parse_login(login_text)
            login = f"{name}@{domain}"
        except (UnicodeDecodeError, InvalidInput):
            login, password = None, None
        credential = await self.worker.call(lambda store: store.credential(login)) if login else None
        loop = asyncio.get_running_loop()
        if credential is None:
            await loop.run_in_executor(self.cpu, passwords.decoy_verify, password or "")
            ok, new_hash = False, None
        else:
            ok, new_hash = await loop.run_in_executor(self.cpu, passwords.verify_password, password,
                                                      credential.password_hash)
        if not ok:
            self.throttle.failed(address)
            log_event("auth_failed", peer=_peer(session), mechanism=mechanism, login=login or "(invalid)")
            await asyncio.sleep(self.config.auth_delay)  # a failed AUTH costs the client time
            return AuthResult(success=False, handled=False)
        status = await self.worker.call(usage.sender_status, login)
        if status != "ok":
            log_event("auth_refused", peer=_peer(session), login=login, reason=status)
            return AuthResult(success=False, handled=False, message=REFUSALS[status].replace("550", "535", 1))
        if new_hash is not None:
            await self.worker.call(services.store_rehash, credential, new_hash)
        log_event("auth_ok", peer=_peer(session), mechanism=mechanism, login=login)
        return AuthResult(success=True, auth_data=login)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        status = await self.worker.call(usage.sender_status, session.auth_data)
        if status != "ok":
            log_event("mail_refused", peer=_peer(session), login=session.auth_data, reason=status)
            return REFUSALS[status]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data
        # RCPT TO is the truth: Bcc recipients are only in the envelope. An
        # address given twice is delivered, and counted, once.
        recipients = list(dict.fromkeys(a.lower() for a in envelope.rcpt_tos))
        queue_id = uuid.uuid4().hex[:16].upper()
        content = (f"Received: from {session.host_name or 'unknown'} ({_peer(session)}) by {self.config.hostname} "
                   f"(smtpctl) with ESMTPSA id {queue_id}\r\n").encode() + (envelope.original_content or b"")
        loop = asyncio.get_running_loop()
        try:
            where = await loop.run_in_executor(self.relay_pool, self._deliver, envelope.mail_from, recipients,
                                               content)
        except Exception as exc:  # the relay or the disk: the client may retry; nothing is billed
            log_event("delivery_failed", login=login, queue_id=queue_id, error=type(exc).__name__)
            return "451 4.4.1 Delivery failed temporarily; try again later"
        result = await self.worker.call(usage.meter_message, login, len(recipients),
                                        f"serve:{self.config.hostname}:{queue_id}")
        log_event("message", login=login, queue_id=queue_id, recipients=len(recipients), emails=result.emails,
                  delivered=where)
        for crossing in result.crossings:
            log_event("limit_exceeded", account=crossing.account, day=crossing.day, emails=crossing.emails,
                      limit=crossing.limit, revoked=",".join(crossing.revoked_credentials))
        return f"250 2.0.0 OK: queued as {queue_id}"

    def _deliver(self, mail_from: str, recipients: list[str], content: bytes) -> str:
        if self.config.relay is None:
            box = mailbox.Maildir(self.config.maildir, create=False)
            box.add(b"Return-Path: <" + mail_from.encode() + b">\r\n" + content)
            return "maildir"
        host, port = self.config.relay
        with smtplib.SMTP(host, port, local_hostname=self.config.hostname, timeout=30) as client:
            client.ehlo()
            if self.config.relay_starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if self.config.relay_username:
                client.login(self.config.relay_username, self.config.relay_password or "")
            client.sendmail(mail_from, recipients, content)
        return f"relay:{host}:{port}"

    def close(self) -> None:
        self.cpu.shutdown(wait=False)
        self.relay_pool.shutdown(wait=False)


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
    worker = StoreWorker(config.store_path, config.actor)
    handler = SubmissionHandler(config, worker)
    await worker.call(lambda store: None)  # open (and migrate) the store before accepting anyone

    def factory(listener: str, implicit: bool):
        def make() -> SubmissionSMTP:
            common = dict(hostname=config.hostname, auth_required=True, data_size_limit=config.data_size_limit,
                          ident="smtpctl", loop=loop)
            if implicit:
                return SubmissionSMTP(handler, listener=listener, implicit_tls=True, auth_require_tls=False,
                                      **common)
            return SubmissionSMTP(handler, listener=listener, implicit_tls=False, tls_context=config.tls,
                                  require_starttls=True, auth_require_tls=True, **common)
        return make

    servers = []
    for host, port in config.submission:
        server = await loop.create_server(factory("submission", False), host, port)
        servers.append(server)
        log_event("listening", listener="submission", address=_bound(server), tls="starttls-required")
    for host, port in config.smtps:
        server = await loop.create_server(factory("smtps", True), host, port, ssl=config.tls)
        servers.append(server)
        log_event("listening", listener="smtps", address=_bound(server), tls="implicit")
    log_event("ready", delivery=f"relay:{config.relay[0]}:{config.relay[1]}" if config.relay else
              f"maildir:{config.maildir}")
    try:
        await stop.wait()
    finally:
        log_event("stopping")
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        handler.close()
        worker.close()
        log_event("stopped")


def _bound(server: asyncio.base_events.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"
