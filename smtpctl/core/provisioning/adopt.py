"""Moving in: logins and their existing password hashes from another mail server.

``user import`` reads a Dovecot passwd-file (``user@domain:{SCHEME}hash:uid:gid:...``)
or docker-mailserver's ``postfix-accounts.cf`` (``user@domain|{SHA512-CRYPT}$6$...``)
and adopts each login into a dedicated domain that already exists, keeping its
hash. The hash is replaced by argon2id at the first password check that
succeeds (``services.store_rehash``).

Whether a login already holds "the same password" is decided without the
password: the stored hash is the file's hash, or the stored hash is the
argon2id rehash of an adoption of that very hash (the audit trail keeps a
SHA-256 fingerprint of each adopted hash, never the hash itself). So a second
run after users have logged in is still "unchanged".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from smtpctl.core.directory.credentials import write_created, write_reset
from smtpctl.core.model import passwords, rules
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.model.records import Credential
from smtpctl.core.store import Store

FORMATS = ("dovecot", "dms")
MAX_REJECTED_SHOWN = 100


@dataclass(frozen=True)
class Entry:
    """One login read from a file, with the hash to store (no prefix)."""

    line: int
    login: str
    password_hash: str = field(repr=False)

    @property
    def scheme(self) -> str:
        return passwords.scheme_of(self.password_hash)


@dataclass(frozen=True)
class LineResult:
    line: int
    login: str
    status: str  # created, updated, unchanged, rejected
    reason: str = ""
    hash_scheme: str = ""


# A passwd-file line is a login, a hash and a few userdb fields: well under
# 1 KiB. 64 Ki characters leaves room for long extra fields and still keeps a
# hostile line from being split and parsed.
MAX_ACCOUNT_LINE = 64 * 1024


def read_accounts(text: str, fmt: str) -> tuple[list[Entry], list[LineResult]]:
    """Parse a Dovecot passwd-file (``dovecot``) or docker-mailserver accounts file (``dms``).

    Blank lines and lines starting with ``#`` are skipped. Returns the good
    entries and the rejected lines (line number and reason; a reason never
    quotes a hash). A login listed twice is rejected on its second line.
    Raises ``InvalidInput`` for an unknown format.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}: use dovecot or dms")
    entries: list[Entry] = []
    rejected: list[LineResult] = []
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if len(raw) > MAX_ACCOUNT_LINE:  # never parsed, never quoted: it may hold a hash
            rejected.append(LineResult(number, "", "rejected",
                                       f"line of {len(raw):,} characters is longer than {MAX_ACCOUNT_LINE:,}"))
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        separator = ":" if fmt == "dovecot" else "|"
        fields = line.split(separator)
        shape = "LOGIN:HASH[:uid:gid:...]" if fmt == "dovecot" else "LOGIN|HASH"
        if len(fields) < 2 or (fmt == "dms" and len(fields) != 2):
            rejected.append(LineResult(number, "", "rejected", f"expected {shape}"))
            continue
        user, secret = fields[0].strip(), fields[1].strip()
        if user.startswith(("{", "$")):
            rejected.append(LineResult(number, "", "rejected", f"the first field is not a login (expected {shape})"))
            continue
        try:
            name, domain = rules.parse_login(user)
        except InvalidInput as exc:
            rejected.append(LineResult(number, user, "rejected", exc.message))
            continue
        login = f"{name}@{domain}"
        if not secret:
            rejected.append(LineResult(number, login, "rejected", "no password hash"))
            continue
        try:
            adopted = passwords.adopt_hash(secret)
        except InvalidInput as exc:
            rejected.append(LineResult(number, login, "rejected", exc.message))
            continue
        if login in first_seen:
            rejected.append(LineResult(number, login, "rejected", f"listed twice (first on line {first_seen[login]})"))
            continue
        first_seen[login] = number
        entries.append(Entry(number, login, adopted))
    return entries, rejected


def adopted_fingerprints(store: Store) -> dict[str, str | None]:
    """For each login, the fingerprint of the hash its last password change adopted
    (``None`` when that change set a password smtpctl hashed itself)."""
    last: dict[str, str | None] = {}
    for row in store.audit_rows(object_type="credential"):
        if row["action"] not in ("credential.create", "credential.reset"):
            continue
        last[row["object_name"]] = json.loads(row["details"] or "{}").get("adopted_fingerprint")
    return last


class SameHash:
    """Answers "does this credential already hold this adopted hash?", reading
    the audit trail once, and only when a stored hash differs from the file's."""

    def __init__(self, store: Store):
        self.store = store
        self._fingerprints: dict[str, str | None] | None = None

    def __call__(self, credential: Credential, adopted_hash: str) -> bool:
        if credential.password_hash == adopted_hash:
            return True
        if passwords.scheme_of(credential.password_hash) != "argon2id":
            return False
        if self._fingerprints is None:
            self._fingerprints = adopted_fingerprints(self.store)
        return self._fingerprints.get(credential.login) == passwords.fingerprint(adopted_hash)


def audit_details(adopted_hash: str) -> dict[str, Any]:
    """What the audit keeps of an adoption: the scheme and a fingerprint, never the hash."""
    return {"hash_scheme": passwords.scheme_of(adopted_hash), "generated": False, "adopted": True,
            "adopted_fingerprint": passwords.fingerprint(adopted_hash)}


def plan_import(store: Store, entries: list[Entry], *, update: bool = False) -> list[LineResult]:
    """What importing ``entries`` would do to each, against the store as it is now.

    Rejected: a domain that does not exist, an agency-assigned domain, a
    blocked account (for a new login), a domain already at its cap
    (``credentials_per_domain``; lines are taken in file order), and an
    existing login with another password unless ``update``.
    """
    from smtpctl.core.directory.credentials import BLOCKED_MESSAGE
    from smtpctl.core.directory.settings import effective_settings

    cap = int(effective_settings(store)["credentials_per_domain"])
    same = SameHash(store)
    live: dict[str, int] = {}
    results: list[LineResult] = []
    for entry in entries:
        domain_name = entry.login.split("@", 1)[1]
        domain = store.domain(domain_name)
        reject = partial(_reject, results, entry)
        if domain is None:
            reject(f"domain {domain_name} does not exist (smtpctl domain add {domain_name} --account ACCOUNT)")
            continue
        if domain.account is None:
            reject(f"{domain_name} is an agency-assigned domain; SMTP credentials live on a sub-account's "
                   "dedicated domain")
            continue
        existing = store.credential(entry.login)
        if existing is not None:
            if same(existing, entry.password_hash):
                results.append(LineResult(entry.line, entry.login, "unchanged", "", entry.scheme))
            elif update:
                results.append(LineResult(entry.line, entry.login, "updated", "", entry.scheme))
            else:
                reject("exists with another password (--update replaces it)")
            continue
        account = store.account(domain.account)
        if account is not None and account.blocked:
            reject(f"account {account.name}: {BLOCKED_MESSAGE}")
            continue
        if domain_name not in live:
            live[domain_name] = len(store.credentials(domain=domain_name))
        if rules.credential_cap_reached(live[domain_name], cap):
            reject(f"{domain_name} is full: it holds {live[domain_name]} SMTP credentials, the most a domain "
                   f"may hold ({cap})")
            continue
        live[domain_name] += 1
        results.append(LineResult(entry.line, entry.login, "created", "", entry.scheme))
    return results


def _reject(results: list[LineResult], entry: Entry, reason: str) -> None:
    results.append(LineResult(entry.line, entry.login, "rejected", reason, entry.scheme))


@dataclass
class ImportSummary:
    format: str
    dry_run: bool
    lines: list[LineResult]

    def count(self, status: str) -> int:
        return sum(1 for r in self.lines if r.status == status)

    @property
    def rejected(self) -> list[LineResult]:
        return [r for r in self.lines if r.status == "rejected"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dry_run": self.dry_run,
            "created": self.count("created"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "lines_rejected": len(self.rejected),
            "logins": [{"line": r.line, "login": r.login, "status": r.status, "hash_scheme": r.hash_scheme}
                       for r in self.lines if r.status != "rejected"],
            "rejected": [{"line": r.line, "login": r.login, "reason": r.reason}
                         for r in self.rejected[:MAX_REJECTED_SHOWN]],
        }


def import_accounts(store: Store, text: str, fmt: str, *, update: bool = False, dry_run: bool = False) -> ImportSummary:
    """Adopt the logins of an accounts file, in one ``BEGIN IMMEDIATE`` transaction.

    The plan is made under the write lock, so the cap is checked in the
    same transaction as the inserts. Every created or updated login is
    audited (``credential.create`` / ``credential.reset`` with ``"adopted":
    true``, the scheme and the hash's fingerprint, ``"via": "import"``).
    With ``dry_run`` nothing is written. Raises ``InvalidInput`` (format)
    or ``StoreError``.
    """
    entries, bad = read_accounts(text, fmt)
    by_login = {e.login: e for e in entries}
    if dry_run:
        planned = plan_import(store, entries, update=update)
    else:
        with store.write():
            planned = plan_import(store, entries, update=update)
            for result in planned:
                entry = by_login.get(result.login)
                if result.status == "created":
                    name, domain_name = result.login.split("@", 1)
                    write_created(store, store.domain(domain_name), name, result.login, entry.password_hash,
                                  {**audit_details(entry.password_hash), "via": "import"})
                elif result.status == "updated":
                    write_reset(store, store.credential(result.login), entry.password_hash,
                                {**audit_details(entry.password_hash), "via": "import"})
    lines = sorted([*planned, *bad], key=lambda r: r.line)
    return ImportSummary(fmt, dry_run, lines)
