"""Helpers to run smtpctl's servers as real processes in tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from tests.conftest import smtpctl_binary


class Running:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None,
                 preexec_fn: Callable[[], None] | None = None):
        """``preexec_fn`` runs in the child before smtpctl starts (e.g. to lower its resource limits)."""
        self.log = log
        self.handle = open(log, "w")
        self.proc = subprocess.Popen([smtpctl_binary(), *args], stdout=subprocess.DEVNULL, stderr=self.handle,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                     preexec_fn=preexec_fn)
        self.addresses: dict[str, tuple[str, int]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.text()
            if "event=ready" in text or ("listener=policy" in text and "event=listening" in text):
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {text}")
            time.sleep(0.05)
        else:
            raise AssertionError(f"server did not start: {self.text()}")
        for listener, host, port in re.findall(r"event=listening listener=(\w+) address=([\d.]+):(\d+)", self.text()):
            self.addresses.setdefault(listener, (host, int(port)))

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        finally:
            self.handle.close()
        return code


@contextmanager
def sink_server(handler: Any) -> Iterator[Any]:
    """An aiosmtpd server in this process (a next hop for `serve --relay`), on a free port set as
    ``handler.port``. Controller checks readiness by connecting, so it needs a real port, not 0."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        handler.port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()
