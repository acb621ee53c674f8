"""Sub-accounts: their daily limits, renames and removals."""

from __future__ import annotations

from typing import Any

from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.settings import effective_setting, effective_settings, today
from smtpctl.core.model import rules
from smtpctl.core.model.errors import AlreadyExists, Fix, NotFound, Notice
from smtpctl.core.model.records import Account, Outcome
from smtpctl.core.model.words import count
from smtpctl.core.store import Store


def get_account(store: Store, name: str) -> Account:
    account = store.account(name)
    if account is None:
        raise NotFound(f"account {name!r} not found")
    return account


def effective_limit(store: Store, account: Account) -> int:
    if account.daily_limit is not None:
        return account.daily_limit
    return int(effective_settings(store)["default_daily_limit"])


def list_accounts(store: Store, agency: str | None = None, *, blocked: bool = False) -> list[dict[str, Any]]:
    """Accounts with their effective limit and domain count; only the blocked
    ones with ``blocked``. Raises ``NotFound`` for an unknown agency."""
    if agency is not None:
        agency = get_agency(store, agency).name
    default_limit = int(effective_setting(store, "default_daily_limit"))
    domain_counts = store.account_domain_counts()
    return [
        {
            **a.as_dict(),
            "effective_daily_limit": a.daily_limit if a.daily_limit is not None else default_limit,
            "domains": domain_counts.get(a.id, 0),
        }
        for a in store.accounts(agency=agency)
        if a.blocked or not blocked
    ]


def default_in_force(store: Store, *limits: int | None) -> dict[str, int]:
    """``{"default_daily_limit": N}`` when one of ``limits`` is unset (the
    store's default applies), else ``{}``: kept in an audit entry, so it says
    which number the default was then."""
    if None not in limits:
        return {}
    return {"default_daily_limit": int(effective_settings(store)["default_daily_limit"])}


def add_account(store: Store, name: str, agency: str, *, daily_limit: int | None = None,
                exist_ok: bool = False) -> Outcome:
    """Create an account under an agency.

    Raises ``InvalidInput`` (bad name or limit), ``NotFound`` (no such
    agency) or ``AlreadyExists`` (the name is taken; with ``exist_ok`` an
    account that matches agency and limit is reported unchanged).
    """
    name = rules.normalise_name("account", name)
    limit = rules.validate_daily_limit(daily_limit) if daily_limit is not None else None
    with store.write():
        owner = get_agency(store, agency)
        existing = store.account(name)
        if existing is not None:
            same = existing.agency.lower() == owner.name.lower() and (
                limit is None or existing.daily_limit == limit
            )
            if exist_ok and same:
                return Outcome(existing, "unchanged")
            if exist_ok:
                raise AlreadyExists(
                    f"account {existing.name!r} already exists with different settings "
                    f"(agency {existing.agency!r}, daily limit {existing.daily_limit or 'default'})"
                )
            raise AlreadyExists(f"account {existing.name!r} already exists (agency {existing.agency!r})")
        store.insert_account(name, owner.id, limit)
        store.audit("account.create", "account", name, account=name,
                    details={"agency": owner.name, "daily_limit": limit, **default_in_force(store, limit)})
        created = get_account(store, name)
    return Outcome(created, "created")


def account_detail(store: Store, name: str) -> dict[str, Any]:
    account = get_account(store, name)
    domains = store.domains(account=account.name)
    data = account.as_dict()
    data["effective_daily_limit"] = effective_limit(store, account)
    data["domains"] = [d.name for d in domains]
    return data


def set_account_limit(store: Store, name: str, limit: object) -> Outcome:
    """Set one account's daily limit (``"default"`` clears it); audited.

    ``Outcome.extra`` carries the ``effective_daily_limit``, today's count
    (``sent_today``) and ``warnings`` (today's count already reaches the new
    limit, so the next email blocks the account).
    """
    new = None if str(limit).strip().lower() == "default" else rules.validate_daily_limit(limit)
    with store.write():
        account = get_account(store, name)
        status = "unchanged"
        if account.daily_limit != new:
            store.update_account(account.id, daily_limit=new)
            store.audit("account.set_limit", "account", account.name, account=account.name,
                        details={"old": account.daily_limit, "new": new,
                                 **default_in_force(store, account.daily_limit, new)})
            status = "updated"
        updated = get_account(store, name)
        effective = effective_limit(store, updated)
        sent = sent_today(store, updated)
    warning = None if updated.blocked else limit_warning(updated, sent, effective, again=False)
    return Outcome(updated, status, {"previous_daily_limit": account.daily_limit, "effective_daily_limit": effective,
                                     "sent_today": sent, "warnings": [warning] if warning else []})


def rename_account(store: Store, old: str, new: str) -> Outcome:
    """Rename an account; its domains, credentials and usage follow (they refer
    to it by id), and ``audit --account NEW`` finds its earlier entries.

    Audited as ``account.rename``. Raises ``InvalidInput``, ``NotFound`` or
    ``AlreadyExists`` (another account has the new name).
    """
    new = rules.normalise_name("account", new)
    with store.write():
        account = get_account(store, old)
        taken = store.account(new)
        if taken is not None and taken.id != account.id:
            raise AlreadyExists(f"account {taken.name!r} already exists (agency {taken.agency!r}); nothing was renamed")
        if account.name == new:
            return Outcome(account, "unchanged", {"old_name": account.name})
        store.rename_account(account.id, new)
        store.audit("account.rename", "account", new, account=new, details={"old": account.name, "new": new})
        renamed = get_account(store, new)
    return Outcome(renamed, "renamed", {"old_name": account.name})


def account_removal_check(store: Store, name: str) -> Account:
    """The account, if ``remove_account`` may remove it; else ``InvalidInput``
    naming its domains and credentials, or its billing history."""
    account = get_account(store, name)
    owned = {"dedicated domain": [d.name for d in store.domains(account=account.name)],
             "SMTP credential": store.account_logins(account.id)}
    rules.refuse_removal("account", account.name, owned, store.usage_summary(account_id=account.id),
                         "remove its domains first (smtpctl domain remove DOMAIN, which deletes their credentials)")
    return account


def remove_account(store: Store, name: str) -> Outcome:
    """Remove an account that owns nothing and has no usage; audited as ``account.delete``.

    Raises ``NotFound``, or ``InvalidInput`` (exit 2) naming what it still owns.
    """
    with store.write():
        account = account_removal_check(store, name)
        store.delete_account(account.id)
        store.audit("account.delete", "account", account.name, account=account.name,
                    details={"agency": account.agency, "daily_limit": account.daily_limit,
                             "block_kind": account.block_kind, "block_reason": account.block_reason})
    return Outcome(account, "deleted")


def sent_today(store: Store, account: Account) -> int:
    """The account's outbound emails today, in the store's time zone."""
    day = today(store)
    return store.outbound_totals([(account.id, day)]).get((account.id, day), 0)


def limit_warning(account: Account, sent: int, limit: int, *, again: bool) -> Notice | None:
    """The warning for an account whose count today already reaches ``limit``, else None."""
    if sent < limit:
        return None
    where = "over" if sent > limit else "at"
    blocks = "blocks it again" if again else "blocks credential creation"
    return Notice(f"{account.name} has already sent {count(sent, 'email')} today, {where} its daily limit of "
                  f"{limit:,}: its next email {blocks} and revokes its SMTP credentials",
                  Fix(("account", "set-limit", account.name, "N"), "raise the limit with"))
