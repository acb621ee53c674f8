"""Group commit for the live paths: many sessions' admissions in one durable
transaction.

``serve`` and the policy service answer a message only after the commit that
records it (the store runs with ``synchronous=FULL``). One commit per message
makes the fsync the ceiling; here every admission waiting when the store
thread becomes free is taken in one ``usage.run_steps`` call, one
transaction and one commit, and each caller is answered after that commit.
Each message is still its own step in order inside the transaction, so the
hard cap is exactly as strict as one transaction per message. Each step
names the login it meters: the batch is one metering transaction
(``usage.run_steps(logins=...)``), which on PostgreSQL locks just those
accounts, so the nodes of a fleet meter different accounts in parallel.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable, TypeVar

from smtpctl.core import usage
from smtpctl.servers.metrics import NOOP, Metrics, timed
from smtpctl.servers.runtime import StoreWorker

T = TypeVar("T")
MAX_BATCH = 256  # bounds one transaction's time, and so every waiting client's


class GroupCommit:
    def __init__(self, worker: StoreWorker, metrics: Metrics = NOOP):
        self.worker = worker
        self.run_steps = timed(_run_batch, metrics)  # the transaction's time, on the store thread
        self.pending: list[tuple[tuple[Callable[[Any], Any], str], asyncio.Future[Any]]] = []
        self.draining = False
        self.batches = 0  # commits taken, for the benchmark and the metrics

    async def admit(self, login: str, recipients: int, source_id: str) -> usage.Admission:
        """Check and record one message (``usage.admit_message``), sharing the commit."""
        return await self.run(partial(usage.admit_message, login=login, recipients=recipients,
                                      source_id=source_id), login)

    async def run(self, step: Callable[[Any], T], login: str) -> T:
        """Run ``step(store)`` inside the next shared write transaction (its own
        savepoint), and answer after the commit that holds what it wrote. The
        step reads, and writes only through ``usage.admit_message`` for
        ``login`` (a metering transaction: docs/store.md)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(((step, login), future))
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                try:
                    answers = await self.worker.call(self.run_steps, [entry for entry, _ in batch])
                except Exception as exc:  # the transaction failed: nothing of the batch was recorded
                    answers = [exc] * len(batch)
                self.batches += 1
                for (_, future), answer in zip(batch, answers):
                    if future.done():
                        continue  # the client went away; its message is recorded all the same
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self.draining = False


def _run_batch(store: Any, batch: list[tuple[Callable[[Any], Any], str]]) -> list[Any]:
    return usage.run_steps(store, [step for step, _ in batch], logins=[login for _, login in batch])
