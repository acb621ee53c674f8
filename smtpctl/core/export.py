"""Export: the store's objects as the document ``apply`` reads, or as a
Dovecot passwd-file for real mail servers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from smtpctl.core.errors import InvalidInput, StoreError
from smtpctl.core.passwords import dovecot_scheme
from smtpctl.core.provisioning import FORMAT_VERSION
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
