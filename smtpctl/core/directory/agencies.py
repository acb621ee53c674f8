"""Agencies: they own sub-accounts and agency-assigned domains."""

from __future__ import annotations

from typing import Any

from smtpctl.core.model import rules
from smtpctl.core.model.errors import AlreadyExists, NotFound
from smtpctl.core.model.records import Agency, Outcome
from smtpctl.core.store import Store
from smtpctl.core.store.directory import AgencyCounts


def get_agency(store: Store, name: str) -> Agency:
    agency = store.agency(name)
    if agency is None:
        raise NotFound(f"agency {name!r} not found")
    return agency


def add_agency(store: Store, name: str, *, exist_ok: bool = False) -> Outcome:
    """Create an agency. Raises ``InvalidInput``, or ``AlreadyExists`` unless ``exist_ok``."""
    name = rules.normalise_name("agency", name)
    with store.write():
        existing = store.agency(name)
        if existing is not None:
            if exist_ok:
                return Outcome(existing, "unchanged")
            raise AlreadyExists(f"agency {existing.name!r} already exists")
        store.insert_agency(name)
        store.audit("agency.create", "agency", name)
        agency = get_agency(store, name)
    return Outcome(agency, "created")


def list_agencies(store: Store) -> list[dict[str, Any]]:
    counts = store.agency_counts()
    return [
        {**a.as_dict(), "accounts": counts.get(a.id, AgencyCounts(0, 0)).accounts,
         "domains": counts.get(a.id, AgencyCounts(0, 0)).domains}
        for a in store.agencies()
    ]


def agency_detail(store: Store, name: str) -> dict[str, Any]:
    agency = get_agency(store, name)
    accounts = store.accounts(agency=agency.name)
    domains = store.domains(agency=agency.name)
    return {
        **agency.as_dict(),
        "accounts": [a.name for a in accounts],
        "domains": [d.name for d in domains],
    }


def rename_agency(store: Store, old: str, new: str) -> Outcome:
    """Rename an agency; its accounts, domains and usage follow (they refer to it by id).

    ``NEW`` is validated as at ``add``; a change of case only is allowed.
    Audited as ``agency.rename``. Raises ``InvalidInput``, ``NotFound`` or
    ``AlreadyExists`` (another agency has the new name).
    """
    new = rules.normalise_name("agency", new)
    with store.write():
        agency = get_agency(store, old)
        taken = store.agency(new)
        if taken is not None and taken.id != agency.id:
            raise AlreadyExists(f"agency {taken.name!r} already exists; nothing was renamed")
        if agency.name == new:
            return Outcome(agency, "unchanged", {"old_name": agency.name})
        store.rename_agency(agency.id, new)
        store.audit("agency.rename", "agency", new, details={"old": agency.name, "new": new})
        renamed = get_agency(store, new)
    return Outcome(renamed, "renamed", {"old_name": agency.name})


def agency_removal_check(store: Store, name: str) -> Agency:
    """The agency, if ``remove_agency`` may remove it; else ``InvalidInput`` naming
    what it still owns, or its billing history (which is never deleted)."""
    agency = get_agency(store, name)
    owned = {"account": [a.name for a in store.accounts(agency=agency.name)],
             "agency-assigned domain": [d.name for d in store.domains(agency=agency.name) if d.account is None]}
    rules.refuse_removal("agency", agency.name, owned, store.usage_summary(agency_id=agency.id),
                         "remove its accounts and domains first (smtpctl account remove, smtpctl domain remove)")
    return agency


def remove_agency(store: Store, name: str) -> Outcome:
    """Remove an agency that owns nothing and has no usage; audited as ``agency.delete``.

    Raises ``NotFound``, or ``InvalidInput`` (exit 2) naming what it still owns.
    """
    with store.write():
        agency = agency_removal_check(store, name)
        store.delete_agency(agency.id)
        store.audit("agency.delete", "agency", agency.name)
    return Outcome(agency, "deleted")
