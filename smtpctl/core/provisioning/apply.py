"""Declarative provisioning: a TOML document of the objects wanted, a plan,
and one transaction that applies it.

The document (docs/apply.md)::

    version = 1
    [[agencies]]
    name = "acme"
    [[accounts]]
    name = "shop"
    agency = "acme"
    daily_limit = 2000          # optional; absent = the store's default
    [[domains]]
    name = "mail.shop.example"
    account = "shop"            # dedicated; or agency = "acme" for agency-assigned
    [[credentials]]
    login = "app@mail.shop.example"
    generate = true             # or password_env = "NAME", password_file = "PATH",
                                # or password_hash = "{SHA512-CRYPT}$6$..." (adopted as is)

A plan is checked against every rule before anything is written; applying it
is all or nothing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from smtpctl.core.directory import secret_input
from smtpctl.core.directory.accounts import default_in_force
from smtpctl.core.directory.credentials import BLOCKED_MESSAGE, write_created, write_deleted, write_reset
from smtpctl.core.directory.settings import effective_settings
from smtpctl.core.model import passwords, rules
from smtpctl.core.model.errors import AlreadyExists, Blocked, Fix, InvalidInput, LimitReached, NotFound
from smtpctl.core.provisioning import adopt
from smtpctl.core.store import Store

FORMAT_VERSION = 1
_KEYS = {
    "agencies": ({"name"}, {"name"}),
    "accounts": ({"name", "agency"}, {"name", "agency", "daily_limit"}),
    "domains": ({"name"}, {"name", "account", "agency"}),
    "credentials": ({"login"}, {"login", "generate", "password_env", "password_file", "password_hash"}),
}


@dataclass(frozen=True)
class CredentialSpec:
    login: str
    where: str  # "credentials[3]" for messages
    generate: bool
    password: str | None = field(default=None, repr=False)  # resolved from env or file; never printed
    source: str = ""  # "generate", "env:NAME", "file:PATH", "hash:SCHEME"
    password_hash: str | None = field(default=None, repr=False)  # an adopted hash (no prefix); never printed


class AccountSpec(NamedTuple):
    name: str
    agency: str
    daily_limit: int | None
    where: str  # "accounts[2]" for messages


class DomainSpec(NamedTuple):
    account: str | None  # a dedicated domain's account
    agency: str | None  # an agency-assigned domain's agency
    where: str


class _AccountView(NamedTuple):
    name: str
    agency: str
    blocked: bool


@dataclass
class Document:
    agencies: dict[str, str] = field(default_factory=dict)  # lower -> name
    accounts: dict[str, AccountSpec] = field(default_factory=dict)  # lower name -> spec
    domains: dict[str, DomainSpec] = field(default_factory=dict)  # ascii name -> spec
    credentials: dict[str, CredentialSpec] = field(default_factory=dict)


def parse_document(text: str, *, base_dir: Path | None = None, environ: dict[str, str] | None = None) -> Document:
    """Parse and validate a provisioning document; resolve password sources.

    Raises ``InvalidInput`` naming the entry (``accounts[2] shop: ...``):
    unknown keys, bad names, a literal password, a missing or unreadable
    password source, duplicates within the file.
    """
    import tomllib

    environ = os.environ if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"the file is not valid TOML: {exc}") from None
    except RecursionError:
        raise InvalidInput("the file is not valid TOML: arrays or tables nested too deep") from None
    version = data.pop("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise InvalidInput(f"unsupported document version {version!r}; this smtpctl reads version {FORMAT_VERSION}")
    unknown = set(data) - set(_KEYS)
    if unknown:
        raise InvalidInput(f"unknown top-level keys: {', '.join(sorted(unknown))} "
                           f"(known: version, {', '.join(_KEYS)})")
    doc = Document()
    for section, (required, allowed) in _KEYS.items():
        entries = data.get(section, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidInput(f"{section} must be an array of tables ([[{section}]])")
        for index, entry in enumerate(entries):
            where = f"{section}[{index}]"
            if section == "credentials" and "password" in entry:
                raise InvalidInput(f"{where} {entry.get('login', '')}: a literal password is refused; use "
                                   "password_env, password_file, password_hash or generate = true")
            missing = required - set(entry)
            if missing:
                raise InvalidInput(f"{where}: missing {', '.join(sorted(missing))}")
            extra = set(entry) - allowed
            if extra:
                raise InvalidInput(f"{where}: unknown keys {', '.join(sorted(extra))} "
                                   f"(allowed: {', '.join(sorted(allowed))})")
            _add_entry(doc, section, where, entry, base_dir, environ)
    return doc


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {key} must be a string")
    return value


def _add_entry(doc: Document, section: str, where: str, entry: dict[str, Any], base_dir: Path | None,
               environ: dict[str, str]) -> None:
    def fail(message: str) -> InvalidInput:
        return InvalidInput(f"{where} {entry.get('name') or entry.get('login')}: {message}")

    try:
        if section == "agencies":
            name = rules.normalise_name("agency", _text(entry, "name", where))
            if name.lower() in doc.agencies:
                raise fail("listed twice")
            doc.agencies[name.lower()] = name
        elif section == "accounts":
            name = rules.normalise_name("account", _text(entry, "name", where))
            limit = entry.get("daily_limit")
            if limit is not None:
                if isinstance(limit, bool) or not isinstance(limit, int):
                    raise fail("daily_limit must be a whole number")
                limit = rules.validate_daily_limit(limit)
            if name.lower() in doc.accounts:
                raise fail("listed twice")
            doc.accounts[name.lower()] = AccountSpec(name, _text(entry, "agency", where), limit, where)
        elif section == "domains":
            name = rules.normalise_domain(_text(entry, "name", where))
            account, agency = entry.get("account"), entry.get("agency")
            if (account is None) == (agency is None):
                raise fail("give exactly one of account (dedicated) or agency (agency-assigned)")
            if name in doc.domains:
                raise fail("listed twice")
            doc.domains[name] = DomainSpec(account, agency, where)
        else:
            name, domain = rules.parse_login(_text(entry, "login", where))
            login = f"{name}@{domain}"
            if login in doc.credentials:
                raise fail("listed twice")
            doc.credentials[login] = _credential(login, where, entry, base_dir, environ)
    except InvalidInput as exc:
        if exc.message.startswith(where):
            raise
        raise InvalidInput(f"{where} {entry.get('name') or entry.get('login')}: {exc.text}", subject=exc.subject,
                           fix=exc.fix) from None


def _credential(login: str, where: str, entry: dict[str, Any], base_dir: Path | None,
                environ: dict[str, str]) -> CredentialSpec:
    sources = [k for k in ("generate", "password_env", "password_file", "password_hash") if k in entry]
    if len(sources) != 1 or (sources == ["generate"] and entry["generate"] is not True):
        raise InvalidInput("give exactly one of generate = true, password_env = \"NAME\", password_file = \"PATH\" "
                           "or password_hash = \"HASH\"")
    if sources == ["generate"]:
        return CredentialSpec(login, where, True, None, "generate")
    if sources == ["password_hash"]:
        adopted = passwords.adopt_hash(entry["password_hash"])
        return CredentialSpec(login, where, False, None, f"hash:{passwords.scheme_of(adopted)}", adopted)
    if sources == ["password_env"]:
        var = entry["password_env"]
        if not isinstance(var, str) or var not in environ:
            raise InvalidInput(f"password_env names {var!r}, which is not set in the environment")
        secret = secret_input.check_text(environ[var], f"password_env {var}")
        return CredentialSpec(login, where, False, passwords.validate_password(secret), f"env:{var}")
    path = Path(str(entry["password_file"])).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    line = secret_input.read_secret_file(path, f"password_file {path}")  # bounded: /dev/zero fails at once
    return CredentialSpec(login, where, False, passwords.validate_password(line), f"file:{path}")


# -- planning ----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    action: str  # create, update, unchanged, delete, blocked (a new credential on a blocked account)
    kind: str  # agency, account, domain, credential
    name: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "type": self.kind, "name": self.name, "details": self.details}


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict, repr=False)  # login -> new hash
    generated: dict[str, str] = field(default_factory=dict, repr=False)  # login -> new password

    @property
    def blocked(self) -> list[Change]:
        return [c for c in self.changes if c.action == "blocked"]

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(("create", "update", "unchanged", "delete", "blocked"), 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts


class VerifyCache:
    """Verify results by (login, stored hash), so re-planning under the lock
    costs no second argon2 verify."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], bool] = {}

    def prefetch(self, pairs: list[tuple[str, str, str]]) -> None:
        todo = [(login, stored, pw) for login, stored, pw in pairs if (login, stored) not in self.results]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            # argon2-cffi releases the GIL while hashing: threads use every core.
            for (login, stored, _), (ok, _new) in zip(todo, pool.map(
                    lambda pair: passwords.verify_password(pair[2], pair[1]), todo)):
                self.results[(login, stored)] = ok

    def matches(self, login: str, stored: str, password: str) -> bool:
        if (login, stored) not in self.results:
            self.results[(login, stored)] = passwords.verify_password(password, stored)[0]
        return self.results[(login, stored)]


def make_plan(store: Store, doc: Document, *, prune: bool = False, verify: VerifyCache | None = None) -> Plan:
    """Compare the document with the store and check every rule.

    Raises, naming the entry, with the rule's own exit code: ``NotFound`` (a
    reference to an agency or account in neither file nor store),
    ``AlreadyExists`` (an object that exists with another owner or kind),
    ``InvalidInput`` (a credential on an agency-assigned domain),
    ``LimitReached`` (a domain left holding more than its cap of
    credentials). A new credential for a blocked account is not an error
    here: the plan marks it ``blocked`` (``blocked_error`` says why), so a
    dry run can show the whole plan and ``skip_blocked`` can apply the rest.
    """
    verify = verify or VerifyCache()
    same_hash = adopt.SameHash(store)
    plan = Plan()
    agencies = {a.name.lower(): a for a in store.agencies()}
    accounts = {a.name.lower(): a for a in store.accounts()}
    domains = {d.name: d for d in store.domains()}
    credentials = {c.login: c for c in store.credentials()}
    default_limit = int(effective_settings(store)["default_daily_limit"])
    cap = int(effective_settings(store)["credentials_per_domain"])

    agency_names = {**{k: a.name for k, a in agencies.items()}, **doc.agencies}
    for key, name in doc.agencies.items():
        plan.changes.append(Change("unchanged" if key in agencies else "create", "agency",
                                   agencies[key].name if key in agencies else name))

    account_view = {k: _AccountView(a.name, a.agency, a.blocked) for k, a in accounts.items()}
    for key, spec in doc.accounts.items():
        name, agency, limit, where = spec.name, spec.agency, spec.daily_limit, spec.where
        if agency.lower() not in agency_names:
            raise NotFound(f"{where} {name}: agency {agency!r} is neither in the file nor in the store")
        owner = agency_names[agency.lower()]
        existing = accounts.get(key)
        if existing is None:
            plan.changes.append(Change("create", "account", name, {"agency": owner, "daily_limit": limit}))
            account_view[key] = _AccountView(name, owner, False)
        elif existing.agency.lower() != owner.lower():
            raise AlreadyExists(f"{where} {name}: the account exists under agency {existing.agency!r}, not "
                                f"{owner!r}; smtpctl does not move accounts between agencies")
        elif existing.daily_limit != limit:
            plan.changes.append(Change("update", "account", existing.name, {
                "daily_limit": [existing.daily_limit or f"default ({default_limit})",
                                limit or f"default ({default_limit})"]}))
        else:
            plan.changes.append(Change("unchanged", "account", existing.name))

    domain_owner: dict[str, str | None] = {n: (d.account or None) for n, d in domains.items()}
    for name, spec in doc.domains.items():
        account, agency, where = spec.account, spec.agency, spec.where
        if account is not None:
            if str(account).lower() not in account_view:
                raise NotFound(f"{where} {name}: account {account!r} is neither in the file nor in the store")
            owner_name, kind = account_view[str(account).lower()].name, "dedicated"
        else:
            if str(agency).lower() not in agency_names:
                raise NotFound(f"{where} {name}: agency {agency!r} is neither in the file nor in the store")
            owner_name, kind = agency_names[str(agency).lower()], "agency-assigned"
        existing = domains.get(name)
        if existing is None:
            plan.changes.append(Change("create", "domain", name, {"kind": kind, "owner": owner_name}))
            domain_owner[name] = owner_name if kind == "dedicated" else None
        else:
            have_owner = existing.account if existing.account else existing.agency
            if existing.kind != kind or have_owner.lower() != owner_name.lower():
                raise AlreadyExists(f"{where} {name}: the domain exists as {existing.kind} of {have_owner!r}, "
                                    f"not {kind} of {owner_name!r}")
            plan.changes.append(Change("unchanged", "domain", name))

    pruned_domains = set()
    if prune:
        for name in domains:
            if name not in doc.domains:
                pruned_domains.add(name)
    verify.prefetch([(login, credentials[login].password_hash, spec.password)
                     for login, spec in doc.credentials.items()
                     if login in credentials and spec.password is not None])
    live_per_domain: dict[str, set[str]] = {}
    for login, c in credentials.items():
        live_per_domain.setdefault(c.domain, set()).add(login)
    for login, spec in doc.credentials.items():
        domain = login.split("@", 1)[1]
        if domain not in domain_owner or domain in pruned_domains:
            raise NotFound(f"{spec.where} {login}: domain {domain} is neither in the file nor in the store")
        if domain_owner[domain] is None:
            raise InvalidInput(f"{spec.where} {login}: {domain} is an agency-assigned domain; SMTP credentials live "
                               "on a sub-account's dedicated domain")
        existing = credentials.get(login)
        if existing is None:
            account = account_view[domain_owner[domain].lower()]
            if account.blocked:
                held = accounts[account.name.lower()]
                plan.changes.append(Change("blocked", "credential", login, {
                    "entry": spec.where, "account": held.name, "block_kind": held.block_kind,
                    "block_reason": held.block_reason}))
                continue
            plan.changes.append(Change("create", "credential", login, {"password": spec.source}))
            live_per_domain.setdefault(domain, set()).add(login)
        elif spec.password_hash is not None:
            # No password to verify: the same hash (or the argon2id rehash of
            # an adoption of it) is unchanged, any other hash is replaced.
            if same_hash(existing, spec.password_hash):
                plan.changes.append(Change("unchanged", "credential", login))
            else:
                plan.changes.append(Change("update", "credential", login, {"password": f"{spec.source} (changed)"}))
        elif spec.generate or verify.matches(login, existing.password_hash, spec.password or ""):
            plan.changes.append(Change("unchanged", "credential", login))
        else:
            plan.changes.append(Change("update", "credential", login, {"password": f"{spec.source} (changed)"}))

    if prune:
        for login in sorted(set(credentials) - set(doc.credentials)):
            plan.changes.append(Change("delete", "credential", login, {"domain": credentials[login].domain}))
            live_per_domain[credentials[login].domain].discard(login)
        for name in sorted(pruned_domains):
            plan.changes.append(Change("delete", "domain", name, {"kind": domains[name].kind}))
            live_per_domain.pop(name, None)
    for domain, logins in sorted(live_per_domain.items()):
        if len(logins) > cap:
            new = sorted(c.name for c in plan.changes if c.kind == "credential" and c.action == "create"
                         and c.name.endswith("@" + domain))
            where = doc.credentials[new[-1]].where if new else "credentials"
            raise LimitReached(f"{where} {new[-1] if new else ''}: {domain} would hold {len(logins)} SMTP credentials; "
                               f"the most a domain may hold is {cap}")
    return plan


def blocked_error(plan: Plan) -> Blocked:
    """The one-line refusal of a plan with entries on blocked accounts."""
    entries = "; ".join(f"{c.details['entry']} {c.name}: account {c.details['account']} is blocked"
                        + (f" ({c.details['block_reason']})" if c.details.get("block_reason") else "")
                        for c in plan.blocked)
    accounts = sorted({c.details["account"] for c in plan.blocked})
    return Blocked(f"{BLOCKED_MESSAGE} ({entries}); nothing was applied; --skip-blocked applies the rest of the "
                   "file", fix=tuple(Fix(("account", "show", a), "more") for a in accounts))


def prepare_secrets(plan: Plan, doc: Document) -> None:
    """Generate and hash the passwords the plan sets (outside any lock; threads)."""
    todo = []
    for change in plan.changes:
        if change.kind == "credential" and change.action in ("create", "update") and change.name not in plan.hashes:
            spec = doc.credentials[change.name]
            if spec.password_hash is not None:
                plan.hashes[change.name] = spec.password_hash  # adopted as is: nothing to hash
                continue
            password = spec.password if spec.password is not None else passwords.generate_password()
            if spec.generate:
                plan.generated[change.name] = password
            todo.append((change.name, password))
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for (login, _), hashed in zip(todo, pool.map(lambda t: passwords.hash_password(t[1]), todo)):
            plan.hashes[login] = hashed


def execute_plan(store: Store, plan: Plan, doc: Document) -> None:
    """Write the plan's changes; call inside ``store.write()``. Audited, via apply."""
    via = {"via": "apply"}
    for change in [c for c in plan.changes if c.action == "delete" and c.kind == "credential"]:
        write_deleted(store, store.credential(change.name), via)
    for change in [c for c in plan.changes if c.action == "delete" and c.kind == "domain"]:
        domain = store.domain(change.name)
        store.delete_domain(domain.id)
        store.audit("domain.delete", "domain", domain.name, account=domain.account,
                    details={"kind": domain.kind, "deleted_credentials": [], **via})
    for change in plan.changes:
        if change.action not in ("create", "update"):
            continue
        if change.kind == "agency":
            store.insert_agency(change.name)
            store.audit("agency.create", "agency", change.name, details=via)
        elif change.kind == "account":
            spec = doc.accounts[change.name.lower()]
            name, agency, limit = spec.name, spec.agency, spec.daily_limit
            if change.action == "create":
                store.insert_account(name, store.agency(agency).id, limit)
                store.audit("account.create", "account", name, account=name,
                            details={"agency": store.agency(agency).name, "daily_limit": limit,
                                     **default_in_force(store, limit), **via})
            else:
                account = store.account(change.name)
                store.update_account(account.id, daily_limit=limit)
                store.audit("account.set_limit", "account", account.name, account=account.name,
                            details={"old": account.daily_limit, "new": limit,
                                     **default_in_force(store, account.daily_limit, limit), **via})
        elif change.kind == "domain":
            spec = doc.domains[change.name]
            account, agency = spec.account, spec.agency
            account_id = store.account(account).id if account is not None else None
            agency_id = store.agency(agency).id if agency is not None else None
            store.insert_domain(change.name, account_id=account_id, agency_id=agency_id)
            created = store.domain(change.name)
            store.audit("domain.create", "domain", created.name, account=created.account,
                        details={"kind": created.kind, "agency": created.agency, **via})
        elif change.kind == "credential":
            spec = doc.credentials[change.name]
            if change.action == "create":
                name, domain_name = change.name.split("@", 1)
                write_created(store, store.domain(domain_name), name, change.name, plan.hashes[change.name],
                              {**_hash_details(spec), **via})
            else:
                write_reset(store, store.credential(change.name), plan.hashes[change.name],
                            {**_hash_details(spec), **via})


def _hash_details(spec: CredentialSpec) -> dict[str, Any]:
    if spec.password_hash is not None:
        return adopt.audit_details(spec.password_hash)
    return {"hash_scheme": "argon2id", "generated": spec.generate}


def apply_document(store: Store, doc: Document, *, prune: bool = False, dry_run: bool = False,
                   before_commit=None, verify: VerifyCache | None = None, skip_blocked: bool = False) -> Plan:
    """Plan, then (unless ``dry_run``) apply in one ``BEGIN IMMEDIATE`` transaction.

    A plan with ``blocked`` entries (new credentials on blocked accounts)
    raises ``blocked_error`` and writes nothing, unless ``skip_blocked``:
    then everything else is applied and the entries stay ``blocked`` in the
    returned plan.

    Passwords are hashed before the lock is taken; under the lock the plan is
    made again against the store as it then is (a verify already done is not
    repeated), any hash still missing is computed, and everything is written.
    ``before_commit(plan)`` runs inside the transaction after the writes: if
    it raises, nothing is kept (the CLI writes the secrets file there).
    """
    verify = verify or VerifyCache()  # share one with an earlier make_plan: no verify runs twice
    plan = make_plan(store, doc, prune=prune, verify=verify)
    if dry_run:
        return plan
    if plan.blocked and not skip_blocked:
        raise blocked_error(plan)
    prepare_secrets(plan, doc)
    with store.write():
        final = make_plan(store, doc, prune=prune, verify=verify)
        if final.blocked and not skip_blocked:
            raise blocked_error(final)
        final.hashes = {k: v for k, v in plan.hashes.items()}
        final.generated = {k: v for k, v in plan.generated.items()}
        prepare_secrets(final, doc)  # only what changed since the first plan
        changed = {c.name for c in final.changes if c.kind == "credential" and c.action in ("create", "update")}
        final.hashes = {k: v for k, v in final.hashes.items() if k in changed}
        final.generated = {k: v for k, v in final.generated.items() if k in changed}
        execute_plan(store, final, doc)
        if before_commit is not None:
            before_commit(final)
    return final
