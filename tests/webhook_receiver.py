"""A real webhook receiver for the notice tests: an HTTP server on
127.0.0.1 in a thread that checks every request with the Standard Webhooks
reference library (``Webhook(secret).verify``) before it counts it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    id: str
    type: str
    data: dict[str, Any]
    timestamp: str


@dataclass
class Receiver:
    secret: str | None = None
    status: int = 204  # what to answer
    hold: threading.Event | None = None  # when set: each request waits for it before it answers
    delay: float = 0.0
    port: int = 0  # 0: any free port
    received: list[Received] = field(default_factory=list)
    unverified: int = 0
    overlaps: list[str] = field(default_factory=list)  # ids that arrived while the same id was in flight
    arrived: threading.Event = field(default_factory=threading.Event)
    _in_flight: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                msg_id = self.headers.get("webhook-id", "")
                with receiver._lock:
                    if receiver._in_flight.get(msg_id):
                        receiver.overlaps.append(msg_id)
                    receiver._in_flight[msg_id] = receiver._in_flight.get(msg_id, 0) + 1
                receiver.arrived.set()
                try:
                    if receiver.hold is not None:
                        receiver.hold.wait(60)
                    if receiver.delay:
                        threading.Event().wait(receiver.delay)
                    status = receiver.status
                    try:
                        notice = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                    except Exception:
                        with receiver._lock:
                            receiver.unverified += 1
                        status = 400
                    else:
                        if 200 <= status < 300:
                            with receiver._lock:
                                receiver.received.append(Received(msg_id, notice["type"], notice["data"],
                                                                  notice["timestamp"]))
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                finally:
                    with receiver._lock:
                        receiver._in_flight[msg_id] -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.id for r in self.received]
