"""Sending domains: dedicated (an account's) or agency-assigned (shared)."""

from __future__ import annotations

from typing import Any

from smtpctl.core.directory.accounts import get_account
from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.model import rules
from smtpctl.core.model.errors import AlreadyExists, InvalidInput, NotFound
from smtpctl.core.model.records import Domain, Outcome
from smtpctl.core.notices import events
from smtpctl.core.store import Store


def get_domain(store: Store, name: str) -> Domain:
    ascii_name = rules.normalise_domain(name)
    domain = store.domain(ascii_name)
    if domain is None:
        raise NotFound(f"domain {ascii_name!r} not found")
    return domain


def add_domain(store: Store, name: str, *, account: str | None = None, agency: str | None = None,
               exist_ok: bool = False) -> Outcome:
    """Add a dedicated (``account``) or agency-assigned (``agency``) domain.

    Exactly one owner must be given. Raises ``InvalidInput``, ``NotFound``
    (owner) or ``AlreadyExists`` (unless ``exist_ok`` and the owner matches).
    """
    if (account is None) == (agency is None):
        raise InvalidInput("give exactly one of --account (dedicated domain) or --agency (agency-assigned domain)")
    ascii_name = rules.normalise_domain(name)
    with store.write():
        if account is not None:
            owner_account = get_account(store, account)
            account_id, agency_id = owner_account.id, None
            wanted = ("dedicated", owner_account.name.lower())
        else:
            owner_agency = get_agency(store, agency)  # type: ignore[arg-type]
            account_id, agency_id = None, owner_agency.id
            wanted = ("agency-assigned", owner_agency.name.lower())
        existing = store.domain(ascii_name)
        if existing is not None:
            have = (existing.kind, (existing.account or existing.agency).lower())
            if exist_ok and have == wanted:
                return Outcome(existing, "unchanged")
            owner = f"account {existing.account!r}" if existing.account else f"agency {existing.agency!r}"
            raise AlreadyExists(f"domain {ascii_name!r} already exists ({existing.kind}, {owner})")
        store.insert_domain(ascii_name, account_id=account_id, agency_id=agency_id)
        domain = get_domain(store, ascii_name)
        store.audit("domain.create", "domain", ascii_name, account=domain.account,
                    details={"kind": domain.kind, "agency": domain.agency})
    return Outcome(domain, "created")


def list_domains(store: Store, *, account: str | None = None, agency: str | None = None) -> list[dict[str, Any]]:
    if account is not None:
        account = get_account(store, account).name
    if agency is not None:
        agency = get_agency(store, agency).name
    counts = store.domain_credential_counts()
    return [
        {**d.as_dict(), "credentials": counts.get(d.id, 0)}
        for d in store.domains(account=account, agency=agency)
    ]


def domain_detail(store: Store, name: str) -> dict[str, Any]:
    domain = get_domain(store, name)
    return {**domain.as_dict(), "credentials": dependent_logins(store, domain)}


def domain_removal_plan(store: Store, name: str) -> dict[str, Any]:
    """What ``remove_domain`` would delete: the domain and its credentials."""
    domain = get_domain(store, name)
    return {"domain": domain.name, "credentials": dependent_logins(store, domain)}


def dependent_logins(store: Store, domain: Domain) -> list[str]:
    return [c.login for c in store.credentials(domain=domain.name)]


def remove_domain(store: Store, name: str, *, expected: list[str] | None = None) -> Outcome:
    """Delete a domain and every credential on it, in one transaction; audited.

    ``expected`` is the list of logins the operator confirmed; if the domain's
    credentials changed since, nothing is deleted and ``InvalidInput`` is raised.
    """
    with store.write():
        domain = get_domain(store, name)
        logins = dependent_logins(store, domain)
        if expected is not None and sorted(expected) != sorted(logins):
            raise InvalidInput(f"the credentials on {domain.name} changed while you confirmed; nothing was removed, "
                               "run the command again")
        store.delete_domain(domain.id)
        store.audit("domain.delete", "domain", domain.name, account=domain.account,
                    details={"kind": domain.kind, "deleted_credentials": logins})
        for login in logins:
            events.credential_changed(store, "credential.deleted", login, domain.name, domain.account, "domain.remove")
    return Outcome(domain, "deleted", {"deleted_credentials": logins})
