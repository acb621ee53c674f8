"""Care of a whole store: what it holds, a backup, a verified copy."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smtpctl.core.model.errors import AlreadyExists, InvalidInput, StoreError
from smtpctl.core.store import Store
from smtpctl.core.store.dsn import is_dsn
from smtpctl.core.store.copy import copy_into, is_empty


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


def copy_store(store: Store, dest: str | os.PathLike[str],
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Copy the whole store to the empty store at ``dest`` (a path or a
    PostgreSQL DSN, created and migrated if new), in one transaction on
    ``dest``, and verify it: every table's row count, the usage totals, the
    last audit id and the settings equal. Audited on the source. ``progress``
    is called with the rows copied and the rows in all (``copy_into``).

    Raises ``InvalidInput`` (``dest`` is the store itself, or a folder),
    ``AlreadyExists`` (``dest`` holds data), ``StoreError`` (cannot open
    ``dest``, or the copy does not verify: nothing is kept there)."""
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
            verified = copy_into(store, copy, progress)
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
