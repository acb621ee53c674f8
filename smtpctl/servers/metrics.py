"""Prometheus metrics for both servers and the notice worker (``--metrics HOST:PORT``).

``NOOP`` stands in when ``--metrics`` is not given, so the servers call the
same methods either way and prometheus-client is imported only by
``create_metrics``. The real counters are thread-safe (the store thread observes the
admission histogram) and cost a lock and an add each. Every metric carries
``server="serve"`` or ``server="policy"``, so one dashboard can sum a fleet
of both; docs/servers.md lists them.

The endpoint that serves them is ``servers/scrape.py``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

# Seconds: an admission transaction is a few milliseconds on a local SSD, and
# seconds while another writer holds the store.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # metering.MAX_BATCH is 256
# Label values made at start, so a dashboard sees them at 0 before the first event.
REFUSAL_REASONS = {
    "serve": ("unknown", "revoked", "sender_mismatch", "too_many_recipients", "over_limit", "store_error"),
    "policy": ("revoked", "sender_mismatch", "too_many_recipients", "over_limit", "store_error", "malformed"),
}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format every Prometheus reads
AUTH_RESULTS = ("ok", "failed", "throttled", "revoked")
POLICY_STATES = frozenset({"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"})


class Metrics:
    """What the servers count. This base class counts nothing (``NOOP``)."""

    def accepted(self, emails: int) -> None:
        """A message admitted and recorded: its emails are metered."""

    def refused(self, reason: str) -> None:
        """A command (serve) or request (policy) refused; ``reason`` is one of the code's own words."""

    def auth(self, result: str) -> None:
        """An AUTH attempt ended: ok, failed or throttled."""

    def policy_request(self, action: str, state: str) -> None:
        """A policy request answered (``action`` is the reply's first word)."""

    def crossing(self) -> None:
        """An account crossed its daily limit (its credentials were revoked)."""

    def admission(self, seconds: float, batch: int) -> None:
        """One group commit: its transaction's time, and how many messages it admitted."""

    def connection_accepted(self) -> None:
        """A connection admitted (past the caps, if any)."""

    def connection_refused(self, cap: str) -> None:
        """A connection refused at a cap: ``total`` or ``client``."""

    def connections_from(self, count: Callable[[], float]) -> None:
        """Read the open connections from ``count`` at each scrape: the server counts them anyway."""

    def deliveries(self, counts: dict[str, int]) -> None:
        """The notice deliveries in the store by state (``notify run``)."""

    def attempt(self, ok: bool) -> None:
        """A notice delivery attempt ended (``notify run``)."""

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of ``GET /metrics``."""
        return b"", CONTENT_TYPE


NOOP = Metrics()


def _registry() -> Any:
    """A registry with the process's own metrics, as every smtpctl endpoint serves them."""
    import prometheus_client as prom

    prom.disable_created_metrics()  # the *_created series only double what a scraper knows
    registry = prom.CollectorRegistry()
    prom.ProcessCollector(registry=registry)
    prom.PlatformCollector(registry=registry)
    prom.GCCollector(registry=registry)
    return registry


class PrometheusMetrics(Metrics):
    def __init__(self, server: str):
        import prometheus_client as prom
        from prometheus_client import Counter, Gauge, Histogram

        self.registry = registry = _registry()
        self._generate = prom.generate_latest
        s = ("server",)
        self._accepted = Counter("smtpctl_messages_accepted", "Messages admitted and recorded.", s,
                                 registry=registry).labels(server)
        self._emails = Counter("smtpctl_recipients_metered", "Emails (envelope recipients) recorded for billing.",
                               s, registry=registry).labels(server)
        refusals = Counter("smtpctl_refusals", "Commands (serve) or policy requests refused, by reason.",
                           ("server", "reason"), registry=registry)
        self._refusals = {reason: refusals.labels(server, reason) for reason in REFUSAL_REASONS[server]}
        self._refusals_family = refusals
        self._server = server
        self._crossings = Counter("smtpctl_limit_crossings", "Accounts that crossed their daily limit.", s,
                                  registry=registry).labels(server)
        self._latency = Histogram("smtpctl_store_admission_seconds",
                                  "Time of one admission transaction (a group commit) on the store thread.", s,
                                  buckets=LATENCY_BUCKETS, registry=registry).labels(server)
        self._batch = Histogram("smtpctl_group_commit_batch_size", "Messages admitted in one group commit.", s,
                                buckets=BATCH_BUCKETS, registry=registry).labels(server)
        self._open = Gauge("smtpctl_connections", "Connections open now.", s, registry=registry).labels(server)
        self._opened = Counter("smtpctl_connections_accepted", "Connections admitted.", s,
                               registry=registry).labels(server)
        self._auth: dict[str, Any] = {}
        self._policy: dict[tuple[str, str], Any] = {}
        if server == "serve":  # the policy service has no caps and sees no AUTH
            refused = Counter("smtpctl_connections_refused", "Connections refused at a cap.", ("server", "cap"),
                              registry=registry)
            self._conn_refused = {cap: refused.labels(server, cap) for cap in ("total", "client")}
            auth = Counter("smtpctl_auth_attempts", "AUTH attempts by result.", ("server", "result"),
                           registry=registry)
            self._auth = {result: auth.labels(server, result) for result in AUTH_RESULTS}
        else:
            self._policy_family = Counter("smtpctl_policy_requests", "Policy requests by action and state.",
                                          ("server", "action", "state"), registry=registry)

    def accepted(self, emails: int) -> None:
        self._accepted.inc()
        self._emails.inc(emails)

    def refused(self, reason: str) -> None:
        child = self._refusals.get(reason)
        if child is None:  # a reason first seen now; the code's words are few, so the table stays small
            child = self._refusals[reason] = self._refusals_family.labels(self._server, reason)
        child.inc()

    def auth(self, result: str) -> None:
        self._auth[result].inc()

    def policy_request(self, action: str, state: str) -> None:
        key = (action, state if state in POLICY_STATES else "other")  # the state is the client's text
        child = self._policy.get(key)
        if child is None:
            child = self._policy[key] = self._policy_family.labels(self._server, *key)
        child.inc()

    def crossing(self) -> None:
        self._crossings.inc()

    def admission(self, seconds: float, batch: int) -> None:
        self._latency.observe(seconds)
        self._batch.observe(batch)

    def connection_accepted(self) -> None:
        self._opened.inc()

    def connection_refused(self, cap: str) -> None:
        self._conn_refused[cap].inc()

    def connections_from(self, count: Callable[[], float]) -> None:
        self._open.set_function(count)

    def exposition(self) -> tuple[bytes, str]:
        return self._generate(self.registry), CONTENT_TYPE


NOTICE_STATES = ("pending", "delivered", "failed")


class NoticeMetrics(Metrics):
    """``notify run --metrics``: the deliveries in the store by status, as
    gauges (``smtpctl_notice_deliveries{state=...}``), which the worker sets
    from one count query at most once a second: a scrape reads them and
    never touches the store (the worker's connection is its own thread's)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.registry = _registry()
        self._generate = prom.generate_latest
        family = prom.Gauge("smtpctl_notice_deliveries", "Notice deliveries in the store, by state.",
                            ("server", "state"), registry=self.registry)
        self._states = {state: family.labels("notify", state) for state in NOTICE_STATES}
        self._attempts = prom.Counter("smtpctl_notice_attempts", "Delivery attempts made by this worker, by result.",
                                      ("server", "result"), registry=self.registry)
        for result in ("ok", "failed"):
            self._attempts.labels("notify", result)

    def deliveries(self, counts: dict[str, int]) -> None:
        for state, gauge in self._states.items():
            gauge.set(counts.get(state, 0))

    def attempt(self, ok: bool) -> None:
        self._attempts.labels("notify", "ok" if ok else "failed").inc()

    def exposition(self) -> tuple[bytes, str]:
        return self._generate(self.registry), CONTENT_TYPE


def create_metrics(server: str) -> Metrics:
    """Real metrics for ``server`` ("serve" or "policy"); imports prometheus-client."""
    return PrometheusMetrics(server)


def timed(fn: Callable[..., Any], metrics: Metrics) -> Callable[..., Any]:
    """``fn(store, batch)`` that reports its time and the batch's size to ``metrics``
    (``fn`` itself without ``--metrics``: nothing would read the clock's answer)."""
    if metrics is NOOP:
        return fn

    def run(store: Any, batch: list) -> Any:
        start = time.perf_counter()
        try:
            return fn(store, batch)
        finally:
            metrics.admission(time.perf_counter() - start, len(batch))

    return run
