"""The cost of one hand-off from the event loop to a thread and back.

    python benchmarks/hops.py [--calls 5000] [--rounds 8]

``serve`` and ``policy serve`` make two or three such round trips a message
(the store, the Maildir fsync). Measures, interleaved, the CPU time (user +
system of this process) and wall time per round trip of a call that does
nothing, through ``loop.run_in_executor`` on a one-thread
``ThreadPoolExecutor`` and through ``smtpctl.servers.runtime.Lanes``; prints
each round and the medians. The thread sleeps between calls, as the store
thread does between batches, so each trip wakes it. Never run as a test.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smtpctl.servers.runtime import Lanes  # noqa: E402


def nothing(x: int) -> int:
    return x


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(calls: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    pool, lanes = ThreadPoolExecutor(max_workers=1), Lanes(1, "bench")

    async def executor() -> None:
        for i in range(calls):
            await loop.run_in_executor(pool, nothing, i)

    async def lane() -> None:
        for i in range(calls):
            await lanes.run(nothing, i)

    figures: dict[str, list[tuple[float, float]]] = {"run_in_executor": [], "Lanes.run": []}
    for _ in range(rounds):
        for name, trips in (("run_in_executor", executor), ("Lanes.run", lane)):
            c, t = cpu(), time.perf_counter()
            await trips()
            figures[name].append((1e6 * (cpu() - c) / calls, 1e6 * (time.perf_counter() - t) / calls))
    for name, runs in figures.items():
        each = ", ".join(f"{c:.0f}" for c, _ in runs)
        print(f"{name:16s} {statistics.median(c for c, _ in runs):6.1f} us CPU, "
              f"{statistics.median(w for _, w in runs):6.1f} us wall per round trip (medians; CPU per round: {each})")
    pool.shutdown()
    lanes.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
