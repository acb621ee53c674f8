"""Where ``serve`` delivers an admitted message: two strategies, as
aiosmtpd's own handlers (``Mailbox``, ``Proxy``) are, one chosen at start
(``submission/server.py``).

- ``MaildirDelivery``: the message is staged in ``tmp/``, billed, then
  published to ``new/``; ``reconcile`` at start settles what a killed
  process left staged (docs/servers.md, crash safety).
- ``RelayDelivery``: each client transaction has its own conversation with
  the next hop, opened at MAIL; each RCPT is asked of the next hop while the
  client waits, and DATA is sent on once billed; a message the next hop
  refuses is taken off the bill. Delivered equals billed either way.

The handler (``submission/handler.py``) keeps authentication, the envelope
checks and the metering, and calls the same steps of either: ``start``,
``mail`` and ``rcpt`` (a reply refusing, or None), ``end`` (RSET, end of
DATA, disconnect), ``take`` (the message before it is billed), then the
taken message's ``discard`` (not billed) or ``deliver`` (billed: None, or
the reply refusing it), and ``release``; ``close`` at stop.
"""

from __future__ import annotations

import fcntl
import os
import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aiosmtpd.smtp import Envelope

from smtpctl.core.metering.live import cancel_message
from smtpctl.servers import replies
from smtpctl.servers.body import Body
from smtpctl.servers.metrics import Metrics
from smtpctl.servers.runtime import Lanes, StoreWorker, log_event

DELIVERY_LANES = 32  # threads for the Maildir fsync, or the relay's sockets


# -- Maildir ---------------------------------------------------------------------

# A staged file: "TIME.MQUEUEIDPPID_TOKEN.HOST" (before 0.2: "TIME.MQUEUEIDPPID.HOST", no token).
_STAGED = re.compile(r"^\d+\.M(?P<queue_id>[0-9A-F]{20})P(?P<owner>\d+(?:_[0-9a-f]{16})?)\.")
_LOCK = ".smtpctl-{owner}.lock"  # in tmp/: held (flock) by the serving process whose files carry its owner
_LOCK_FILE = re.compile(r"^\.smtpctl-(?P<owner>\d+_[0-9a-f]{16})\.lock$")


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
        # Whose staged files these are: a pid may be reused (a zombie's, another process's after a kill -9),
        # so the owner is the pid and a random token, and it is alive exactly while its lock file is locked.
        self.owner = f"{os.getpid()}_{os.urandom(8).hex()}"
        self.suffix = f"P{self.owner}.{host}"
        self._lock_fd: int | None = None

    def hold(self) -> None:
        """Lock this process's lock file in ``tmp/`` until it ends (the kernel
        lets go at exit, kill -9 included): what ``reconcile`` on another
        start asks to tell a live owner of staged files from a dead one."""
        path = self.tmp + _LOCK.format(owner=self.owner)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def release(self) -> None:
        """At a clean stop: let the lock go and remove the lock file."""
        if self._lock_fd is not None:
            os.unlink(self.tmp + _LOCK.format(owner=self.owner))
            os.close(self._lock_fd)
            self._lock_fd = None

    def stage(self, queue_id: str, mail_from: str, received: bytes, body: Body) -> str:
        """Write the message (its headers of ours, then the body, chunk by
        chunk) to ``tmp/`` and fsync it; the staged file's path."""
        staged = f"{self.tmp}{int(time.time())}.M{queue_id}{self.suffix}"
        # os.open, not open(): the buffered file's fstat, ioctl and lseek are syscalls a message need not make.
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            _write_all(fd, b"Return-Path: <" + mail_from.encode() + b">\r\n" + received)
            for chunk in body.chunks():
                _write_all(fd, chunk)
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

    def reconcile(self, billed: Callable[[list[str]], set[str]]) -> tuple[int, int]:
        """Publish or remove what dead processes left in ``tmp/``; returns (published, removed)."""
        orphans: dict[str, str] = {}
        alive: dict[str, bool] = {}
        for entry in os.scandir(self.path / "tmp"):
            lock = _LOCK_FILE.match(entry.name)
            if lock is not None:  # a process's lock, with or without staged files: gone with its owner below
                alive.setdefault(lock["owner"], lock["owner"] != self.owner and self._held(lock["owner"]))
                continue
            m = _STAGED.match(entry.name)
            if m is None:
                continue
            owner = m["owner"]
            if owner not in alive:
                alive[owner] = owner != self.owner and self._held(owner)
            if not alive[owner]:
                orphans[f"serve:{m['queue_id']}"] = entry.path
        for owner, live in alive.items():
            if not live and owner != self.owner:
                self.discard(self.tmp + _LOCK.format(owner=owner))
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


    def _held(self, owner: str) -> bool:
        """Is the owner of staged files alive: is its lock file locked? No lock
        file (an owner from before 0.2, or one killed before it locked) is
        no live owner: such files are settled by billing, as a dead one's."""
        try:
            fd = os.open(self.tmp + _LOCK.format(owner=owner), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # (closing lets go of a lock just taken)
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def prepare_maildir(path: Path) -> None:
    """Create a Maildir (cur, new, tmp; 0700) if it is not one yet."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


class MaildirDelivery:
    """Stage in ``tmp/``, publish after billing, reconcile at start."""

    where = "maildir"

    def __init__(self, path: Path, worker: StoreWorker):
        self.spool, self.worker = MaildirSpool(path), worker
        self.lanes = Lanes(DELIVERY_LANES, "smtpctl-deliver")
        self.description = f"maildir:{path}"

    async def start(self) -> None:
        """Settle what a stopped server left staged: billed ones delivered, the rest removed."""
        self.spool.hold()
        published, removed = await self.worker.call(lambda store: self.spool.reconcile(store.existing_source_ids))
        if published or removed:
            log_event("reconciled", published=published, removed=removed,
                      note="messages a stopped server left staged: billed ones delivered, the rest removed")

    async def mail(self, envelope: Envelope, address: str, options: list[str], login: str) -> str | None:
        return None

    async def rcpt(self, envelope: Envelope, address: str, options: list[str], login: str) -> str | None:
        return None

    def end(self, envelope: Envelope | None) -> None:
        pass

    async def take(self, envelope: Envelope, queue_id: str, received: bytes, body: Body) -> "StagedMessage":
        """Stage the message in ``tmp/`` (fsynced); raises ``OSError`` with nothing kept."""
        staged = await self.lanes.run(self.spool.stage, queue_id, envelope.mail_from, received, body)
        return StagedMessage(self.spool, staged)

    def close(self) -> None:
        self.lanes.shutdown(wait=False)
        self.spool.release()


class StagedMessage:
    """One message staged in ``tmp/``: published once billed, else removed."""

    def __init__(self, spool: MaildirSpool, staged: str):
        self.spool, self.staged = spool, staged

    def discard(self) -> None:
        self.spool.discard(self.staged)

    async def deliver(self, login: str, queue_id: str, source_id: str) -> str | None:
        try:
            self.spool.publish(self.staged)  # one rename: cheaper on the loop than a hop to a thread and back
        except OSError as exc:  # billed and staged: the next start publishes it (reconcile)
            log_event("publish_failed", login=login, queue_id=queue_id, error=type(exc).__name__)
        return None

    def release(self) -> None:
        pass


# -- relay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NextHop:
    """``--relay`` and how to speak to it."""
    host: str
    port: int
    hostname: str  # ours, in its EHLO
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


_LEADING_DOT = re.compile(rb"(?m)^\.")  # dot-stuffing, as smtplib's data() does it (RFC 5321 4.5.2)


class RelayLeg:
    """One client transaction's conversation with the next hop, opened at
    MAIL: each RCPT is asked of the next hop while the client waits, so a
    recipient it refuses is refused to the client and never billed."""

    def __init__(self, hop: NextHop):
        self.hop = hop
        self.client: smtplib.SMTP | None = None

    def open(self, mail_from: str, options: list[str]) -> tuple[int, bytes]:
        hop = self.hop
        client = self.client = smtplib.SMTP(hop.host, hop.port, local_hostname=hop.hostname, timeout=30)
        client.ehlo()
        if hop.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if hop.username:
            client.login(hop.username, hop.password or "")
        return client.mail(mail_from, [o for o in options if o.upper().startswith(("BODY=", "SIZE="))])

    def rcpt(self, address: str, options: list[str]) -> tuple[int, bytes]:
        assert self.client is not None
        return self.client.rcpt(address)

    def data(self, received: bytes, body: Body) -> tuple[int, bytes]:
        """smtplib's ``data``, sending the body chunk by chunk as it is read
        (a spooled body is never read into memory whole)."""
        client = self.client
        assert client is not None
        client.putcmd("data")
        code, text = client.getreply()
        if code != 354:
            return code, text
        client.send(received)
        ends_line = True
        for chunk in body.chunks():  # each ends at a line's end: stuffed on its own as a whole body would be
            client.send(_LEADING_DOT.sub(b"..", chunk))
            ends_line = chunk.endswith(b"\r\n")
        client.send(b".\r\n" if ends_line else b"\r\n.\r\n")
        return client.getreply()

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


class RelayDelivery:
    """The next hop decides each recipient while the client waits, and gets
    the data once the message is billed; what it refuses is not billed."""

    def __init__(self, hop: NextHop, worker: StoreWorker, metrics: Metrics):
        self.hop, self.worker, self.metrics = hop, worker, metrics
        self.lanes = Lanes(DELIVERY_LANES, "smtpctl-deliver")
        self.where = self.description = f"relay:{hop.host}:{hop.port}"

    async def start(self) -> None:
        pass

    async def mail(self, envelope: Envelope, address: str, options: list[str], login: str) -> str | None:
        """Open the transaction's leg to the next hop (closed at DATA, RSET or disconnect)."""
        leg = RelayLeg(self.hop)
        try:
            code, text = await self.lanes.run(leg.open, address, options)
        except (OSError, smtplib.SMTPException) as exc:
            leg.close()
            log_event("relay_unavailable", login=login, error=type(exc).__name__)
            self.metrics.refused("relay_unavailable")
            return replies.NEXT_HOP_UNAVAILABLE
        if code >= 300:
            leg.close()
            return replies.relayed(code, text)
        envelope.relay_leg = leg
        return None

    async def rcpt(self, envelope: Envelope, address: str, options: list[str], login: str) -> str | None:
        leg: RelayLeg | None = getattr(envelope, "relay_leg", None)
        if leg is None:
            return None  # no transaction open (aiosmtpd asks for MAIL first)
        try:
            code, text = await self.lanes.run(leg.rcpt, address, options)
        except (OSError, smtplib.SMTPException) as exc:
            log_event("relay_unavailable", login=login, error=type(exc).__name__)
            self.metrics.refused("relay_unavailable")
            return replies.NEXT_HOP_UNAVAILABLE
        if code >= 300:
            log_event("rcpt_refused_by_relay", login=login, code=code)
            self.metrics.refused("relay_refused")
            return replies.relayed(code, text)
        return None

    def end(self, envelope: Envelope | None) -> None:
        """End a transaction's leg, off the event loop (QUIT waits for a reply)."""
        leg = getattr(envelope, "relay_leg", None)
        if leg is not None:
            envelope.relay_leg = None
            self.close_soon(leg)

    def close_soon(self, leg: RelayLeg) -> None:
        try:
            self.lanes.submit(leg.close)
        except RuntimeError:  # shutting down: no pool left
            leg.close()

    async def take(self, envelope: Envelope, queue_id: str, received: bytes, body: Body) -> "RelayedMessage":
        """The transaction's leg, which the message now owns to its end."""
        leg: RelayLeg = envelope.relay_leg
        envelope.relay_leg = None
        return RelayedMessage(self, leg, received, body)

    def close(self) -> None:
        self.lanes.shutdown(wait=False)


class RelayedMessage:
    """One message on its leg: its data sent once billed, its bill cancelled if the next hop refuses it."""

    def __init__(self, relay: RelayDelivery, leg: RelayLeg, received: bytes, body: Body):
        self.relay, self.leg, self.received, self.body = relay, leg, received, body

    def discard(self) -> None:
        pass  # nothing sent yet: release() closes the leg

    async def deliver(self, login: str, queue_id: str, source_id: str) -> str | None:
        relay = self.relay
        try:
            code, text = await relay.lanes.run(self.leg.data, self.received, self.body)
        except (OSError, smtplib.SMTPException) as exc:
            code, text = replies.next_hop_failed(exc)
        if code == 250:
            return None
        await relay.worker.call(cancel_message, source_id)  # not delivered: not billed
        log_event("relay_refused", login=login, queue_id=queue_id, code=code)
        relay.metrics.refused("relay_refused")
        return replies.relayed(code, text)

    def release(self) -> None:
        self.relay.close_soon(self.leg)


Delivery = MaildirDelivery | RelayDelivery
Taken = StagedMessage | RelayedMessage  # a message taken for delivery, before it is billed
