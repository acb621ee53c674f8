"""Use cases: load, apply a rule, write, in one transaction each.

Every function takes an open ``Store`` and plain values, and returns model
objects or ``Outcome``s. They raise ``SmtpctlError`` subclasses only; nothing
here knows about a command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smtpctl.core import rules
from smtpctl.core.errors import AlreadyExists, AuthFailed, Blocked, InvalidInput, LimitReached, NotFound, StoreError
from smtpctl.core.models import Account, Agency, Credential, Domain, Outcome
from smtpctl.core.reads import (  # noqa: F401 - re-exported: the use cases are all named here
    EffectiveSettings, _BadStoredValue, effective_limit, effective_setting, effective_settings, get_account,
    get_agency, list_accounts, today,
)
from smtpctl.core.store import Store
from smtpctl.core.store.audit import NameSpan

# -- settings ------------------------------------------------------------------


def settings_view(store: Store) -> list[dict[str, Any]]:
    """Each setting with its value, default and source (``set``, ``default``, or
    ``invalid``: a stored value that fails its rule, shown as stored)."""
    stored = store.settings()
    effective = effective_settings(store)
    rows = []
    for key, setting in rules.SETTINGS.items():
        value = dict.__getitem__(effective, key)
        bad = isinstance(value, _BadStoredValue)
        rows.append({
            "key": key,
            "value": value.raw if bad else value,
            "default": setting.default,
            "source": "invalid" if bad else "set" if key in stored else "default",
            "description": setting.description,
        })
    return rows


def set_setting(store: Store, key: str, value: str) -> Outcome:
    """Validate and store one setting; audited. Raises ``InvalidInput``.

    ``Outcome.extra["warnings"]`` lists what an operator should know: a value
    that departs from the service's rules (docs/rules.md), a lower cap or limit
    that objects already exceed, a price change that reprices past months.
    An invalid stored value (see ``effective_settings``) is replaced like any other.
    """
    parsed = rules.parse_setting(key, value)
    with store.write():
        old = _stored_or_raw(store, key)
        if str(old) == str(parsed) and key in store.settings():
            return Outcome(_SettingView(key, parsed), "unchanged", {"warnings": []})
        store.put_setting(key, str(parsed))
        store.audit("setting.set", "setting", key, details={"old": str(old), "new": str(parsed)})
        warnings = setting_warnings(store, key, old, parsed)
    return Outcome(_SettingView(key, parsed), "updated", {"warnings": warnings})


def unset_setting(store: Store, key: str) -> Outcome:
    """Put one setting back to its default (docs/rules.md); audited as ``setting.unset``.

    Raises ``InvalidInput`` for an unknown key. A setting that was never set
    is reported ``unchanged``.
    """
    if key not in rules.SETTINGS:
        rules.parse_setting(key, "")  # the one message that lists the known keys
    default = rules.SETTINGS[key].default
    with store.write():
        if key not in store.settings():
            return Outcome(_SettingView(key, default), "unchanged", {"source": "default", "warnings": []})
        old = _stored_or_raw(store, key)
        store.delete_setting(key)
        store.audit("setting.unset", "setting", key, details={"old": str(old), "new": str(default)})
        warnings = setting_warnings(store, key, old, default)
    return Outcome(_SettingView(key, default), "updated", {"source": "default", "warnings": warnings})


def _stored_or_raw(store: Store, key: str) -> Any:
    """The setting's value, or the text stored when that fails its rule (so
    that ``store set`` and ``store unset`` can replace it)."""
    value = dict.__getitem__(effective_settings(store), key)
    return value.raw if isinstance(value, _BadStoredValue) else value


def setting_warnings(store: Store, key: str, old: Any, new: Any) -> list[str]:
    """What changing ``key`` from ``old`` to ``new`` means beyond the value itself."""
    warnings = []
    if key == "credentials_per_domain":
        if new > rules.DEFAULT_CREDENTIALS_PER_DOMAIN:
            warnings.append(f"credentials_per_domain {new} departs from the service's rule of at most "
                            f"{rules.DEFAULT_CREDENTIALS_PER_DOMAIN} SMTP credentials per dedicated domain")
        counts = store.domain_credential_counts()
        over = sorted(d.name for d in store.domains() if counts.get(d.id, 0) > new)
        if over:
            holds = "holds" if len(over) == 1 else "hold"
            warnings.append(f"{_count(len(over), 'domain')} already {holds} more than {_count(new, 'SMTP credential')} "
                            f"({_names(over)}); they keep them, and take no new one until below the cap")
    elif key == "default_daily_limit":
        if new != rules.DEFAULT_DAILY_LIMIT:
            warnings.append(f"default_daily_limit {new:,} departs from the service's rule of "
                            f"{rules.DEFAULT_DAILY_LIMIT:,} emails per account per day")
        following = [a for a in store.accounts() if a.daily_limit is None]
        day = _today(store)
        totals = store.outbound_totals([(a.id, day) for a in following])
        reached = [f"{a.name} ({totals[(a.id, day)]:,})" for a in following if totals.get((a.id, day), 0) >= new]
        if reached:
            warnings.append(f"{_count(len(reached), 'account')} on the default limit already sent {new:,} or more "
                            f"emails today: {_names(reached)}; the next email of each blocks it and revokes its "
                            "SMTP credentials")
    elif key == "price_per_1000":
        if new != rules.DEFAULT_PRICE_PER_1000:
            warnings.append(f"price_per_1000 {new} departs from the service's price of "
                            f"${rules.DEFAULT_PRICE_PER_1000} per 1,000 emails")
        if old != new:
            month_start = _today(store)[:8] + "01"
            past = store.emails_before(month_start)
            if past["emails"]:
                warnings.append(f"reports price all usage at the current price, so this also reprices the "
                                f"{past['emails']:,} emails billed before {month_start} (since {past['first_day']}); "
                                f"past months now cost {new} per 1,000 instead of {old}")
    return warnings


_today = today


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _names(names: list[str], most: int = 10) -> str:
    """A list for one error line: the first ``most`` names, then how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class _SettingView:
    def __init__(self, key: str, value: Any):
        self.key, self.value = key, value

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value}


# -- agencies ------------------------------------------------------------------


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
        {**a.as_dict(), "accounts": counts.get(a.id, (0, 0))[0], "domains": counts.get(a.id, (0, 0))[1]}
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
    owned = []
    accounts = [a.name for a in store.accounts(agency=agency.name)]
    if accounts:
        owned.append(f"{_count(len(accounts), 'account')} ({_names(accounts)})")
    shared = [d.name for d in store.domains(agency=agency.name) if d.account is None]
    if shared:
        owned.append(f"{_count(len(shared), 'agency-assigned domain')} ({_names(shared)})")
    history = store.usage_summary(agency_id=agency.id)
    _refuse_removal("agency", agency.name, owned, history,
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


def _refuse_removal(kind: str, name: str, owned: list[str], history: dict[str, Any], first: str) -> None:
    reasons = []
    if owned:
        reasons.append("it still owns " + " and ".join(owned))
    if history["emails"]:
        reasons.append(f"it has billing history ({_count(history['emails'], 'email')}, {history['first_day']} to "
                       f"{history['last_day']}), which is never deleted, so it can never be removed "
                       f"(rename it instead: smtpctl {kind} rename)")
    if not reasons:
        return
    advice = f"; {first}" if owned and not history["emails"] else ""
    raise InvalidInput(f"cannot remove {kind} {name!r}: {'; and '.join(reasons)}{advice}; nothing was removed")


# -- accounts ------------------------------------------------------------------


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
                    details={"agency": owner.name, "daily_limit": limit})
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
                        details={"old": account.daily_limit, "new": new})
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
    owned = []
    domains = [d.name for d in store.domains(account=account.name)]
    if domains:
        owned.append(f"{_count(len(domains), 'dedicated domain')} ({_names(domains)})")
    logins = store.account_logins(account.id)
    if logins:
        owned.append(f"{_count(len(logins), 'SMTP credential')} ({_names(logins)})")
    history = store.usage_summary(account_id=account.id)
    _refuse_removal("account", account.name, owned, history,
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
    day = _today(store)
    return store.outbound_totals([(account.id, day)]).get((account.id, day), 0)


def limit_warning(account: Account, sent: int, limit: int, *, again: bool) -> str | None:
    """The warning for an account whose count today already reaches ``limit``, else None."""
    if sent < limit:
        return None
    where = "over" if sent > limit else "at"
    blocks = "blocks it again" if again else "blocks credential creation"
    return (f"{account.name} has already sent {_count(sent, 'email')} today, {where} its daily limit of {limit:,}: its "
            f"next email {blocks} and revokes its SMTP credentials; raise the limit with: "
            f"smtpctl account set-limit {quote_name(account.name)} N")


def quote_name(name: str) -> str:
    """A name as a shell word, for the commands messages suggest."""
    import shlex

    return shlex.quote(name)


# -- domains -------------------------------------------------------------------


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
    return Outcome(domain, "deleted", {"deleted_credentials": logins})


# -- SMTP credentials ----------------------------------------------------------

BLOCKED_MESSAGE = "SMTP Credential creation is blocked. Please contact support…"


def blocked_message(account: Account) -> str:
    """The service's own message, then the account, why, and where to read more."""
    # A limit block's reason already says "daily limit of N emails exceeded on ...".
    by = " by an operator" if account.block_kind == "manual" else ""
    reason = f": {account.block_reason}" if account.block_reason else ""
    return (f"{BLOCKED_MESSAGE} (account {account.name} is blocked{by}{reason}; "
            f"more: smtpctl account show {quote_name(account.name)})")


def get_credential(store: Store, login: str) -> Credential:
    name, domain = rules.parse_login(login)
    credential = store.credential(f"{name}@{domain}")
    if credential is None:
        raise NotFound(f"SMTP credential {name}@{domain} not found")
    return credential


def create_credential(store: Store, login: str, password: str | None, *, exist_ok: bool = False) -> Outcome:
    """Create an SMTP credential ``name@domain`` on a dedicated domain.

    ``password`` is the chosen password, or ``None`` to generate one (it is
    returned once, in ``Outcome.extra["password"]``). Checks, in order, and
    raises: ``InvalidInput`` (bad login or password), ``NotFound`` (no such
    domain), ``InvalidInput`` (agency-assigned domain), ``AlreadyExists``
    (login taken; with ``exist_ok`` the existing credential is returned
    unchanged and its password is left alone), ``Blocked`` (creation is
    blocked for the account), ``LimitReached`` (the domain already holds its
    cap of live credentials). Nothing is written when it raises.
    """
    from smtpctl.core import passwords  # here, so commands that take no password never load hashlib or secrets
    name, domain_name = rules.parse_login(login)
    generated = password is None
    secret = passwords.generate_password() if generated else passwords.validate_password(password)  # type: ignore[arg-type]
    # Hash before taking the write lock: parallel creators queue on the lock,
    # so it must be held for milliseconds, not for a 30 ms hash each.
    password_hash = passwords.hash_password(secret)
    full_login = f"{name}@{domain_name}"
    with store.write():
        domain = get_domain(store, domain_name)
        if domain.account is None:
            raise InvalidInput(
                f"{domain.name} is an agency-assigned domain; SMTP credentials live on a sub-account's "
                "dedicated domain (smtpctl domain add DOMAIN --account ACCOUNT)"
            )
        existing = store.credential(full_login)
        if existing is not None:
            if exist_ok:
                return Outcome(existing, "unchanged")
            raise AlreadyExists(f"SMTP credential {full_login} already exists")
        account = get_account(store, domain.account)
        if account.blocked:
            raise Blocked(blocked_message(account))
        cap = int(effective_settings(store)["credentials_per_domain"])
        live = dependent_logins(store, domain)
        if rules.credential_cap_reached(len(live), cap):
            raise LimitReached(
                f"{domain.name} already holds {len(live)} SMTP credentials, the most a domain may hold ({cap}): "
                f"{', '.join(live)}; delete one first"
            )
        store.insert_credential(domain.id, name, full_login, password_hash)
        store.audit("credential.create", "credential", full_login, account=account.name,
                    details={"domain": domain.name, "hash_scheme": "argon2id", "generated": generated})
        credential = get_credential(store, full_login)
    return Outcome(credential, "created", {"password": secret} if generated else {})


def reset_credential(store: Store, login: str, password: str | None) -> Outcome:
    """Set a new password (``None``: generate one, returned once); audited.

    Raises ``InvalidInput`` or ``NotFound``.
    """
    from smtpctl.core import passwords  # here, so commands that take no password never load hashlib or secrets
    get_credential(store, login)  # fail fast, before the hash
    generated = password is None
    secret = passwords.generate_password() if generated else passwords.validate_password(password)  # type: ignore[arg-type]
    password_hash = passwords.hash_password(secret)
    with store.write():
        credential = get_credential(store, login)
        store.update_credential_hash(credential.id, password_hash)
        store.audit("credential.reset", "credential", credential.login, account=credential.account,
                    details={"hash_scheme": "argon2id", "generated": generated})
        credential = get_credential(store, login)
    return Outcome(credential, "updated", {"password": secret} if generated else {})


def delete_credential(store: Store, login: str) -> Outcome:
    """Delete a credential; audited. Raises ``NotFound``."""
    with store.write():
        credential = get_credential(store, login)
        store.delete_credential(credential.id)
        store.audit("credential.delete", "credential", credential.login, account=credential.account,
                    details={"domain": credential.domain})
    return Outcome(credential, "deleted")


def credential_deletion_plan(store: Store, logins: list[str], *,
                             missing_ok: bool = False) -> tuple[list[str], list[str]]:
    """Which of ``logins`` exist and which do not: ``(present, missing)``, in the order given, without repeats.

    Raises ``InvalidInput`` (a malformed login: nothing is looked up) or,
    unless ``missing_ok``, ``NotFound`` naming every missing login.
    """
    wanted = list(dict.fromkeys("{}@{}".format(*rules.parse_login(login)) for login in logins))
    if not wanted:
        raise InvalidInput("give at least one LOGIN@DOMAIN")
    present = [login for login in wanted if store.credential(login) is not None]
    missing = [login for login in wanted if login not in present]
    if missing and not missing_ok:
        if len(wanted) == 1:
            raise NotFound(f"SMTP credential {missing[0]} not found")
        raise NotFound(f"{_count(len(missing), 'SMTP credential')} not found: {_names(missing)}; nothing was "
                       "deleted (--missing-ok deletes the others)")
    return present, missing


def delete_credentials(store: Store, logins: list[str], *, missing_ok: bool = False,
                       expected: list[str] | None = None) -> list[Outcome]:
    """Delete several credentials in one transaction: all of them or, when one
    is missing and not ``missing_ok``, none (``NotFound``). Each is audited as
    ``credential.delete``. Returns one ``Outcome`` per distinct login, in
    order: ``deleted``, or ``missing`` (an object with just the login).

    ``expected`` is the list the operator confirmed (``present`` of
    ``credential_deletion_plan``); if the logins that exist changed since,
    nothing is deleted and ``InvalidInput`` is raised.
    """
    with store.write():
        present, _ = credential_deletion_plan(store, logins, missing_ok=missing_ok)
        if expected is not None and sorted(expected) != sorted(present):
            raise InvalidInput("the credentials to delete changed while you confirmed; nothing was deleted, run the "
                               "command again")
        outcomes = []
        for login in dict.fromkeys("{}@{}".format(*rules.parse_login(x)) for x in logins):
            if login not in present:
                outcomes.append(Outcome(_Missing(login), "missing"))
                continue
            outcomes.append(delete_credential(store, login))
    return outcomes


class _Missing:
    def __init__(self, login: str):
        self.login = login

    def as_dict(self) -> dict[str, Any]:
        return {"login": self.login}


def verify_credential(store: Store, login: str, password: str) -> Credential:
    """Check a password against the stored hash.

    On a match with an adopted scheme (bcrypt, SHA-crypt, argon2i) or other
    argon2 parameters, the hash is replaced by a fresh argon2id one (audited
    as ``credential.rehash``). Raises ``NotFound`` or ``AuthFailed``.
    """
    from smtpctl.core import passwords  # here, so commands that take no password never load hashlib or secrets
    credential = get_credential(store, login)
    ok, new_hash = passwords.verify_password(password, credential.password_hash)
    if not ok:
        raise AuthFailed(f"the password does not match {credential.login}")
    if new_hash is not None:
        store_rehash(store, credential, new_hash)
        credential = get_credential(store, login)
    return credential


def store_rehash(store: Store, checked: Credential, new_hash: str) -> None:
    """Replace the hash that was just verified by ``new_hash`` (argon2id); audited.

    Only the hash that was checked is replaced: a reset in between wins.
    """
    with store.write():
        current = store.credential(checked.login)
        if current is not None and current.password_hash == checked.password_hash:
            store.update_credential_hash(current.id, new_hash, touch=False)
            store.audit("credential.rehash", "credential", current.login, account=current.account,
                        details={"from": checked.scheme, "to": "argon2id"})


def list_credentials(store: Store, *, domain: str | None = None, account: str | None = None,
                     agency: str | None = None) -> list[Credential]:
    if domain is not None:
        domain = get_domain(store, domain).name
    if account is not None:
        account = get_account(store, account).name
    if agency is not None:
        agency = get_agency(store, agency).name
    return store.credentials(domain=domain, account=account, agency=agency)


def credential_detail(store: Store, login: str) -> dict[str, Any]:
    credential = get_credential(store, login)
    return {**credential.as_dict(), "settings": smtp_settings(store, credential.login)}


def smtp_settings(store: Store, login: str | None = None) -> dict[str, Any]:
    """What a credential holder configures: server, ports with security, username.

    With ``login`` the credential must exist (``NotFound``); the password is
    never part of it.
    """
    username = get_credential(store, login).login if login else None
    return {
        "host": effective_settings(store)["smtp_host"],
        "username": username,
        "recommended_port": rules.RECOMMENDED_PORT,
        "ports": [
            {"port": port, "security": security, "note": note}
            for port, security, note in rules.SMTP_PORTS
        ],
    }


# -- store care ----------------------------------------------------------------


def store_info(store: Store) -> dict[str, Any]:
    """Path, schema version, counts and size; a store not created yet (see
    ``Store.empty``) shows schema version 0, zero counts and size 0."""
    applied = store.schema_version() if store.on_disk else []
    size = store.size_bytes()
    return {
        "path": store.location,
        "schema_version": len(applied),
        "schema_step": applied[-1] if applied else None,
        "counts": store.counts(),
        "size_bytes": size,
    }


def backup_store(store: Store, target: str | os.PathLike[str], *, force: bool = False) -> dict[str, Any]:
    """Copy the store to ``target`` with the online backup API.

    Raises ``AlreadyExists`` when ``target`` exists and ``force`` is false,
    ``InvalidInput`` when it is a folder or the store itself.
    """
    target_path = Path(target).expanduser()
    if target_path.is_dir():
        raise InvalidInput(f"backup target {target_path} is a folder; give a file path")
    if target_path.exists():
        if target_path.resolve() == store.path.resolve():
            raise InvalidInput("the backup target is the store itself")
        if not force:
            raise AlreadyExists(f"{target_path} already exists; use --force to overwrite it")
    if not target_path.parent.exists():
        raise InvalidInput(f"folder {target_path.parent} does not exist")
    tmp = target_path.with_name(f".{target_path.name}.smtpctl-tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        os.close(fd)
        store.backup_to(tmp)
        os.replace(tmp, target_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write backup {target_path}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with store.write():
        store.audit("store.backup", "store", str(store.path), details={"target": str(target_path)})
    return {"path": str(target_path), "size_bytes": target_path.stat().st_size}


def copy_store(store: Store, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy the whole store to the empty store at ``dest`` (a path or a
    PostgreSQL DSN, created and migrated if new), in one transaction on
    ``dest``, and verify it: every table's row count, the usage totals, the
    last audit id and the settings equal. Audited on the source.

    Raises ``InvalidInput`` (``dest`` is the store itself, or a folder),
    ``AlreadyExists`` (``dest`` holds data), ``StoreError`` (cannot open
    ``dest``, or the copy does not verify: nothing is kept there)."""
    from smtpctl.core.store import is_dsn
    from smtpctl.core.store.copy import copy_into, is_empty

    target: str | Path = str(dest) if is_dsn(str(dest)) else Path(dest).expanduser()
    if isinstance(target, Path):
        if target.is_dir():
            raise InvalidInput(f"copy destination {target} is a folder; give a file path or a postgresql:// DSN")
        if store.engine == "sqlite" and target.exists() and target.resolve() == store.path.resolve():
            raise InvalidInput("the copy destination is the store itself")
        created = not target.exists()
    else:
        if store.engine == "postgresql" and target == store.target:
            raise InvalidInput("the copy destination is the store itself")
        created = False
    try:
        with Store.open(target, actor=store.actor) as copy:
            if not is_empty(copy):
                raise AlreadyExists(f"the copy destination {copy.location} already holds data; "
                                    "store copy writes only into an empty store")
            verified = copy_into(store, copy)
            where = copy.location
    except BaseException:
        if created and isinstance(target, Path):
            for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
                leftover.unlink(missing_ok=True)
        raise
    with store.write():
        store.audit("store.copy", "store", store.location, details={"target": where})
    return {"source": store.location, "destination": where, "counts": verified["counts"],
            "usage": verified["usage"]}


# -- the audit trail -------------------------------------------------------------


MAX_AUDIT_LIMIT = 1_000_000


def _audit_bound(text: str, zone_name: str, *, end: bool) -> str:
    """A date (whole day in the store's zone, or today, yesterday, 7d) or an ISO
    8601 time, as a UTC string.

    Raises ``InvalidInput`` for text that is neither, and for a time that
    has no UTC equivalent (``0001-01-01T00:00:00+14:00``). The end of the
    last representable day, 9999-12-31, is its last second.
    """
    from datetime import date, datetime, time, timedelta, timezone
    from zoneinfo import ZoneInfo

    try:
        if len(text) > 10 and text[10] in "Tt ":  # 2026-11-26T10:00:00Z, not "Today"
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ZoneInfo(zone_name))
        else:
            from smtpctl.core.clock import utc_now
            from smtpctl.core.usage import parse_day  # today, yesterday, 7d as in usage report

            current = utc_now().astimezone(ZoneInfo(zone_name)).date()
            day = parse_day(text, "", current)
            if end and day == date.max:
                return "9999-12-31T23:59:59Z"
            day += timedelta(days=1) if end else timedelta()
            moment = datetime.combine(day, time(), tzinfo=ZoneInfo(zone_name))
        utc = moment.astimezone(timezone.utc)
    except (ValueError, InvalidInput):
        raise InvalidInput(f"invalid date or time {text!r}: use 2026-11-26, today, yesterday, 7d (7 days ago) "
                           "or 2026-11-26T10:00:00Z") from None
    except OverflowError:  # a time near year 1 or 9999, shifted to UTC or to the next day
        raise InvalidInput(f"date or time {text!r} is out of range") from None
    return utc.isoformat()[:19] + "Z"  # as iso_z(), with the year always four digits


def audit_entries(store: Store, *, since: str | None = None, until: str | None = None, account: str | None = None,
                  action: str | None = None, actor: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The audit trail, newest first, filtered.

    ``since``/``until`` are dates (inclusive, in the store's time zone) or
    ISO 8601 times; ``action`` matches literally, exactly (``credential.create``)
    or as a prefix when it has no dot (``credential``); ``limit`` is 0 (all)
    to 1,000,000. Raises ``InvalidInput`` or ``NotFound`` (the account).
    """
    limit = rules.whole_number(limit, "--limit", 0, MAX_AUDIT_LIMIT)
    zone = str(effective_settings(store)["timezone"])
    return store.audit_entries(
        since=_audit_bound(since, zone, end=False) if since else None,
        until=_audit_bound(until, zone, end=True) if until else None,
        until_inclusive=bool(until) and "T" in until,
        account_spans=_account_name_spans(store, get_account(store, account).name) if account else None,
        action=action if action and "." in action else None,
        action_prefix=action if action and "." not in action else None,
        actor=actor or None, limit=limit)


def _account_name_spans(store: Store, name: str) -> list[NameSpan]:
    """The audit rows of an account under every name it has had.

    The trail is append-only, so its rows keep the name of their day. Walking
    back from the current name, each ``account.rename`` into a name opens it
    (rows from that rename on) and hands over to the old name (rows before
    it); a rename away from a name, or a removal, by an account that held it
    earlier closes it, so another account's rows under a reused name stay out.
    """
    spans: list[NameSpan] = []
    upper: int | None = None
    for event in reversed(store.name_history("account")):
        if upper is not None and event["id"] >= upper:
            continue
        if event["action"] == "rename" and event["new"].lower() == name.lower():
            spans.append(NameSpan(name, event["id"], upper, low_inclusive=True))
            name, upper = event["old"], event["id"]
        elif event["old"].lower() == name.lower():
            # an earlier holder let the name go here
            spans.append(NameSpan(name, event["id"], upper, low_inclusive=False))
            break
    else:
        spans.append(NameSpan(name, None, upper, low_inclusive=True))
    return spans
