"""The PostgreSQL backend (psycopg 3): a fleet of smtpctl processes on
several hosts shares one store, and the caps hold exactly as on SQLite.

Locking (docs/store.md): every write transaction is READ COMMITTED and takes
one transaction-level advisory lock, ``pg_advisory_xact_lock(WRITE_LOCK)``,
as its first statement. Writers therefore run one at a time, exactly as
SQLite's ``BEGIN IMMEDIATE`` makes them, and each statement after the lock
sees every write committed before it: a read-then-write (the day's total,
then the message; the domain's credentials, then the new one; the plan,
then apply) cannot race another writer. The one exception is the live
paths' metering transaction (``Store.write(metering=True)``): it takes the
write lock SHARED (``pg_advisory_xact_lock_shared``), so it never runs
beside any other write, and then each metered account's own lock
(``pg_advisory_xact_lock(ACCOUNT_LOCKS, id)``, exclusive, in ascending
order) before it reads that account's total: metering transactions of
different accounts run in parallel, those of one account one at a time.
Reads take no lock. The wait for a lock is bounded by ``lock_timeout`` (the
busy timeout), past which the command exits 7 as on SQLite.

This module is imported only for a ``postgresql://`` store, so SQLite users
never load psycopg.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from smtpctl.core.store.dsn import dsn_secrets
from smtpctl.core.model.errors import StoreError
from smtpctl.core.store.schema import MIGRATION_SET, Migration
from smtpctl.core.store.sqlite import env_busy_timeout

# The one lock every writer takes (any constant: "smtpctl" in ASCII).
WRITE_LOCK = 0x736D7470637463
# The per-account locks: the two-key form (a key space apart from WRITE_LOCK's
# one-key form), this namespace ("smtp" in ASCII) and the account id.
ACCOUNT_LOCKS = 0x736D7470
AGENCY_LOCKS = 0x736D7471  # a prepaid agency's credits ("smtq")
MIGRATIONS_TABLE = "smtpctl_migrations"
CONNECT_TIMEOUT = 10


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """``?`` parameters to psycopg's ``%s`` (and a literal ``%`` to ``%%``),
    outside quoted text."""
    out, quote = [], None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
            out.append("%%" if ch == "%" else ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and ``store info``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql://…"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{host}"
    query = re.sub(r"(?i)(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class PostgresBackend:
    engine = "postgresql"
    errors: tuple[type[BaseException], ...] = (psycopg.Error,)
    integrity_errors: tuple[type[BaseException], ...] = (psycopg.IntegrityError,)
    on_disk = True

    def __init__(self, conn: psycopg.Connection, dsn: str, busy_timeout: float):
        self.conn = conn
        self.dsn = dsn
        self.label = redact(dsn)
        self.path = Path(self.label)  # for messages only: a DSN is not a file
        self.busy_timeout = busy_timeout
        # Between begin_write and its commit or rollback: a statement then never
        # runs on a new connection. A lost connection reads as "no transaction"
        # (its status is UNKNOWN), and reconnecting would run the rest of the
        # transaction, and its COMMIT, in autocommit on a new session, with the
        # first part of it gone: the error must end the whole transaction.
        self._write_open = False

    @classmethod
    def open(cls, dsn: str, busy_timeout: float | None = None) -> "PostgresBackend":
        if busy_timeout is None:
            busy_timeout = env_busy_timeout()
        if dsn.lower().startswith("postgres://"):
            dsn = "postgresql://" + dsn[len("postgres://"):]
        return cls(_connect(dsn, busy_timeout), dsn, busy_timeout)

    def close(self) -> None:
        self.conn.close()

    def _reconnect_if_lost(self) -> None:
        """A connection lost between transactions (a restart, a failover) is
        opened again, so a long-running server recovers without a restart;
        one lost inside a transaction fails that transaction (exit 7, 451)."""
        if self.conn.closed or self.conn.broken:
            self.conn = _connect(self.dsn, self.busy_timeout)

    # -- statements ----------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        if not self._write_open and not self.in_transaction:
            self._reconnect_if_lost()
            if sql.lstrip()[:6].upper() == "SELECT":
                return self._again_if_lost(self._execute, sql, params)
        return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor:
        if params:
            return self.conn.execute(translate(sql), list(params))  # type: ignore[arg-type]
        return self.conn.execute(sql)  # type: ignore[arg-type]

    def _again_if_lost(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, once more on a new connection if the connection
        turned out lost (a server restart since its last use: each of a
        server's connections finds out on its first statement after it). Only
        for what is safe to run twice: a read outside a transaction, a BEGIN."""
        try:
            return fn(*args)
        except psycopg.OperationalError:
            if not self.conn.broken:
                raise
        self.conn = _connect(self.dsn, self.busy_timeout)
        return fn(*args)

    def executemany(self, sql: str, rows: list[Sequence[Any]]) -> int:
        """Run one statement per row (pipelined); the number of rows changed in all."""
        if not rows:
            return 0
        with self.conn.cursor() as cursor:
            cursor.executemany(translate(sql), rows)  # type: ignore[arg-type]
            return cursor.rowcount

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        row = self.execute(sql + " RETURNING id", params).fetchone()
        return int(row[0])  # type: ignore[index]

    def describe(self, exc: BaseException, label: str | None = None) -> str:
        return _describe(exc, label or self.label)

    # -- transactions --------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        if self.conn.closed:
            return False
        return self.conn.info.transaction_status not in (TransactionStatus.IDLE, TransactionStatus.UNKNOWN)

    def begin_write(self, shared: bool = False) -> None:
        self._reconnect_if_lost()
        # Both statements in one round trip (no parameters: the simple query protocol).
        lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self._again_if_lost(lambda: self.conn.execute(
            f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT {lock}({WRITE_LOCK})"))
        self._write_open = True

    def lock_account(self, account_id: int) -> None:
        """One account's lock, exclusive, until the transaction ends. An id
        past 32 bits shares its key with another account: less parallel, as safe."""
        key = (account_id + 2**31) % 2**32 - 2**31
        self.conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ACCOUNT_LOCKS, key])

    def lock_agency(self, agency_id: int) -> None:
        """A prepaid agency's lock (its own key space), exclusive, until the transaction ends."""
        key = (agency_id + 2**31) % 2**32 - 2**31
        self.conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [AGENCY_LOCKS, key])

    def commit(self) -> None:
        # A lost connection raises here (psycopg refuses a broken one): nothing was committed.
        self.conn.execute("COMMIT")
        self._write_open = False

    def rollback(self) -> None:
        self._write_open = False
        if self.conn.closed:
            return
        if self.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # the connection is gone: the server rolled back

    def now(self) -> datetime:
        """The server's clock, read after the write lock: every node counts a
        message on the day the database says, and in the order writers ran."""
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        return row[0].astimezone(timezone.utc)  # type: ignore[index]

    # -- schema --------------------------------------------------------------
    def applied(self) -> list[str]:
        if self.conn.execute("SELECT to_regclass(%s)", [MIGRATIONS_TABLE]).fetchone()[0] is None:  # type: ignore[index]
            return []
        rows = self.conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = %s ORDER BY id",
                                 [MIGRATION_SET]).fetchall()
        return [r[0] for r in rows]

    def has_foreign_tables(self) -> bool:
        if self.applied():
            return False  # another process migrated it meanwhile
        return bool(self.conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()[0])  # type: ignore[index]

    def foreign_store_message(self) -> str:
        return f"the database {self.label} holds tables but is not an smtpctl store"

    def prepare_migrations(self) -> None:
        pass

    def apply(self, migration: Migration) -> None:
        self.conn.execute(f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            migration_set TEXT NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,
            UNIQUE (migration_set, name))""")
        self.conn.execute(migration.postgresql)  # type: ignore[arg-type]
        self.conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) "
                          "VALUES (%s, %s, clock_timestamp()::text)", [MIGRATION_SET, migration.name])

    # -- care ----------------------------------------------------------------
    def size_bytes(self) -> int:
        return int(self.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]

    def integrity_ok(self) -> bool:
        """PostgreSQL checks its pages itself; here: the database answers."""
        return self.conn.execute("SELECT 1").fetchone() == (1,)

    def tables(self) -> list[str]:
        rows = self.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                 "ORDER BY tablename").fetchall()
        return [r[0] for r in rows]

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                 "current_schema() AND table_name = %s ORDER BY ordinal_position", [table]).fetchall()
        return [r[0] for r in rows]

    def triggers(self) -> set[str]:
        rows = self.conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()
        return {r[0] for r in rows}

    def reset_identities(self) -> None:
        """After rows were inserted with their ids (``store copy``): let each
        identity continue after the largest id."""
        for table in ("agencies", "accounts", "domains", "credentials", "usage_events", "audit", "prices", "credits",
                      "statements", "notices", "notify_endpoints"):
            self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"GREATEST((SELECT max(id) FROM {table}), 1), (SELECT max(id) FROM {table}) IS NOT NULL)")


def _connect(dsn: str, busy_timeout: float) -> psycopg.Connection:
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name="smtpctl")
        conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('TimeZone', 'UTC', false)",
                     [f"{max(1, int(busy_timeout * 1000))}ms"])
    except psycopg.Error as exc:
        label = redact(dsn)
        missing = re.search(r'database "([^"]*)" does not exist', str(exc))
        if missing:  # a typo, or a fleet's first start: say how to create it
            raise StoreError(f"the PostgreSQL database {missing[1]!r} does not exist on {label}; create it first "
                             f"(as a role that may: createdb {shlex.quote(missing[1])}, with the same host and "
                             "user), then run the command again") from None
        raise StoreError(_describe(exc, label, secrets=dsn_secrets(dsn))) from None
    return conn


def _describe(exc: BaseException, label: str, secrets: list[str] = ()) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, label if secret.startswith(("postgres://", "postgresql://")) else "***")
    if isinstance(exc, (pg_errors.LockNotAvailable, pg_errors.QueryCanceled)):
        return f"the store {label} is locked by another writer and stayed locked past the busy timeout; try again"
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return f"the store {label} refuses this change: {text}"
    if isinstance(exc, psycopg.OperationalError):
        return f"cannot reach the PostgreSQL store {label} ({text}); try again"
    return f"store error on {label}: {text}"
