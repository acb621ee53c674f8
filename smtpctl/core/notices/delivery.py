"""Sending notices: Standard Webhooks (https://www.standardwebhooks.com/),
at least once.

Each attempt is three steps: claim a due delivery (a write transaction sets
its lease), send it (no transaction open: an HTTP request may take seconds),
record the outcome (a write transaction, only while the lease is still this
worker's). Every writer holds the store's write lock (SQLite's one writer,
PostgreSQL's advisory lock), so a claim is a read-then-write no other worker
can interleave: two workers never hold one delivery's lease at once, and a
lease outlives the longest request (``LEASE_SECONDS`` > ``TIMEOUT``). A
worker killed mid-delivery leaves its lease to run out; the next claim sends
the notice again with the same ``webhook-id``, which is how a receiver
recognises a repeat.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from smtpctl import __version__
from smtpctl.core.model.clock import iso_z
from smtpctl.core.notices.endpoints import endpoint_secret, get_endpoint
from smtpctl.core.notices.outbox import TEST_KIND, new_msg_id
from smtpctl.core.store import Store

# Seconds to wait after the 1st, 2nd, ... failed attempt: the first retry
# within 10 seconds, then backing off to 8 hours; about 23.7 hours from the
# first attempt to the last (the 11th), after which the delivery is failed.
RETRY_DELAYS = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
TIMEOUT = 10.0  # seconds for one request, from connecting to the answer's status line
LEASE_SECONDS = 60  # longer than any request: a lease runs out only when its worker died
MAX_ERROR = 200


def retry_delay(failed_attempts: int) -> int | None:
    """Seconds to wait after ``failed_attempts`` failures, or None: give up (failed)."""
    if failed_attempts < 1 or failed_attempts > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[failed_attempts - 1]


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this worker holds the lease of, with what it sends."""

    notice_id: int
    endpoint_id: int
    msg_id: str
    kind: str
    url: str
    secret: str
    body: bytes
    attempts: int  # before this one
    token: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one request did: ``ok`` for a 2xx answer."""

    msg_id: str
    kind: str
    endpoint_id: int
    url: str
    ok: bool
    http_status: int | None
    error: str | None
    status: str = "pending"  # the delivery's status after it: pending (retry), delivered, failed
    attempts: int = 0
    next_attempt_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.msg_id, "type": self.kind, "endpoint": self.endpoint_id, "url": self.url, "ok": self.ok,
                "http_status": self.http_status, "error": self.error, "status": self.status,
                "attempts": self.attempts, "next_attempt_at": self.next_attempt_at}


def body(kind: str, created_at: str, data: Any) -> bytes:
    """The JSON body Standard Webhooks describes: ``{"type", "timestamp", "data"}``."""
    return json.dumps({"type": kind, "timestamp": created_at, "data": data}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def claim(store: Store) -> Claim | None:
    """Lease the oldest due delivery for ``LEASE_SECONDS``; None when nothing is due."""
    # Look first without the write lock: an idle worker looks once a second,
    # and on PostgreSQL the write lock would hold up every node's metering.
    if store.due_delivery(iso_z(store.now())) is None:
        return None
    with store.write():
        now = store.now()
        row = store.due_delivery(iso_z(now))
        if row is None:
            return None
        token = secrets.token_hex(8)
        store.lease_delivery(row["notice_id"], row["endpoint_id"], iso_z(now + timedelta(seconds=LEASE_SECONDS)),
                             token)
    return Claim(row["notice_id"], row["endpoint_id"], row["msg_id"], row["kind"], row["url"], row["secret"],
                 body(row["kind"], row["created_at"], json.loads(row["data"])), int(row["attempts"]), token)


def send(msg_id: str, url: str, secret: str, payload: bytes) -> tuple[int | None, str | None]:
    """POST ``payload`` signed with ``secret``: ``(http status, None)`` for a
    2xx answer, else ``(status or None, error)``. Redirects are not followed
    (a 3xx is a failure). The whole request, from connecting to the answer's
    status line, takes at most ``TIMEOUT`` seconds (httpx's own timeouts are
    per read: a receiver dripping its answer could hold a request past the
    lease), so asyncio cancels it at the deadline."""
    return asyncio.run(_send(msg_id, url, secret, payload))


async def _send(msg_id: str, url: str, secret: str, payload: bytes) -> tuple[int | None, str | None]:
    import httpx
    from standardwebhooks import Webhook

    moment = datetime.now(timezone.utc)  # the time of this attempt: receivers refuse one older than 5 minutes
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, payload),
        "content-type": "application/json",
        "user-agent": f"smtpctl/{__version__}",
    }
    try:
        async with asyncio.timeout(TIMEOUT):
            async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
                async with client.stream("POST", url, content=payload, headers=headers) as response:
                    status = response.status_code  # the body is not read: nothing in it is used
    except TimeoutError:
        return None, f"no answer within {TIMEOUT:g} seconds"
    except httpx.HTTPError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return None, f"{type(exc).__name__}: {text}"[:MAX_ERROR]
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}"


def record(store: Store, held: Claim, http_status: int | None, error: str | None) -> Attempt:
    """Record an attempt's outcome: delivered on a 2xx, else a retry after
    ``retry_delay``, or failed when the retries are spent."""
    attempts = held.attempts + 1
    with store.write():
        now = store.now()
        changes: dict[str, Any] = {"attempts": attempts, "last_http_status": http_status, "last_error": error,
                                   "updated_at": iso_z(now)}
        next_at = None
        if error is None:
            changes["status"] = "delivered"
        else:
            delay = retry_delay(attempts)
            if delay is None:
                changes["status"] = "failed"
            else:
                next_at = iso_z(now + timedelta(seconds=delay))
                changes.update(status="pending", next_attempt_at=next_at)
        store.finish_delivery(held.notice_id, held.endpoint_id, held.token, changes)
    return Attempt(held.msg_id, held.kind, held.endpoint_id, held.url, error is None, http_status, error,
                   changes["status"], attempts, next_at)


def deliver_next(store: Store) -> Attempt | None:
    """Claim, send and record one due delivery; None when nothing is due."""
    held = claim(store)
    if held is None:
        return None
    http_status, error = send(held.msg_id, held.url, held.secret, held.body)
    return record(store, held, http_status, error)


def send_test(store: Store, endpoint_id: object) -> Attempt:
    """Send a ``notify.test`` notice to one endpoint now, once (no retry, not
    in the outbox), and say what it answered. Raises ``InvalidInput`` or ``NotFound``."""
    endpoint = get_endpoint(store, endpoint_id)
    secret = endpoint_secret(store, endpoint.id)
    msg_id = new_msg_id()
    payload = body(TEST_KIND, iso_z(store.now()), {"endpoint": endpoint.id, "url": endpoint.url})
    http_status, error = send(msg_id, endpoint.url, secret, payload)
    return Attempt(msg_id, TEST_KIND, endpoint.id, endpoint.url, error is None, http_status, error,
                   "delivered" if error is None else "failed", 1)


def delivery_log(store: Store, *, failed: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """Deliveries, newest notice first (only the failed ones with ``failed``);
    ``limit`` 0: all. Never a secret. Raises ``InvalidInput`` (limit)."""
    from smtpctl.core.model import rules

    limit = rules.whole_number(limit, "--limit", 0, 1_000_000)
    rows = store.deliveries(status="failed" if failed else None, limit=limit)
    return [{"id": r["msg_id"], "type": r["kind"], "created_at": r["created_at"], "endpoint": int(r["endpoint_id"]),
             "url": r["url"], "status": r["status"], "attempts": int(r["attempts"]),
             "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None,
             "last_http_status": r["last_http_status"], "last_error": r["last_error"], "updated_at": r["updated_at"]}
            for r in rows]


def delivery_counts(store: Store) -> dict[str, int]:
    """Deliveries pending, delivered and failed (for ``--metrics``)."""
    return store.delivery_counts()
