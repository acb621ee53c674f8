"""SMTP credentials: create, reset, delete, verify; at most
``credentials_per_domain`` live ones per dedicated domain."""

from __future__ import annotations

from typing import Any

from smtpctl.core.directory.accounts import get_account
from smtpctl.core.directory.agencies import get_agency
from smtpctl.core.directory.domains import dependent_logins, get_domain
from smtpctl.core.directory.settings import effective_settings
from smtpctl.core.model import passwords, rules
from smtpctl.core.model.errors import FIX, AlreadyExists, AuthFailed, Blocked, Fix, InvalidInput, LimitReached, NotFound
from smtpctl.core.model.records import Account, Credential, Domain, Missing, Outcome
from smtpctl.core.model.words import count, listing
from smtpctl.core.notices import events
from smtpctl.core.store import Store

BLOCKED_MESSAGE = "SMTP Credential creation is blocked. Please contact support…"


def blocked_error(account: Account) -> Blocked:
    """The service's own message, then the account, why, and where to read more."""
    # A limit block's reason already says "daily limit of N emails exceeded on ...".
    by = " by an operator" if account.block_kind == "manual" else ""
    reason = f": {account.block_reason}" if account.block_reason else ""
    return Blocked(f"{BLOCKED_MESSAGE} (account {account.name} is blocked{by}{reason}; more: {FIX})",
                   subject=account.name, fix=Fix(("account", "show", account.name)))


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
            raise blocked_error(account)
        cap = int(effective_settings(store)["credentials_per_domain"])
        live = dependent_logins(store, domain)
        if rules.credential_cap_reached(len(live), cap):
            raise LimitReached(
                f"{domain.name} already holds {len(live)} SMTP credentials, the most a domain may hold ({cap}): "
                f"{', '.join(live)}; delete one first"
            )
        write_created(store, domain, name, full_login, password_hash,
                      {"hash_scheme": "argon2id", "generated": generated})
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
        write_reset(store, credential, password_hash, {"hash_scheme": "argon2id", "generated": generated})
        credential = get_credential(store, login)
    return Outcome(credential, "updated", {"password": secret} if generated else {})


def delete_credential(store: Store, login: str) -> Outcome:
    """Delete a credential; audited. Raises ``NotFound``."""
    with store.write():
        credential = get_credential(store, login)
        write_deleted(store, credential, {})
    return Outcome(credential, "deleted")


# Every path that creates, resets or deletes a credential (user, apply, user
# import, a limit crossing, a block, a domain's removal) writes it through
# these, so its audit row and its notice are written with it, in its transaction.
def write_created(store: Store, domain: Domain, name: str, login: str, password_hash: str,
                  details: dict[str, Any]) -> None:
    """Insert a credential on a dedicated ``domain``; audited, with its
    ``credential.created`` notice. Call inside ``store.write()``, checks done."""
    store.insert_credential(domain.id, name, login, password_hash)
    store.audit("credential.create", "credential", login, account=domain.account,
                details={"domain": domain.name, **details})
    events.credential_changed(store, "credential.created", login, domain.name, domain.account, details.get("via"))


def write_reset(store: Store, credential: Credential, password_hash: str, details: dict[str, Any]) -> None:
    """Replace a credential's password hash; audited, with its ``credential.reset`` notice."""
    store.update_credential_hash(credential.id, password_hash)
    store.audit("credential.reset", "credential", credential.login, account=credential.account, details=details)
    events.credential_changed(store, "credential.reset", credential.login, credential.domain, credential.account,
                      details.get("via"))


def write_deleted(store: Store, credential: Credential, details: dict[str, Any]) -> None:
    """Delete a credential; audited, with its ``credential.deleted`` notice."""
    store.delete_credential(credential.id)
    store.audit("credential.delete", "credential", credential.login, account=credential.account,
                details={"domain": credential.domain, **details})
    events.credential_changed(store, "credential.deleted", credential.login, credential.domain, credential.account,
                      details.get("via"))


def revoke_account_credentials(store: Store, account_id: int, account: str, via: str,
                               day: str | None = None) -> list[str]:
    """Delete every credential of an account (``via``: ``daily_limit``, the
    crossing of ``day``'s limit, or ``block``, an operator's block with
    revoke): the logins, each with its ``credential.deleted`` notice and its
    short-lived revoked record (``serve`` tells its sender why). The caller
    audits the revocation as one entry."""
    revoked = store.account_logins(account_id)
    store.revoke_account_credentials(account_id, "daily_limit" if via == "daily_limit" else "operator_block", day)
    for login in revoked:
        events.credential_changed(store, "credential.deleted", login, login.split("@", 1)[1], account, via)
    return revoked



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
        raise NotFound(f"{count(len(missing), 'SMTP credential')} not found: {listing(missing)}; nothing was "
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
                outcomes.append(Outcome(Missing(login), "missing"))
                continue
            outcomes.append(delete_credential(store, login))
    return outcomes


def verify_credential(store: Store, login: str, password: str) -> Credential:
    """Check a password against the stored hash.

    On a match with an adopted scheme (bcrypt, SHA-crypt, argon2i) or other
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
