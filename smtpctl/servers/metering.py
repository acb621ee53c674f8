"""Group commit for the live paths: many sessions' admissions in one durable
transaction.

``serve`` and the policy service answer a message only after the commit that
records it (the store runs with ``synchronous=FULL``). One commit per message
makes the fsync the ceiling; here every admission waiting when the store
thread becomes free is taken in one ``run_steps`` (core/metering/live.py) call, one
transaction and one commit, and each caller is answered after that commit.
Each message is still its own step in order inside the transaction, so the
hard cap is exactly as strict as one transaction per message. Each step
names the login it meters: the batch is one metering transaction
(``run_steps(logins=...)``), which on PostgreSQL locks just those
accounts, so the nodes of a fleet meter different accounts in parallel.

``ReadBatch`` does the same for a read many sessions make (MAIL's envelope
check): the reads waiting together take one trip to the store.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable, TypeVar

from smtpctl.core.metering.live import Admission, admit_message, run_steps
from smtpctl.servers.metrics import NOOP, Metrics, timed
from smtpctl.servers.runtime import StoreWorker

T = TypeVar("T")
MAX_BATCH = 256  # bounds one transaction's time, and so every waiting client's
MAX_READS = 256  # bounds one read trip's time


class _Batcher:
    """Calls of many sessions taken together: every call waiting when the
    thread it runs on becomes free goes in one trip there and back
    (``_trip``), at most ``limit`` at a time, and each caller gets its own
    answer, or its own exception, back."""

    limit = MAX_BATCH

    def __init__(self, worker: StoreWorker):
        self.worker = worker
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self.draining = False
        self.trips = 0  # trips taken (the tests check that waiting calls shared one)

    def _enqueue(self, entry: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((entry, future))
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        return future

    async def _submit(self, entry: Any) -> Any:
        return await self._enqueue(entry)

    async def _trip(self, entries: list[Any]) -> list[Any]:
        raise NotImplementedError

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:self.limit], self.pending[self.limit:]
                try:
                    answers = await self._trip([entry for entry, _ in batch])
                except Exception as exc:  # the trip failed as a whole (for a commit: nothing of it was recorded)
                    answers = [exc] * len(batch)
                self.trips += 1
                for (_, future), answer in zip(batch, answers):
                    if future.done():
                        continue  # the client went away (a commit's message is recorded all the same)
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self.draining = False


class GroupCommit(_Batcher):
    def __init__(self, worker: StoreWorker, metrics: Metrics = NOOP):
        super().__init__(worker)
        self.run_steps = timed(_run_batch, metrics)  # the transaction's time, on the store thread

    async def admit(self, login: str, recipients: int, source_id: str) -> Admission:
        """Check and record one message (``admit_message``), sharing the commit."""
        return await self.run(partial(admit_message, login=login, recipients=recipients,
                                      source_id=source_id), login)

    async def run(self, step: Callable[[Any], T], login: str) -> T:
        """Run ``step(store)`` inside the next shared write transaction (its own
        savepoint), and answer after the commit that holds what it wrote. The
        step reads, and writes only through ``admit_message`` for
        ``login`` (a metering transaction: docs/store.md)."""
        return await self._submit((step, login))

    def start(self, step: Callable[[Any], T], login: str) -> asyncio.Future[T]:
        """``run`` for a caller that answers in a callback, not a task: the
        future that is set after the commit that holds what ``step`` wrote."""
        return self._enqueue((step, login))

    async def _trip(self, entries: list[Any]) -> list[Any]:
        return await self.worker.call(self.run_steps, entries)


def _run_batch(store: Any, batch: list[tuple[Callable[[Any], Any], str]]) -> list[Any]:
    return run_steps(store, [step for step, _ in batch], logins=[login for _, login in batch])


class ReadBatch(_Batcher):
    """A read-only store call (``fn(store, *args)``) of many sessions, taken
    together: every call waiting when the store thread (on PostgreSQL, a
    reader thread: ``StoreWorker.read``) becomes free runs in one trip there
    and back. Each is still read when its command arrives (a credential
    revoked a moment before is refused); under load one thread hand-off
    serves several sessions instead of one each, as group commit does for
    the admissions. A call that raises raises for its caller only."""

    limit = MAX_READS

    def __init__(self, worker: StoreWorker, fn: Callable[..., Any]):
        super().__init__(worker)
        self.fn = fn

    async def read(self, *args: Any) -> Any:
        return await self._submit(args)

    def _each(self, store: Any, calls: list[tuple[Any, ...]]) -> list[Any]:
        answers: list[Any] = []
        for args in calls:
            try:
                answers.append(self.fn(store, *args))
            except Exception as exc:  # noqa: BLE001 - this caller's answer; the others go on
                answers.append(exc)
        return answers

    async def _trip(self, entries: list[Any]) -> list[Any]:
        return await self.worker.read(self._each, entries)
