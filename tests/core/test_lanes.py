"""``runtime.Lanes``: the servers' threads for blocking calls (the store, the
Maildir fsync, a relay's sockets), in place of ``run_in_executor``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from smtpctl.servers.runtime import Lanes, StoreWorker


def test_a_call_answers_its_own_caller_with_its_result_or_its_exception():
    lanes = Lanes(2, "t")

    def boom(text: str) -> None:
        raise ValueError(text)

    async def main():
        ok = await lanes.run(lambda a, b: a + b, 2, 3)
        with pytest.raises(ValueError, match="mine"):
            await lanes.run(boom, "mine")
        return ok, await asyncio.gather(*(lanes.run(lambda i=i: i * i) for i in range(50)))

    ok, squares = asyncio.run(main())
    lanes.shutdown()
    assert ok == 5
    assert squares == [i * i for i in range(50)]


def test_calls_run_off_the_loop_thread_and_in_parallel_up_to_size_never_more():
    size = 4
    lanes = Lanes(size, "t")
    barrier = threading.Barrier(size, timeout=10)  # passes only when `size` calls block at once
    seen: set[int] = set()
    loop_thread = threading.get_ident()

    def meet() -> int:
        seen.add(threading.get_ident())
        barrier.wait()
        return threading.get_ident()

    async def main():
        for _ in range(3):  # threads are reused: three rounds, still `size` threads
            await asyncio.gather(*(lanes.run(meet) for _ in range(size)))

    asyncio.run(main())
    threads = list(lanes._threads)
    lanes.shutdown()
    assert len(seen) == size and loop_thread not in seen
    assert len(threads) == size


def test_more_calls_than_threads_wait_their_turn():
    lanes = Lanes(1, "t")
    order: list[int] = []

    async def main():
        await asyncio.gather(*(lanes.run(order.append, i) for i in range(20)))

    asyncio.run(main())
    lanes.shutdown()
    assert order == list(range(20))  # one thread: in the order given
    assert len(lanes._threads) == 1


def test_a_cancelled_caller_leaves_the_call_to_finish_and_the_lane_working():
    lanes = Lanes(1, "t")
    release, finished = threading.Event(), threading.Event()

    def slow() -> str:
        release.wait(10)
        finished.set()
        return "done"

    async def main():
        task = asyncio.ensure_future(lanes.run(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        return await lanes.run(lambda: "next")  # queued behind slow(): the answer of slow() goes nowhere

    assert asyncio.run(main()) == "next"
    assert finished.is_set()
    lanes.shutdown()


def test_shutdown_runs_what_was_queued_then_refuses_more():
    lanes = Lanes(1, "t")
    ran: list[int] = []
    gate = threading.Event()
    lanes.submit(gate.wait, 10)
    for i in range(5):
        lanes.submit(ran.append, i)
    gate.set()
    lanes.shutdown(wait=True)
    assert ran == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="shut down"):
        lanes.submit(ran.append, 5)
    assert not any(t.is_alive() for t in lanes._threads)


def test_the_store_worker_closes_its_store_after_the_calls_before_it(tmp_path):
    worker = StoreWorker(tmp_path / "s.db", "test")

    async def main():
        await worker.call(lambda store: None)
        return await asyncio.gather(*(worker.call(lambda store, i=i: (i, store.counts()["accounts"]))
                                      for i in range(10)))

    answers = asyncio.run(main())
    worker.close()
    assert answers == [(i, 0) for i in range(10)]
    assert not any(t.is_alive() for t in worker._pool._threads)
