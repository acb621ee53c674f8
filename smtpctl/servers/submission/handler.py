"""``serve``'s session handler: authentication, the envelope checks and the
metering. Delivery is the strategy it was given (servers/delivery.py)."""

from __future__ import annotations

import asyncio
import os

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from smtpctl.core.directory.credentials import store_rehash
from smtpctl.core.metering.live import credential_stamp, envelope_check
from smtpctl.core.model import passwords, rules
from smtpctl.core.model.clients import client_key, in_networks
from smtpctl.core.model.errors import InvalidInput, StoreError
from smtpctl.core.model.records import Credential, RevokedCredential
from smtpctl.core.store import Store
from smtpctl.servers import guard, replies
from smtpctl.servers.authcache import AuthCache
from smtpctl.servers.body import Body, header_from
from smtpctl.servers.delivery import Delivery, Taken
from smtpctl.servers.guard import AuthThrottle
from smtpctl.servers.metering import GroupCommit, ReadBatch
from smtpctl.servers.metrics import NOOP, Metrics
from smtpctl.servers.runtime import Lanes, StoreWorker, log_event
from smtpctl.servers.submission.config import ServeConfig
from smtpctl.servers.submission.protocol import peer_of


class SubmissionHandler:
    """What a session asks of the store: AUTH, the envelope checks at MAIL
    and RCPT, and the metering at the end of DATA. Where an admitted message
    goes is ``delivery``'s (servers/delivery.py), chosen once at start."""

    def __init__(self, config: ServeConfig, worker: StoreWorker, delivery: Delivery, metrics: Metrics = NOOP):
        self.config, self.worker, self.delivery, self.metrics = config, worker, delivery, metrics
        # Not named auth_*: aiosmtpd offers every auth_* attribute of the handler as a SASL mechanism
        # ("AUTH cache" logged a TypeError for each use: issue 23).
        self.verified_logins = AuthCache(config.auth_cache_size, config.auth_cache_ttl)
        # Counted in the store, so every node on it shares the budget (core/store/throttle.py).
        self.throttle = AuthThrottle(worker, config.max_auth_failures, config.max_auth_failures_per_login,
                                     config.failure_window)
        # Daemon threads (Lanes): a stop never waits for a verify in progress (a ThreadPoolExecutor's
        # threads are joined at exit: SIGTERM waited for a hostile hash's 8 s verify; issue 23).
        self.cpu = Lanes(os.cpu_count() or 2, "smtpctl-verify")
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
            credential, revoked, verdict = await self.worker.read(
                lambda store: self._read_login(store, client, login, session))
        except StoreError as exc:  # the store is down or locked: not the client's fault, and no guess
            return self._store_error(session, login, exc)
        if verdict.status == "refused":  # out of guesses: even a right password is refused, unverified
            throttle.note(client, verdict)
            return self._throttled(session, mechanism, login)
        # The hash a right password verifies against: the live credential's, else a revoked one's
        # (core/store/revoked.py: its sender is told why, and it is no guess).
        stored_hash = credential.password_hash if credential is not None else (
            revoked.password_hash if revoked is not None else None)

        def cached() -> bool:  # the password verified against this very stored hash, within the TTL
            return stored_hash is not None and self.verified_logins.verified(login, password, stored_hash)

        if cached():  # a right password is no guess: no slot, no store write
            if credential is None:
                return self._revoked(session, mechanism, revoked, "cache")
            await throttle.renew_trust(client, login, verdict.trusted_for)
            return self._authenticated(session, mechanism, credential, "cache")
        # A guess: counted in the store before it is verified, so parallel sessions on every node share one budget.
        try:
            attempt = await throttle.begin(client, login, proven=cached, exempt=self._exempt(session))
        except StoreError as exc:
            return self._store_error(session, login, exc)
        if attempt is None:
            return self._throttled(session, mechanism, login)
        if attempt is guard.PROVEN:  # a parallel session verified it meanwhile
            if credential is None:
                return self._revoked(session, mechanism, revoked, "cache")
            await throttle.renew_trust(client, login, verdict.trusted_for)
            return self._authenticated(session, mechanism, credential, "cache")
        try:
            if stored_hash is None:
                await self.cpu.run(passwords.decoy_verify, password or "")
                ok, new_hash, verified_by = False, None, "decoy"
            else:
                try:
                    ok, new_hash = await self.cpu.run(passwords.verify_password, password, stored_hash)
                except InvalidInput:  # a hash costlier than the ceiling: never verified, a failed guess
                    log_event("auth_refused", peer=peer_of(session), login=login, reason="hash_too_costly")
                    ok, new_hash = False, None
                verified_by = "hash"
            if not ok:
                await throttle.failed(attempt)
                log_event("auth_failed", peer=peer_of(session), mechanism=mechanism, login=login or "(invalid)")
                self.metrics.auth("failed")
                await asyncio.sleep(self.config.auth_delay)  # a failed AUTH costs the client time
                return AuthResult(success=False, handled=False)
            if credential is None:  # the right password of a revoked credential: no guess, and no trust
                await throttle.succeeded(attempt)
                self.verified_logins.remember(login, password, stored_hash)
                return self._revoked(session, mechanism, revoked, verified_by)
            await throttle.succeeded(attempt, login)  # a right password is no guess to count
            # The credential was just read: it exists, on a dedicated domain (a manual block does not stop
            # sending, docs/rules.md); DATA checks again in the transaction that records the message.
            if new_hash is not None:
                await self.worker.call(store_rehash, credential, new_hash)
                credential = credential._replace(password_hash=new_hash)  # this session's stamp follows its rehash
            self.verified_logins.remember(login, password, credential.password_hash)
            return self._authenticated(session, mechanism, credential, verified_by)
        finally:
            throttle.abandoned(attempt)  # left mid-verify (client gone, store error): it was a guess

    def _read_login(self, store: Store, client: str, login: str | None, session: Session) -> tuple:
        """On the store's thread, one call: the live credential, else the record of its revocation
        (read only for a login that is no live credential), and the throttle's verdict."""
        credential = store.credential(login) if login else None
        revoked = store.revoked_credential(login) if login and credential is None else None
        return credential, revoked, self.throttle.check(store, client, login, exempt=self._exempt(session))

    def _exempt(self, session: Session) -> bool:
        """Is the client in a ``--trusted-network`` (exempt from the per-client cap, never the per-login one)?"""
        return in_networks(session.peer, self.config.trusted_networks)

    def _revoked(self, session: Session, mechanism: str, revoked: RevokedCredential, verified_by: str) -> AuthResult:
        log_event("auth_revoked", peer=peer_of(session), mechanism=mechanism, login=revoked.login,
                  reason=revoked.reason, day=revoked.day, revoked_at=revoked.revoked_at, verified=verified_by)
        self.metrics.auth("revoked")
        return AuthResult(success=False, handled=False, message=replies.auth_revoked(revoked.reason, revoked.day))

    def _authenticated(self, session: Session, mechanism: str, credential: Credential,
                       verified_by: str) -> AuthResult:
        login = credential.login
        session.credential_stamp = credential_stamp(credential)  # MAIL checks it is still the same one
        log_event("auth_ok", peer=peer_of(session), mechanism=mechanism, login=login, verified=verified_by)
        self.metrics.auth("ok")
        return AuthResult(success=True, auth_data=login)

    def _throttled(self, session: Session, mechanism: str, login: str | None) -> AuthResult:
        log_event("auth_throttled", peer=peer_of(session), mechanism=mechanism, login=login or "(invalid)")
        self.metrics.auth("throttled")
        return AuthResult(success=False, handled=False, message=replies.TOO_MANY_AUTH)

    def _store_error(self, session: Session, login: str | None, exc: StoreError) -> AuthResult:
        log_event("store_error", peer=peer_of(session), login=login or "(invalid)", error=exc.message)
        return AuthResult(success=False, handled=False, message=replies.STORE_UNAVAILABLE_AUTH)

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's hook for an exception that ends a command: one log line,
        never a traceback (a client that closed right after ``220 Ready to start
        TLS`` printed a multi-line TLSSetupException each time: issue 23)."""
        log_event("session_error", error=type(error).__name__, detail=" ".join(str(error).split())[:200] or None)
        self.metrics.refused("session_error")
        return replies.STORE_UNAVAILABLE

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        login = session.auth_data
        try:
            check = await self.envelope_checks.read(login, address)  # read now, whatever AUTH read
        except StoreError as exc:
            log_event("store_error", peer=peer_of(session), login=login, error=exc.message)
            self.metrics.refused("store_error")
            return replies.STORE_UNAVAILABLE
        if check.status != "ok" or check.stamp != getattr(session, "credential_stamp", check.stamp):
            # Deleted, or reset (or deleted and made again) since this session authenticated: a leaked
            # password's session ends here (issue 23). The reply goes out before the close.
            reason = check.status if check.status != "ok" else "credential_changed"
            log_event("mail_refused", peer=peer_of(session), login=login, reason=reason, note="session closed")
            self.metrics.refused(reason)
            server.loop.call_soon(server.transport.close)
            return replies.CREDENTIAL_CHANGED if reason == "credential_changed" else replies.REFUSALS[reason]
        if not check.sender_allowed:
            log_event("mail_refused", peer=peer_of(session), login=login, reason="sender_mismatch",
                      sender=address or "<>")
            self.metrics.refused("sender_mismatch")
            return replies.sender_not_owned(address, login)
        refused = await self.delivery.mail(envelope, address, mail_options, login)
        if refused is not None:
            return refused
        envelope.max_recipients = check.max_recipients
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        # An address given twice is delivered, and counted, once.
        if any(address.lower() == a.lower() for a in envelope.rcpt_tos):
            return replies.OK
        if len(envelope.rcpt_tos) >= getattr(envelope, "max_recipients", 0):
            self.metrics.refused("too_many_recipients")
            return replies.REFUSALS["too_many_recipients"]
        refused = await self.delivery.rcpt(envelope, address, rcpt_options, session.auth_data)
        if refused is not None:
            return refused
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.OK

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.end_transaction(envelope)
        return replies.OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            return await self._data(session, envelope, envelope.body)
        finally:
            self.end_transaction(envelope)

    def end_transaction(self, envelope: Envelope | None) -> None:
        """RSET, the end of DATA or a client gone: what delivery holds for the transaction goes."""
        self.delivery.end(envelope)

    async def _data(self, session: Session, envelope: Envelope, body: Body) -> str:
        """The body is this call's to close (servers/body.py), or the settling's once it is handed on."""
        handed_on = False
        try:
            login = session.auth_data
            recipients = envelope.rcpt_tos  # distinct already (handle_RCPT); RCPT TO is the truth, Bcc included
            queue_id = os.urandom(10).hex().upper()  # 80 random bits, as uuid4's 20 digits without its object
            source_id = f"serve:{queue_id}"
            received = (f"Received: from {session.host_name or 'unknown'} ({peer_of(session)}) by "
                        f"{self.config.hostname} (smtpctl) with ESMTPSA id {queue_id}\r\n").encode()
            refused = await self._header_from_refused(session, body, login)
            if refused is not None:
                return refused
            try:  # Maildir: staged in tmp/, published once billed (docs/servers.md, crash safety); relay: the leg
                message = await self.delivery.take(envelope, queue_id, received, body)
            except OSError as exc:
                log_event("delivery_failed", login=login, queue_id=queue_id, error=type(exc).__name__)
                self.metrics.refused("delivery_failed")
                return replies.DELIVERY_FAILED
            # From here on the message is settled to the end even if the client goes
            # away (aiosmtpd cancels the handler): once billed, it is delivered.
            settle = asyncio.ensure_future(self._settle(login, recipients, queue_id, source_id, message, body))
            handed_on = True
            return await asyncio.shield(settle)
        finally:
            if not handed_on:
                body.close()

    async def _header_from_refused(self, session: Session, body: Body, login: str) -> str | None:
        """Sender alignment covers the header From too (issue 23: another
        tenant's From was delivered when the envelope was aligned): each of its
        addresses must be one the login may send from, by the same rule and
        setting as MAIL FROM; else the message is refused at the end of DATA,
        nothing delivered or billed."""
        for address in header_from(body.header_lines()):
            try:
                check = await self.envelope_checks.read(login, address)
            except StoreError as exc:
                log_event("store_error", peer=peer_of(session), login=login, error=exc.message)
                return replies.STORE_UNAVAILABLE
            if not check.sender_allowed:
                log_event("message_refused", peer=peer_of(session), login=login, reason="header_from_mismatch",
                          header_from=address)
                self.metrics.refused("sender_mismatch")
                return replies.header_from_not_owned(address, login)
        return None

    async def _settle(self, login: str, recipients: list[str], queue_id: str, source_id: str,
                      message: Taken, body: Body) -> str:
        try:
            return await self._bill_and_deliver(login, recipients, queue_id, source_id, message)
        finally:
            message.release()
            body.close()

    async def _bill_and_deliver(self, login: str, recipients: list[str], queue_id: str, source_id: str,
                                message: Taken) -> str:
        """Admit (check and bill) the message, then deliver it (publish it, or send its data on,
        taking it off the bill if the next hop refuses it): delivered equals billed."""
        try:
            admission = await self.meter.admit(login, len(recipients), source_id)
        except Exception as exc:  # the store: nothing recorded, nothing delivered; the client retries
            message.discard()
            log_event("store_error", login=login, queue_id=queue_id, error=getattr(exc, "message", type(exc).__name__))
            self.metrics.refused("store_error")
            return replies.STORE_UNAVAILABLE
        for crossing in admission.crossings:
            log_event("limit_exceeded", account=crossing.account, day=crossing.day, emails=crossing.emails,
                      limit=crossing.limit, revoked=",".join(crossing.revoked_credentials))
            self.metrics.crossing()
        if not admission.accepted:
            message.discard()
            log_event("message_refused", login=login, queue_id=queue_id, recipients=len(recipients),
                      reason=admission.status)
            self.metrics.refused(admission.status)
            return replies.refusal(admission.status, admission.refused_by)
        refused = await message.deliver(login, queue_id, source_id)
        if refused is not None:
            return refused
        log_event("message", login=login, queue_id=queue_id, recipients=len(recipients), emails=admission.emails,
                  delivered=self.delivery.where)
        self.metrics.accepted(admission.emails)
        return replies.queued(queue_id)

    def close(self) -> None:
        self.cpu.shutdown(wait=False)
        self.delivery.close()

