"""The body of each notice kind, written once (docs/notices.md lists them):
the code that makes a change calls one of these in its transaction."""

from __future__ import annotations

from typing import Any

from smtpctl.core.notices.outbox import emit
from smtpctl.core.store import Store


def credential_changed(store: Store, kind: str, login: str, domain: str, account: str | None,
                       via: str | None) -> None:
    """``credential.created``, ``.reset`` or ``.deleted``: ``via`` is how it
    happened (``user`` by default; ``apply``, ``import``, ``daily_limit``,
    ``block``, ``domain.remove``)."""
    emit(store, kind, {"login": login, "domain": domain, "account": account, "via": via or "user"})


def account_blocked(store: Store, account: str, kind: str, reason: str, revoked: list[str]) -> None:
    """``account.blocked``: ``kind`` is ``limit`` or ``manual``."""
    emit(store, "account.blocked", {"account": account, "block_kind": kind, "reason": reason,
                                    "revoked_credentials": revoked})


def account_unblocked(store: Store, account: str, was: str | None, reason: str | None, since: str | None) -> None:
    emit(store, "account.unblocked", {"account": account, "was": was, "reason": reason, "blocked_since": since})


def limit_crossed(store: Store, crossing: dict[str, Any]) -> None:
    """``limit.crossed`` for the account's daily limit (``crossing`` is
    ``Crossing.as_dict()``), in the shape every window's has
    (metering/notices.py): scope, subject, window, period first."""
    emit(store, "limit.crossed", {"scope": "account", "subject": crossing["account"], "window": "day",
                                  "period": crossing["day"], **crossing})


def statement_closed(store: Store, number: str, agency: str, month: str, total: str, closed_at: str) -> None:
    emit(store, "statement.closed", {"number": number, "agency": agency, "month": month, "total": total,
                                     "closed_at": closed_at})


def credits_notice(store: Store, kind: str, balance: dict[str, Any], once_key: str) -> bool:
    """``credits.low`` or ``credits.exhausted``, once per ``once_key``: ``balance`` is ``Balance.as_dict()``."""
    return emit(store, kind, balance, once_key=once_key)
