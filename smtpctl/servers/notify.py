"""``notify run``: the worker that delivers notices (docs/notices.md).

The store lives on one thread (``runtime.StoreWorker``), where each request
is sent too, so the loop only waits: for a delivery, for the next one to fall due (it
looks once a second: the first retry is due 5 seconds after a failure), or
for SIGTERM/SIGINT, after which the delivery in flight (at most
``delivery.TIMEOUT`` seconds) is finished and recorded, and the worker stops.
Several workers may share a store: each claims a delivery with a lease
(``core.notices.delivery``), so none is sent by two at once.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

from smtpctl.core.model.errors import StoreError
from smtpctl.core.notices import delivery
from smtpctl.servers.metrics import NOOP, Metrics
from smtpctl.servers.runtime import StoreWorker, log_event

POLL_SECONDS = 1.0
COUNT_EVERY = 1.0  # seconds between two refreshes of the --metrics gauges


def _log(attempt: delivery.Attempt) -> None:
    log_event("notice_delivered" if attempt.ok else "notice_attempt_failed", id=attempt.msg_id, type=attempt.kind,
              endpoint=attempt.endpoint_id, http_status=attempt.http_status, error=attempt.error,
              status=attempt.status, attempts=attempt.attempts, next_attempt_at=attempt.next_attempt_at)


def drain(store: Any) -> dict[str, int]:
    """``notify run --once``: deliver everything due now, then return what was done."""
    done = {"delivered": 0, "retrying": 0, "failed": 0}
    while (attempt := delivery.deliver_next(store)) is not None:
        _log(attempt)
        done["delivered" if attempt.ok else "retrying" if attempt.status == "pending" else "failed"] += 1
    return done


async def serve_notices(path: Path | str, actor: str, stop: asyncio.Event, scrape: list[socket.socket],
                        metrics: Metrics = NOOP) -> None:
    """Deliver notices until ``stop`` is set."""
    from smtpctl.servers.scrape import serve_endpoint

    worker = StoreWorker(path, actor, readers=0)
    endpoint = await serve_endpoint(metrics, scrape) if scrape else None
    log_event("started", server="notify")
    counted = 0.0
    try:
        while not stop.is_set():
            try:
                attempt = await worker.call(delivery.deliver_next)
                if metrics is not NOOP and time.monotonic() - counted >= COUNT_EVERY:
                    metrics.deliveries(await worker.call(delivery.delivery_counts))
                    counted = time.monotonic()
            except StoreError as exc:  # the store is down or locked: say so and try again, as a server does
                log_event("store_error", error=exc.message)
                attempt = None
            if attempt is not None:
                _log(attempt)
                if metrics is not NOOP:
                    metrics.attempt(attempt.ok)
                continue
            try:
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
    finally:
        if endpoint is not None:
            endpoint.close()
        worker.close()
        log_event("stopped", server="notify")
