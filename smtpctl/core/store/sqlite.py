"""The SQLite backend: one file, opened with WAL, foreign keys and a busy
timeout; writes are ``BEGIN IMMEDIATE`` transactions, so parallel writers
queue on the busy timeout instead of failing with "database is locked"
halfway through a read-then-write."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from smtpctl.core.model.clock import utc_now
from smtpctl.core.model.errors import StoreError
from smtpctl.core.store.schema import MIGRATION_SET, Migration

DEFAULT_BUSY_TIMEOUT = 30.0

# The table sqlite-utils' Migrations kept (stores written before this module
# used it): same name, columns and index, so old and new smtpctl read each
# other's records.
_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
"""


class SqliteBackend:
    engine = "sqlite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(self, conn: sqlite3.Connection, path: Path, *, on_disk: bool = True):
        self.conn = conn
        self.path = path
        self.on_disk = on_disk

    @property
    def label(self) -> str:
        return str(self.path)

    # -- opening -------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, busy_timeout: float | None = None) -> "SqliteBackend":
        if busy_timeout is None:
            busy_timeout = env_busy_timeout()
        if path.is_dir():
            raise StoreError(f"the store path {path} is a folder, not a file")
        if not path.exists():
            _create_store_file(path)
        try:
            conn = sqlite3.connect(str(path), timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, path)) from None
        conn.isolation_level = None  # autocommit; write() issues BEGIN IMMEDIATE itself
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA recursive_triggers = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(_describe(exc, path)) from None
        return cls(conn, path)

    @classmethod
    def memory(cls, path: Path) -> "SqliteBackend":
        conn = sqlite3.connect(":memory:")
        conn.isolation_level = None
        conn.execute("PRAGMA foreign_keys = ON")
        return cls(conn, path, on_disk=False)

    def close(self) -> None:
        self.conn.close()

    # -- statements ----------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: list[Sequence[Any]]) -> int:
        """Run one statement per row; the number of rows changed in all. (Plain
        tuples bind fastest: sqlite3 binds a named tuple's fields through the
        generic sequence protocol, 45% slower on an import's insert.)"""
        return self.conn.executemany(sql, rows).rowcount

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        return int(self.conn.execute(sql, params).lastrowid)  # type: ignore[arg-type]

    def describe(self, exc: BaseException, label: str | None = None) -> str:
        return _describe(exc, label or self.path)

    # -- transactions --------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def begin_write(self, shared: bool = False) -> None:
        """``BEGIN IMMEDIATE``: one writer at a time (there is no shared form)."""
        self.conn.execute("BEGIN IMMEDIATE")

    def lock_account(self, account_id: int) -> None:
        """Nothing to take: the write lock covers every account."""

    def lock_agency(self, agency_id: int) -> None:
        """Nothing to take: the write lock covers every agency."""

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def now(self) -> datetime:
        """One file on one machine: the machine's clock is the store's."""
        return utc_now()

    # -- schema --------------------------------------------------------------
    def applied(self) -> list[str]:
        exists = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"
        ).fetchone()
        if not exists:
            return []
        rows = self.conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id", [MIGRATION_SET]
        ).fetchall()
        return [r[0] for r in rows]

    def has_foreign_tables(self) -> bool:
        return bool(self.conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0])

    def foreign_store_message(self) -> str:
        return f"{self.path} is an SQLite file but not an smtpctl store"

    def prepare_migrations(self) -> None:
        """Outside any transaction: WAL must be set before the first write."""
        mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        if self.on_disk and mode.lower() != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")

    def apply(self, migration: Migration) -> None:
        """Apply one step and record it; call inside ``write()``."""
        # executescript() would COMMIT first: run statement by statement instead.
        for statement in _statements(_MIGRATIONS_TABLE + migration.sqlite):
            self.conn.execute(statement)
        self.conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
                          [MIGRATION_SET, migration.name, str(utc_now())])

    # -- care ----------------------------------------------------------------
    def size_bytes(self) -> int:
        if not self.on_disk:
            return 0
        return sum(p.stat().st_size
                   for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")) if p.exists())

    def backup_to(self, target: Path) -> None:
        """Copy the store with SQLite's online backup API (safe under writers)."""
        try:
            dest = sqlite3.connect(str(target))
            try:
                self.conn.backup(dest)
            finally:
                dest.close()
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, target)) from None

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def tables(self) -> list[str]:
        rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                 "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        return [r[0] for r in rows]

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info([{table}])")]

    def triggers(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}

    def reset_identities(self) -> None:
        """Nothing to do: an INTEGER PRIMARY KEY continues after the largest id."""


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (a trigger body keeps its ``;``)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def _describe(exc: BaseException, path: Path | str) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"the store {path} is locked by another writer and stayed locked past the busy timeout; try again"
    if "readonly" in text or "read-only" in text:
        return f"the store {path} is read-only: check the file's and its folder's permissions"
    if "not a database" in text or "malformed" in text:
        return f"{path} is not a readable smtpctl store ({text})"
    if "unable to open" in text:
        return f"cannot open the store {path} ({text})"
    return f"store error on {path}: {text}"


def env_busy_timeout() -> float:
    raw = os.environ.get("SMTPCTL_BUSY_TIMEOUT")
    if not raw:
        return DEFAULT_BUSY_TIMEOUT
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StoreError(f"SMTPCTL_BUSY_TIMEOUT must be a number of seconds, not {raw!r}") from None


def _create_store_file(path: Path) -> None:
    """Create the folder (0700) and an empty file (0600) before SQLite opens it."""
    try:
        if not path.parent.exists():
            os.makedirs(path.parent, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        return  # another process created it first
    except OSError as exc:
        raise StoreError(f"cannot create the store {path}: {exc.strerror}") from None
    if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
        os.chmod(path, 0o600)
