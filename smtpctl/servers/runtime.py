"""What both servers share: structured log lines, the store on its own
thread, listen addresses, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from smtpctl.core.clock import now_iso
from smtpctl.core.errors import InvalidInput
from smtpctl.core.store import Store

T = TypeVar("T")


def log_event(event: str, **fields: Any) -> None:
    """One line per event on stderr: ``ts=... event=... key=value``. Never a secret."""
    parts = [f"ts={now_iso()}", f"event={event}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    sys.stderr.write(" ".join(parts) + "\n")
    sys.stderr.flush()


class StoreWorker:
    """Runs store calls on one thread that owns its own connection, so the
    event loop never waits on SQLite and no connection crosses threads."""

    def __init__(self, path: Path, actor: str):
        self.path, self.actor = path, actor
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smtpctl-store")
        self._store: Store | None = None

    def _run(self, fn: Callable[..., T], args: tuple) -> T:
        if self._store is None:
            self._store = Store.open(self.path, actor=self.actor)
        return fn(self._store, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, fn, args)

    def close(self) -> None:
        def shut() -> None:
            if self._store is not None:
                self._store.close()

        self._pool.submit(shut).result()
        self._pool.shutdown(wait=True)


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise InvalidInput(f"{option} takes HOST:PORT, not {text!r}")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise InvalidInput(f"{option}: port must be a number, not {port!r}") from None
    if not 0 <= number <= 65535:
        raise InvalidInput(f"{option}: port {number} is out of range")
    return host, number


def run_until_stopped(main: Callable[[asyncio.Event], Any]) -> None:
    """Run ``main(stop)`` on a new loop until SIGTERM or SIGINT sets ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
