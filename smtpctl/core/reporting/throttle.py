"""What serve's AUTH throttle holds now, and how an operator lifts it.

``serve`` counts password guesses in the store, per client (an IPv4
address or an IPv6 /64) and per login (core/store/throttle.py), and refuses
a budget with ``454`` once its failures reach the cap. ``throttled`` says
who is being counted and who is refused, and until when; ``clear_throttle``
removes a client's or a login's guesses, so an innocent sender locked out
(an office behind one NAT address, an app with a stale password on a
shared host) is let in again at once, on every node.

The caps are serve's options, not stored: both take ``limits`` (serve's
defaults unless given), and a client that ``serve --trusted-network``
exempts is never refused by its per-client cap, whatever is listed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from smtpctl.core.model import rules
from smtpctl.core.model.clients import parse_client
from smtpctl.core.model.clock import iso_z
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store import Store, throttle

DEFAULT_LIMITS = throttle.Limits(throttle.DEFAULT_MAX_AUTH_FAILURES, throttle.DEFAULT_MAX_AUTH_FAILURES_PER_LOGIN,
                                 throttle.DEFAULT_FAILURE_WINDOW)


@dataclass(frozen=True)
class Throttled:
    """One budget of the AUTH throttle in use now.

    ``scope`` is ``client`` or ``login``; ``key`` the client (an IPv4
    address or an IPv6 /64) or the login; ``failures`` the failed guesses
    that count now, ``pending`` the guesses being verified now, ``limit``
    the cap. ``blocking``: failures reach the cap, so serve answers AUTH with
    ``454`` (for a login: from every client not trusted for it) until
    ``unblocks_at``; ``clears_at`` is when the last counted failure stops
    counting (None when no failure counts). Times are ISO 8601 UTC.
    """

    scope: str
    key: str
    failures: int
    pending: int
    limit: int
    blocking: bool
    unblocks_at: str | None
    clears_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "key": self.key, "failures": self.failures, "pending": self.pending,
                "limit": self.limit, "blocking": self.blocking, "unblocks_at": self.unblocks_at,
                "clears_at": self.clears_at}


@dataclass(frozen=True)
class ThrottleCleared:
    """What ``clear_throttle`` removed: the client's and the login's guesses
    (``removed`` rows in all), and the budgets as they were just before."""

    client: str | None
    login: str | None
    removed: int
    before: tuple[Throttled, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"client": self.client, "login": self.login, "removed": self.removed,
                "before": [entry.as_dict() for entry in self.before]}


def throttle_filters(client: str | None, login: str | None, *,
                     required: bool = False) -> tuple[str | None, str | None]:
    """An operator's ``client`` and ``login`` as serve counts them (an IPv6
    address as its /64, a login in lower case). Raises ``InvalidInput`` for
    a bad one, or for neither when ``required`` (what clearing needs)."""
    if required and client is None and login is None:
        raise InvalidInput("say whose guesses to clear: --client IP, --login LOGIN, or both")
    key = parse_client(client) if client is not None else None
    if login is not None:
        name, domain = rules.parse_login(login)
        login = f"{name}@{domain}"
    return key, login


def throttled(store: Store, *, client: str | None = None, login: str | None = None,
              limits: throttle.Limits = DEFAULT_LIMITS) -> list[Throttled]:
    """The AUTH throttle's budgets in use now, per client and per login: the
    ``client``'s and the ``login``'s when given (each its own scope), else
    every one; clients first, then logins, each by key. Read only. Raises
    ``InvalidInput`` for a client that is no IP address or a login that is
    not ``name@domain``."""
    client, login = throttle_filters(client, login)
    return _throttled(store, client, login, limits)


def _throttled(store: Store, client: str | None, login: str | None, limits: throttle.Limits) -> list[Throttled]:
    _, guesses = throttle.counted(store, limits, client, login)
    everyone = client is None and login is None
    budgets: dict[tuple[str, str], list[throttle.Counted]] = {}
    for guess in guesses:
        if everyone or guess.client == client:
            budgets.setdefault(("client", guess.client), []).append(guess)
        if guess.login is not None and (everyone or guess.login == login):
            budgets.setdefault(("login", guess.login), []).append(guess)
    caps = {"client": limits.per_client, "login": limits.per_login}
    entries = []
    for (scope, key), counted in sorted(budgets.items()):
        ends = sorted(g.ends for g in counted if g.state == "failed")
        failures, limit = len(ends), caps[scope]
        blocking = failures >= limit
        entries.append(Throttled(
            scope, key, failures, len(counted) - failures, limit, blocking,
            unblocks_at=_at(ends[failures - limit]) if blocking else None,
            clears_at=_at(ends[-1]) if ends else None))
    return entries


def clear_throttle(store: Store, *, client: str | None = None, login: str | None = None,
                   limits: throttle.Limits = DEFAULT_LIMITS) -> ThrottleCleared:
    """Remove the AUTH throttle's guesses of ``client`` and of ``login`` (at
    least one), failed and pending, in one transaction with its audit entry
    (``auth.throttle_clear``); serve then counts them from nothing, on every
    node (a node's own memory of a refused client lasts seconds at most).
    Raises ``InvalidInput`` with neither, or for a bad client or login."""
    client, login = throttle_filters(client, login, required=True)
    with store.write():
        before = tuple(_throttled(store, client, login, limits))
        removed = throttle.clear(store, client, login)
        store.audit("auth.throttle_clear", "throttle", " ".join(k for k in (client, login) if k), details={
            "client": client, "login": login, "removed": removed,
            "failures": {f"{e.scope}:{e.key}": e.failures for e in before},
            "blocking": [f"{e.scope}:{e.key}" for e in before if e.blocking]})
    return ThrottleCleared(client, login, removed, before)


def _at(epoch: float) -> str:
    return iso_z(datetime.fromtimestamp(math.ceil(epoch), timezone.utc))  # never before it happens
