"""What crossing the daily limit does (RULES: every credential of the
account deleted, creation blocked, in the same transaction as the message),
and an operator's own blocks."""

from __future__ import annotations

from typing import Any, NamedTuple

from smtpctl.core.directory.accounts import effective_limit, get_account, limit_warning, sent_today
from smtpctl.core.directory.credentials import revoke_account_credentials
from smtpctl.core.model.clock import now_iso
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.model.records import Account
from smtpctl.core.notices import events
from smtpctl.core.store import Store


class Crossing(NamedTuple):
    """An account went over its daily limit."""

    account: str
    day: str
    emails: int  # the day's outbound count at the email that crossed
    limit: int
    enforced: bool  # False when the day is already over (a late import)
    revoked_credentials: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "day": self.day, "emails": self.emails, "limit": self.limit,
                "enforced": self.enforced, "revoked_credentials": list(self.revoked_credentials)}


class AccountState(NamedTuple):
    """What ``_enforce`` reads of an account."""

    name: str
    blocked: bool


def enforce(store: Store, crossed_at: dict[tuple[int, str], int], before: dict[tuple[int, str], int],
             accounts: dict[int, Account] | dict[int, AccountState], limits: dict[int, int],
             current_day: str) -> list[Crossing]:
    """Apply the daily-limit rule to every (account, day) this batch took over its limit."""
    crossings = []
    for (account_id, day), count in sorted(crossed_at.items()):
        account, limit = accounts[account_id], limits[account_id]
        if day != current_day:
            if before.get((account_id, day), 0) <= limit:  # newly over, on a day already past
                crossing = Crossing(account.name, day, count, limit, enforced=False)
                events.limit_crossed(store, {**crossing.as_dict(), "blocked": False})
                crossings.append(crossing)
            continue
        live = store.account_logins(account_id)
        if not live and account.blocked:
            continue  # already revoked and blocked: nothing outlives the crossing
        reason = f"daily limit of {limit:,} emails exceeded on {day} ({count:,} sent)"
        revoke_account_credentials(store, account_id, account.name, "daily_limit", day)
        for key in [k for k in store.txn_memo if k[0] == "sender"]:
            del store.txn_memo[key]  # the admissions after this one see the credentials gone
        if not account.blocked:
            store.update_account(account_id, blocked_at=now_iso(), block_kind="limit", block_reason=reason)
            events.account_blocked(store, account.name, "limit", reason, live)
        store.audit("account.limit_exceeded", "account", account.name, account=account.name,
                    details={"day": day, "emails": count, "limit": limit, "revoked_credentials": live,
                             "blocked": not account.blocked})
        crossing = Crossing(account.name, day, count, limit, enforced=True, revoked_credentials=tuple(live))
        events.limit_crossed(store, {**crossing.as_dict(), "blocked": not account.blocked})
        crossings.append(crossing)
    return crossings


def block_account(store: Store, name: str, reason: str, *, revoke: bool = False) -> dict[str, Any]:
    """Block credential creation for an account by hand; optionally revoke its credentials.

    Raises ``NotFound`` or ``InvalidInput`` (empty reason). An account already
    blocked keeps its block (and may still have its credentials revoked).
    """
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("a block needs a reason (--reason TEXT)")
    if len(reason) > 500:
        raise InvalidInput("the reason is longer than 500 characters")
    with store.write():
        account = get_account(store, name)
        revoked = revoke_account_credentials(store, account.id, account.name, "block") if revoke else []
        status = "unchanged"
        if not account.blocked:
            store.update_account(account.id, blocked_at=now_iso(), block_kind="manual", block_reason=reason)
            events.account_blocked(store, account.name, "manual", reason, revoked)
            status = "blocked"
        if status == "blocked" or revoked:
            store.audit("account.block", "account", account.name, account=account.name,
                        details={"reason": reason, "revoked_credentials": revoked, "already_blocked": account.blocked})
        account = get_account(store, name)
    return {**account.as_dict(), "status": status, "revoked_credentials": revoked}


def unblock_account(store: Store, name: str) -> dict[str, Any]:
    """Lift either kind of block. Deleted credentials are not restored.

    The result carries today's count (``sent_today``), the limit and
    ``warnings``: an account already at or over today's limit is blocked
    again by its next email.
    """
    with store.write():
        account = get_account(store, name)
        status = "unchanged"
        if account.blocked:
            store.update_account(account.id, blocked_at=None, block_kind=None, block_reason=None)
            store.audit("account.unblock", "account", account.name, account=account.name,
                        details={"was": account.block_kind, "reason": account.block_reason,
                                 "since": account.blocked_at})
            events.account_unblocked(store, account.name, account.block_kind, account.block_reason,
                                     account.blocked_at)
            account = get_account(store, name)
            status = "unblocked"
        sent, limit = sent_today(store, account), effective_limit(store, account)
    warning = limit_warning(account, sent, limit, again=True) if status == "unblocked" else None
    return {**account.as_dict(), "status": status, "sent_today": sent, "effective_daily_limit": limit,
            "warnings": [warning] if warning else []}
