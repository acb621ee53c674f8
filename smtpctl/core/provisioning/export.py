"""Export: the store's objects as the document ``apply`` reads, or as the
tables real mail servers read (a Dovecot passwd-file, a Postfix
``smtpd_sender_login_maps`` table)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from smtpctl.core.model.errors import InvalidInput, StoreError
from smtpctl.core.model.passwords import dovecot_scheme
from smtpctl.core.provisioning.apply import FORMAT_VERSION
from smtpctl.core.store import Store


def export_document(store: Store) -> dict[str, Any]:
    """Every agency, account, domain and credential, with no secret.

    Credentials are exported as ``generate = true``: applying the document to
    an empty store recreates them with new passwords (written to
    ``--secrets-out``); applying it to this store leaves them unchanged.
    """
    accounts = []
    for a in store.accounts():
        entry: dict[str, Any] = {"name": a.name, "agency": a.agency}
        if a.daily_limit is not None:
            entry["daily_limit"] = a.daily_limit
        accounts.append(entry)
    domains = []
    for d in store.domains():
        owner = {"account": d.account} if d.account else {"agency": d.agency}
        domains.append({"name": d.name, **owner})
    return {
        "version": FORMAT_VERSION,
        "agencies": [{"name": a.name} for a in store.agencies()],
        "accounts": accounts,
        "domains": domains,
        "credentials": [{"login": c.login, "generate": True} for c in store.credentials()],
    }


def dovecot_passwd(store: Store) -> str:
    """One ``login:{SCHEME}hash`` line per live credential (Dovecot passwd-file).

    The scheme prefix names the hash's own scheme (``ARGON2ID``,
    ``BLF-CRYPT``, ``SHA512-CRYPT``), so Dovecot verifies each as it is.
    """
    lines = []
    for c in store.credentials():
        if ":" in c.login or ":" in c.password_hash or "\n" in c.password_hash:
            raise StoreError(f"credential {c.login} cannot be written to a passwd-file (':' or newline)")
        lines.append(f"{c.login}:{{{dovecot_scheme(c.password_hash)}}}{c.password_hash}\n")
    return "".join(lines)


def postfix_sender_logins(store: Store) -> str:
    """A Postfix ``smtpd_sender_login_maps`` table: one ``@domain`` line per
    dedicated domain whose account has live credentials, listing those
    credentials' logins (comma-separated, sorted). It is the sender-alignment
    rule (``usage.sender_allowed``) as Postfix's ``reject_sender_login_mismatch``
    reads it: every credential of an account may send from every dedicated
    domain of that account. An internationalised domain gets a second line
    under its Unicode name (what an SMTPUTF8 sender carries). Domains with no
    live credential are left out (not found: Postfix refuses them to every
    authenticated login). Raises ``StoreError`` for a login that cannot be
    written to such a table (whitespace or a comma)."""
    logins: dict[str, list[str]] = {}
    for c in store.credentials():
        if any(ch.isspace() or ch == "," for ch in c.login):
            raise StoreError(f"credential {c.login!r} cannot be written to a Postfix table (whitespace or ',')")
        logins.setdefault(c.account, []).append(c.login)
    lines = []
    for d in sorted(store.domains(), key=lambda d: d.name):
        owners = sorted(logins.get(d.account, [])) if d.account is not None else []
        if not owners:
            continue
        for name in dict.fromkeys([d.name, d.unicode_name]):
            lines.append(f"@{name}\t{','.join(owners)}\n")
    return "".join(lines)


def stage_file(path: Path, text: str, *, group: str | None = None) -> Path:
    """Write ``text`` to a temporary file beside ``path`` (0600, or 0640 owned
    by ``group``), flushed to disk; ``os.replace`` it onto ``path`` to publish.

    Raises ``InvalidInput`` for an unknown group or an unwritable folder.
    """
    gid = None
    if group is not None:
        import grp

        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise InvalidInput(f"unknown group {group!r}") from None
    path = path.expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if gid is not None:
            os.chown(tmp, -1, gid)
        os.chmod(tmp, 0o640 if gid is not None else 0o600)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    return Path(tmp)


def write_atomically(path: Path, text: str, *, group: str | None = None) -> None:
    """Write ``text`` to ``path`` via a staged temp file and a rename.

    A reader (Dovecot) sees the old file or the new one, never half of one.
    With ``group`` the file is 0640 and owned by that group, so a daemon
    that runs as it (Dovecot's auth process runs as ``dovecot``) can read it.
    """
    tmp = stage_file(path, text, group=group)
    try:
        os.replace(tmp, path.expanduser())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
