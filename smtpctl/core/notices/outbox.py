"""The outbox: a notice is written in the same transaction as the change it
tells of, so there is never one without the other, whatever stops the
process. Delivery is another transaction, later (``delivery``)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from smtpctl.core.model.clock import iso_z
from smtpctl.core.store import Store

# Every kind a notice may have, in the order docs/notices.md lists them.
KINDS = (
    "credential.created", "credential.reset", "credential.deleted",
    "account.blocked", "account.unblocked",
    "limit.crossed", "limit.warning",
    "statement.closed",
    "credits.low", "credits.exhausted",
)
TEST_KIND = "notify.test"  # sent by `notify test` only; never in the outbox

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_msg_id() -> str:
    """``msg_`` and a ULID: 48 bits of milliseconds and 80 random bits in
    Crockford's base32, so ids sort by time and never repeat."""
    # os.urandom, as secrets.randbits(80) reads it; importing secrets (hmac,
    # OpenSSL's hashlib, random) cost ~4 ms of start-up to every command whose
    # module imports the outbox (domain list, user list...).
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "msg_" + "".join(reversed(chars))


def emit(store: Store, kind: str, data: dict[str, Any], *, once_key: str | None = None) -> bool:
    """Write a notice of ``kind`` with ``data`` (a JSON object) to the outbox,
    in the caller's current write transaction (``store.write()``), with one
    pending delivery for each endpoint subscribed to ``kind``.

    ``once_key`` makes the notice happen at most once: a second ``emit``
    with the same key (ever, in any process) writes nothing and returns
    False. Give it what identifies the occasion, e.g.
    ``f"limit.warning:account:{account_id}:day:{day}:95"``. Without it every
    call writes a notice and returns True. The notice is rolled back with
    the transaction. Its timestamp is the store's clock.

    Raises ``ValueError`` for a kind not in ``KINDS`` and ``RuntimeError``
    outside a write transaction (both are mistakes in the calling code).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    if not store.backend.in_transaction:
        raise RuntimeError("emit() writes in the caller's transaction: call it inside store.write()")
    now = iso_z(store.now())
    notice_id = store.insert_notice(new_msg_id(), kind, json.dumps(data, sort_keys=True, default=str), now, once_key)
    if notice_id is None:
        return False
    subscribed = [endpoint["id"] for endpoint in store.endpoints() if subscribes(endpoint["events"], kind)]
    if subscribed:
        store.insert_deliveries(notice_id, subscribed, now)
    return True


def subscribes(events: str, kind: str) -> bool:
    """Whether an endpoint's stored ``events`` (a JSON list; empty: every kind) takes ``kind``."""
    wanted = json.loads(events)
    return not wanted or kind in wanted
