"""Use cases: load, apply a rule, write, in one transaction each.

Every function takes an open ``Store`` and plain values, and returns model
objects or ``Outcome``s. They raise ``SmtpctlError`` subclasses only; nothing
here knows about a command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smtpctl.core import passwords, rules
from smtpctl.core.errors import AlreadyExists, AuthFailed, Blocked, InvalidInput, LimitReached, NotFound, StoreError
from smtpctl.core.models import Account, Agency, Credential, Domain, Outcome
from smtpctl.core.store import Store

# -- settings ------------------------------------------------------------------


class _BadStoredValue:
    """A stored setting that no longer passes its rule (a store written by an
    older smtpctl, or edited by hand)."""

    def __init__(self, key: str, raw: str, reason: str):
        self.key, self.raw, self.reason = key, raw, reason

    def error(self) -> StoreError:
        return StoreError(
            f"the store holds an invalid value for setting {self.key}: {rules.shown(self.raw)} ({self.reason}); "
            f"set a valid one with: smtpctl store set {self.key} VALUE"
        )


class EffectiveSettings(dict):
    """Setting key -> value. Reading a key whose stored value is invalid raises
    ``StoreError`` (exit 7) naming the key and the fix; other keys still read,
    so a bad price does not stop ``usage status``."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, _BadStoredValue):
            raise value.error()
        return value


def effective_settings(store: Store) -> EffectiveSettings:
    """Every store setting with its value: what was set, else the RULES.md default.

    A stored value is checked by the same rule as ``store set``; one that
    fails raises ``StoreError`` when (and only when) that key is read.
    """
    stored = store.settings()
    values = EffectiveSettings()
    for key, setting in rules.SETTINGS.items():
        if key not in stored:
            values[key] = setting.default
            continue
        try:
            values[key] = setting.parse(stored[key])
        except InvalidInput as exc:
            values[key] = _BadStoredValue(key, stored[key], exc.message)
    return values


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

    An invalid stored value (see ``effective_settings``) is replaced like any other.
    """
    parsed = rules.parse_setting(key, value)
    with store.write():
        stored = store.settings()
        old = dict.__getitem__(effective_settings(store), key)
        old_text = old.raw if isinstance(old, _BadStoredValue) else str(old)
        if old_text == str(parsed) and key in stored:
            return Outcome(_SettingView(key, parsed), "unchanged")
        store.put_setting(key, str(parsed))
        store.audit("setting.set", "setting", key, details={"old": old_text, "new": str(parsed)})
    return Outcome(_SettingView(key, parsed), "updated")


class _SettingView:
    def __init__(self, key: str, value: Any):
        self.key, self.value = key, value

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value}


# -- agencies ------------------------------------------------------------------


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


# -- accounts ------------------------------------------------------------------


def get_account(store: Store, name: str) -> Account:
    account = store.account(name)
    if account is None:
        raise NotFound(f"account {name!r} not found")
    return account


def effective_limit(store: Store, account: Account) -> int:
    if account.daily_limit is not None:
        return account.daily_limit
    return int(effective_settings(store)["default_daily_limit"])


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


def list_accounts(store: Store, agency: str | None = None) -> list[dict[str, Any]]:
    if agency is not None:
        agency = get_agency(store, agency).name
    default_limit = int(effective_settings(store)["default_daily_limit"])
    domain_counts = store.account_domain_counts()
    return [
        {
            **a.as_dict(),
            "effective_daily_limit": a.daily_limit if a.daily_limit is not None else default_limit,
            "domains": domain_counts.get(a.id, 0),
        }
        for a in store.accounts(agency=agency)
    ]


def account_detail(store: Store, name: str) -> dict[str, Any]:
    account = get_account(store, name)
    domains = store.domains(account=account.name)
    data = account.as_dict()
    data["effective_daily_limit"] = effective_limit(store, account)
    data["domains"] = [d.name for d in domains]
    return data


def set_account_limit(store: Store, name: str, limit: object) -> Outcome:
    """Set one account's daily limit (``"default"`` clears it); audited."""
    new = None if str(limit).strip().lower() == "default" else rules.validate_daily_limit(limit)
    with store.write():
        account = get_account(store, name)
        if account.daily_limit == new:
            return Outcome(account, "unchanged")
        store.update_account(account.id, daily_limit=new)
        store.audit("account.set_limit", "account", account.name, account=account.name,
                    details={"old": account.daily_limit, "new": new})
        updated = get_account(store, name)
    return Outcome(updated, "updated")


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
            raise InvalidInput(f"the credentials on {domain.name} changed while you confirmed; nothing was removed, run the command again")
        store.delete_domain(domain.id)
        store.audit("domain.delete", "domain", domain.name, account=domain.account,
                    details={"kind": domain.kind, "deleted_credentials": logins})
    return Outcome(domain, "deleted", {"deleted_credentials": logins})


# -- SMTP credentials ----------------------------------------------------------

BLOCKED_MESSAGE = "SMTP Credential creation is blocked. Please contact support…"


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
            raise Blocked(BLOCKED_MESSAGE)
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


def verify_credential(store: Store, login: str, password: str) -> Credential:
    """Check a password against the stored hash.

    On a match with a deprecated scheme (bcrypt, SHA512-CRYPT) or weaker
    argon2 parameters, the hash is replaced by a fresh argon2id one (audited
    as ``credential.rehash``). Raises ``NotFound`` or ``AuthFailed``.
    """
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
    size = sum(
        p.stat().st_size
        for p in (store.path, Path(f"{store.path}-wal"), Path(f"{store.path}-shm"))
        if p.exists()
    )
    return {
        "path": str(store.path),
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


# -- the audit trail -------------------------------------------------------------


MAX_AUDIT_LIMIT = 1_000_000


def _audit_bound(text: str, zone_name: str, *, end: bool) -> str:
    """A date (whole day in the store's zone) or an ISO 8601 time, as a UTC string.

    Raises ``InvalidInput`` for text that is neither, and for a time that
    has no UTC equivalent (``0001-01-01T00:00:00+14:00``). The end of the
    last representable day, 9999-12-31, is its last second.
    """
    from datetime import date, datetime, time, timedelta, timezone
    from zoneinfo import ZoneInfo

    try:
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ZoneInfo(zone_name))
        else:
            day = date.fromisoformat(text)
            if end:
                if day == date.max:
                    return "9999-12-31T23:59:59Z"
                day += timedelta(days=1)
            moment = datetime.combine(day, time(), tzinfo=ZoneInfo(zone_name))
        utc = moment.astimezone(timezone.utc)
    except ValueError:
        raise InvalidInput(f"invalid date or time {rules.shown(text)}: use 2026-11-26 or 2026-11-26T10:00:00Z") from None
    except OverflowError:
        raise InvalidInput(f"date or time {rules.shown(text)} is out of range: it has no UTC equivalent") from None
    # isoformat, not strftime: strftime does not zero-pad years before 1000, and the bound compares as text.
    return utc.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _like_prefix(text: str) -> str:
    """``text`` as a literal LIKE prefix: its own %, _ and \\ escaped (with ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def audit_entries(store: Store, *, since: str | None = None, until: str | None = None, account: str | None = None,
                  action: str | None = None, actor: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The audit trail, newest first, filtered.

    ``since``/``until`` are dates (inclusive, in the store's time zone) or
    ISO 8601 times; ``action`` matches literally, exactly (``credential.create``)
    or as a prefix when it has no dot (``credential``); ``limit`` is 0 (all)
    to 1,000,000. Raises ``InvalidInput`` or ``NotFound`` (the account).
    """
    import json

    limit = rules.whole_number(limit, "--limit", 0, MAX_AUDIT_LIMIT)
    zone = str(effective_settings(store)["timezone"])
    where, params = [], []
    if since:
        where.append("at >= ?")
        params.append(_audit_bound(since, zone, end=False))
    if until:
        bound = _audit_bound(until, zone, end=True)
        where.append("at < ?" if "T" not in until else "at <= ?")
        params.append(bound)
    if account:
        where.append("account = ? COLLATE NOCASE")
        params.append(get_account(store, account).name)
    if action:
        if "." in action:
            where.append("action = ?")
            params.append(action)
        else:
            where.append("action LIKE ? ESCAPE '\\'")
            params.append(_like_prefix(action) + ".%")
    if actor:
        where.append("actor = ?")
        params.append(actor)
    sql = "SELECT id, at, actor, action, object_type, object_name, account, details FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    rows = store.query(sql, params)
    for row in rows:
        row["details"] = json.loads(row["details"])
    return rows
