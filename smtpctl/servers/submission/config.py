"""What ``smtpctl serve`` is told: its listeners, its delivery and its limits."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from smtpctl.core.model.clients import Network
from smtpctl.core.store import throttle
from smtpctl.servers import authcache, guard
from smtpctl.servers.body import Spool

DEFAULT_SUBMISSION = ("127.0.0.1:2525", "127.0.0.1:587")
DEFAULT_SMTPS = ("127.0.0.1:465",)


@dataclass
class ServeConfig:
    store_path: Path
    actor: str
    submission: list[tuple[str, int]]
    smtps: list[tuple[str, int]]
    tls: ssl.SSLContext
    maildir: Path
    relay: tuple[str, int] | None = None
    relay_starttls: bool = False
    relay_username: str | None = None
    relay_password: str | None = field(default=None, repr=False)
    hostname: str = "localhost"
    auth_delay: float = 1.0
    auth_cache_size: int = authcache.DEFAULT_SIZE  # 0: every AUTH verifies
    auth_cache_ttl: float = authcache.DEFAULT_TTL
    max_auth_failures: int = throttle.DEFAULT_MAX_AUTH_FAILURES
    max_auth_failures_per_login: int = throttle.DEFAULT_MAX_AUTH_FAILURES_PER_LOGIN
    failure_window: float = throttle.DEFAULT_FAILURE_WINDOW
    # --trusted-network: clients there are out of the per-client AUTH cap (never the per-login one)
    trusted_networks: tuple[Network, ...] = ()
    data_size_limit: int = 25 * 1024 * 1024
    spool: Spool = field(default_factory=Spool)  # where bodies past --spool-above wait (servers/body.py)
    max_connections: int | None = None  # None: guard.default_max_connections
    max_connections_per_client: int = guard.DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    timeout: float = 300.0  # per command once authenticated (RFC 5321 4.5.3.2.7)
    pre_auth_timeout: float = 60.0  # per command before AUTH: an idle stranger frees its slot sooner
    # Sockets already bound by runtime.listen_sockets, per listener kind; empty: serve() binds them.
    bound: dict[str, list[socket.socket]] = field(default_factory=dict, repr=False)
    # The --metrics endpoint's sockets, bound already; empty: no metrics (and prometheus-client not imported).
    metrics_bound: list[socket.socket] = field(default_factory=list, repr=False)

    @property
    def fds_per_connection(self) -> int:
        return 2 if self.relay is not None else 1  # a relayed session also holds its next-hop socket
