"""The store: every object, event, rollup, audit entry and setting.

``Store`` is the one door to the data: services call its methods and never
write SQL. It is composed of a backend (``sqlite.py``, ``postgresql.py``:
the connection, transactions, migrations, errors, backup) and the queries
by subject (``directory.py``: agencies, accounts, domains, credentials;
``usage.py``: events, the daily rollup and totals; ``audit.py``: the audit
trail and settings; ``revoked.py``: credentials revoked lately;
``notices.py``: the outbox and its deliveries), written once in SQL both engines run; ``?`` marks a
parameter on both.

``Store.open`` creates the store on first use, refuses one written by a
newer smtpctl or a file that is not a store, and applies pending
migrations under the write lock. ``Store.write()`` is the one way to change
data: one transaction that holds the store's write lock from its first
statement, so a read-then-write never races another writer.
``Store.write(metering=True)`` is the live paths' admission transaction: on
PostgreSQL it holds the write lock shared and each metered account's own
lock (``lock_accounts``), so nodes metering different accounts run in
parallel while every cap keeps its proof (docs/store.md); on SQLite it is
the same ``BEGIN IMMEDIATE`` as any write.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from smtpctl.core.model.errors import StoreError
from smtpctl.core.store.audit import AuditQueries
from smtpctl.core.store.billing import BillingQueries
from smtpctl.core.store.directory import DirectoryQueries, DomainOwner
from smtpctl.core.store.dsn import is_dsn
from smtpctl.core.store.revoked import RevokedQueries
from smtpctl.core.store.notices import NoticeQueries
from smtpctl.core.store.schema import MIGRATION_NAMES, MIGRATION_SET, MIGRATIONS, known_migrations
from smtpctl.core.store.sqlite import DEFAULT_BUSY_TIMEOUT, SqliteBackend
from smtpctl.core.store.usage import UsageQueries

__all__ = [
    "DEFAULT_BUSY_TIMEOUT", "MIGRATIONS", "MIGRATION_NAMES", "MIGRATION_SET", "DomainOwner", "Store",
    "default_actor", "known_migrations",
]



class Store(DirectoryQueries, UsageQueries, AuditQueries, BillingQueries, RevokedQueries, NoticeQueries):
    """An open store. Use ``Store.open``; close it with ``close()`` or ``with``."""

    def __init__(self, backend: Any, actor: str | None):
        self.backend = backend
        # Worked out on first use: default_actor() loads getpass (~0.7 ms of
        # start-up), and only a write names its actor.
        self._actor = actor or None
        self._savepoints = 0
        # The settings as read inside the current write transaction: no other
        # writer can change them while it holds the write lock, so one read
        # serves the whole transaction (a group commit's batch reads them once).
        self._settings_memo: dict[str, str] | None = None
        self._writing = False
        # What the admissions of one write transaction read once and keep
        # (usage.py: the clock, the settings, each sender, each day's total),
        # valid while the locks that guard them are held; emptied when the
        # transaction ends and when a savepoint rolls back.
        self.txn_memo: dict[Any, Any] = {}
        # The accounts whose lock this transaction holds: None = every one
        # (an exclusive write, or SQLite, whose one lock covers all).
        self._accounts_held: set[int] | None = None
        self._agencies_held: set[int] = set()
        self._metering = False

    # -- what callers read -----------------------------------------------------
    @property
    def actor(self) -> str:
        """Who the audit trail names: the actor the store was opened with, else ``default_actor()``."""
        if self._actor is None:
            self._actor = default_actor()
        return self._actor

    @property
    def engine(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.backend.engine

    @property
    def path(self) -> Path:
        """The SQLite file (for PostgreSQL: the DSN without its password, as a Path-like label)."""
        return self.backend.path

    @property
    def target(self) -> "Path | str":
        """What ``Store.open`` takes to open this store again (in another
        thread or process): the file, or the full DSN."""
        return self.backend.path if self.engine == "sqlite" else self.backend.dsn

    @property
    def location(self) -> str:
        """Where the store is, for messages: the file, or the DSN without its password."""
        return self.backend.label

    @property
    def on_disk(self) -> bool:
        """False for ``Store.empty()`` (nothing created, nothing kept)."""
        return self.backend.on_disk

    @property
    def conn(self) -> Any:
        """The backend's connection (the DB-API connection of the engine)."""
        return self.backend.conn

    # -- opening -----------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, actor: str | None = None,
             busy_timeout: float | None = None) -> "Store":
        """Open (creating on first use) and migrate the store at ``path``: a
        file, or a PostgreSQL DSN (``postgresql://…``).

        Raises ``StoreError`` for a path that is a folder, a file that is not
        an SQLite database, a store written by a newer smtpctl, a server that
        cannot be reached, or anything that cannot be opened or written; in
        each case nothing is changed.
        """
        if is_dsn(path):
            from smtpctl.core.store.postgresql import PostgresBackend

            backend: Any = PostgresBackend.open(str(path), busy_timeout=busy_timeout)
        else:
            backend = SqliteBackend.open(Path(path).expanduser(), busy_timeout=busy_timeout)
        store = cls(backend, actor)
        try:
            store._migrate()
        except backend.errors as exc:
            backend.close()
            raise StoreError(backend.describe(exc)) from None
        except BaseException:
            backend.close()
            raise
        return store

    @classmethod
    def empty(cls, path: str | os.PathLike[str], *, actor: str | None = None) -> "Store":
        """An empty, migrated store in memory that names ``path``: what a
        read-only command sees where no store exists yet. Nothing is created
        on disk, and nothing written to it is kept."""
        store = cls(SqliteBackend.memory(Path(path).expanduser()), actor)
        store._migrate()
        return store

    def _check_not_newer(self, applied: list[str]) -> None:
        unknown = [name for name in applied if name not in known_migrations()]
        if unknown:
            raise StoreError(
                f"the store {self.location} was written by a newer smtpctl (schema step {unknown[-1]}); "
                "upgrade smtpctl to use it"
            )

    def _migrate(self) -> None:
        backend = self.backend
        # Read first, write nothing, until we know the store is ours to change.
        applied = backend.applied()
        if not applied and backend.has_foreign_tables():
            raise StoreError(backend.foreign_store_message())
        self._check_not_newer(applied)
        if len(applied) == len(MIGRATIONS):
            return
        backend.prepare_migrations()
        with self.write():
            # Another process may have migrated while we waited for the lock.
            applied = backend.applied()
            self._check_not_newer(applied)
            for migration in MIGRATIONS:
                if migration.name not in applied:
                    backend.apply(migration)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------
    @contextmanager
    def write(self, *, metering: bool = False) -> Iterator["Store"]:
        """One write transaction holding the store's write lock; nested calls
        join the outer one.

        ``metering``: a transaction that only admits messages
        (``usage.admit_message``) and reads. On PostgreSQL it holds the write
        lock shared, so it runs beside other nodes' metering transactions and
        never beside any other write, and it must hold an account's lock
        (``lock_accounts``) before it reads or writes that account's totals,
        events or credentials. On SQLite it is an ordinary write.

        Raises ``StoreError`` when the lock cannot be had in time or the store
        cannot be written; on any error everything is rolled back.
        """
        backend = self.backend
        if backend.in_transaction:
            yield self
            return
        shared = metering and backend.engine == "postgresql"
        try:
            backend.begin_write(shared=shared)
        except backend.errors as exc:
            backend.rollback()
            raise StoreError(backend.describe(exc)) from None
        self._writing, self._settings_memo = True, None
        self._accounts_held = set() if shared else None
        self._agencies_held = set()
        self._metering = metering
        self.txn_memo.clear()
        try:
            yield self
            backend.commit()
        except backend.errors as exc:
            backend.rollback()
            raise StoreError(backend.describe(exc)) from None
        except BaseException:
            backend.rollback()
            raise
        finally:
            self._writing, self._settings_memo, self._accounts_held, self._metering = False, None, None, False
            self._agencies_held = set()
            self.txn_memo.clear()

    @property
    def metering(self) -> bool:
        """Inside ``write(metering=True)``: only admissions run in this transaction."""
        return self._metering

    @property
    def locks_accounts(self) -> bool:
        """This transaction must take each account's lock (PostgreSQL, metering)."""
        return self._accounts_held is not None

    def holds_account(self, account_id: int) -> bool:
        """Whether this write transaction may read and change the account's
        usage: it holds the account's lock (or the write lock exclusive)."""
        held = self._accounts_held
        return held is None or account_id in held

    def lock_accounts(self, account_ids: Iterable[int]) -> None:
        """Inside ``write(metering=True)`` on PostgreSQL: take each account's
        lock not held yet, in ascending order, until the transaction ends.
        Every node takes them in that order (a batch resolves its logins to
        accounts first), so two transactions never wait on each other in a
        circle. Elsewhere a no-op: the write lock already covers every account."""
        held = self._accounts_held
        if held is None:
            return
        for account_id in sorted(set(account_ids) - held):
            self.backend.lock_account(account_id)
            held.add(account_id)

    def lock_agency(self, agency_id: int) -> None:
        """Inside ``write(metering=True)`` on PostgreSQL: take a prepaid
        agency's lock (its credits are shared by all its accounts), after the
        accounts' locks, until the transaction ends. Elsewhere a no-op."""
        if self._accounts_held is None or agency_id in self._agencies_held:
            return
        self.backend.lock_agency(agency_id)
        self._agencies_held.add(agency_id)

    @contextmanager
    def savepoint(self) -> Iterator["Store"]:
        """A step inside ``write()`` that is undone alone when it raises."""
        self._savepoints += 1
        name = f"step{self._savepoints}"
        held = None if self._accounts_held is None else set(self._accounts_held)
        agencies_held = set(self._agencies_held)
        self.backend.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            self._settings_memo = None  # the step may have changed a setting it now undoes
            self.txn_memo.clear()  # ... or a total, or a credential
            if held is not None:  # PostgreSQL gives back the locks taken since the savepoint at its rollback
                self._accounts_held = held
                self._agencies_held = agencies_held
            self.backend.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.backend.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self.backend.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1

    def now(self) -> datetime:
        """The store's clock (UTC): on PostgreSQL the server's time inside the
        transaction, so every node of a fleet counts a message on the same day."""
        return self.backend.now()

    # -- statements ------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (``?`` parameters); the number of rows it changed.
        For maintenance and tests: services call the named methods."""
        try:
            return self.backend.execute(sql, params).rowcount
        except self.backend.errors as exc:
            if self.backend.in_transaction:
                raise
            raise StoreError(self.backend.describe(exc)) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            cursor = self.backend.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor]
        except self.backend.errors as exc:
            raise StoreError(self.backend.describe(exc)) from None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            row = self.backend.execute(sql, params).fetchone()
        except self.backend.errors as exc:
            raise StoreError(self.backend.describe(exc)) from None
        return row[0] if row else None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return list(self.backend.execute(sql, params).fetchall())
        except self.backend.errors as exc:
            if self.backend.in_transaction:
                raise  # write() maps it, after the rollback
            raise StoreError(self.backend.describe(exc)) from None

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        columns = ", ".join(record)
        marks = ", ".join("?" * len(record))
        return self.backend.insert_id(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(record.values()))

    def _update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        self.backend.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*changes.values(), row_id])

    # -- information ---------------------------------------------------------
    def schema_version(self) -> list[str]:
        return self.backend.applied()

    TABLES = ("agencies", "accounts", "domains", "credentials", "usage_events", "audit")

    def counts(self) -> dict[str, int]:
        return {table: self.scalar(f"SELECT count(*) FROM {table}") for table in self.TABLES}

    def size_bytes(self) -> int:
        """The store's size: the file with its WAL files, or the PostgreSQL database."""
        return self.backend.size_bytes()

    def backup_to(self, target: Path) -> None:
        """Copy an SQLite store with the online backup API (safe under writers)."""
        if self.engine != "sqlite":
            raise StoreError("store backup copies an SQLite store; for PostgreSQL use pg_dump, "
                             "or smtpctl store copy to an SQLite file")
        self.backend.backup_to(target)

    def integrity_ok(self) -> bool:
        """The engine's own consistency check passes (SQLite: ``PRAGMA integrity_check``)."""
        return self.backend.integrity_ok()

    def tables(self) -> list[str]:
        """The store's tables (the migrations' record included), by name."""
        return self.backend.tables()

    def columns(self, table: str) -> list[str]:
        return self.backend.columns(table)

    def triggers(self) -> set[str]:
        return self.backend.triggers()


def default_actor() -> str:
    """Who the audit trail names: ``SMTPCTL_ACTOR``, else the OS user."""
    actor = os.environ.get("SMTPCTL_ACTOR", "").strip()
    if actor:
        return actor
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for the uid (containers)
        return f"uid:{os.getuid()}"
