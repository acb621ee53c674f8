"""The store: one SQLite file, reached through sqlite-utils.

This is the only module that speaks SQL. ``Store.open`` creates the file on
first use (0600 in a 0700 folder), refuses a store written by a newer
smtpctl or a file that is not a store, turns on WAL, foreign keys and a busy
timeout, and applies pending migrations in one ``BEGIN IMMEDIATE``
transaction. ``Store.write()`` is the one way to change data: a
``BEGIN IMMEDIATE`` transaction, so parallel writers queue on the busy
timeout instead of failing with "database is locked" halfway through a
read-then-write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from smtpctl.core.clock import now_iso
from smtpctl.core.errors import StoreError
from smtpctl.core.models import Account, Agency, Credential, Domain

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATION_SET = "smtpctl"
DEFAULT_BUSY_TIMEOUT = 30.0


def _migrations():
    """The schema, as named versioned steps; applied in order, each once."""
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(MIGRATION_SET)

    @migrations(name="0001_foundation")
    def foundation(db: "Database") -> None:
        db.executescript(_SCHEMA_0001)

    @migrations(name="0002_credentials")
    def credentials(db: "Database") -> None:
        db.executescript(_SCHEMA_0002)

    @migrations(name="0003_usage")
    def usage(db: "Database") -> None:
        db.executescript(_SCHEMA_0003)

    return migrations


# Names compare case-insensitively (NOCASE): "Acme" and "acme" are one agency.
_SCHEMA_0001 = """
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE agencies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at TEXT NOT NULL
);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    agency_id INTEGER NOT NULL REFERENCES agencies(id),
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    daily_limit INTEGER CHECK (daily_limit IS NULL OR daily_limit > 0),
    blocked_at TEXT,
    block_kind TEXT CHECK (block_kind IN ('limit', 'manual')),
    block_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX accounts_agency ON accounts(agency_id);
CREATE TABLE domains (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    account_id INTEGER REFERENCES accounts(id),
    agency_id INTEGER REFERENCES agencies(id),
    created_at TEXT NOT NULL,
    -- a domain is either dedicated (an account's) or agency-assigned, never both
    CHECK ((account_id IS NULL) <> (agency_id IS NULL))
);
CREATE INDEX domains_account ON domains(account_id);
CREATE INDEX domains_agency ON domains(agency_id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_name TEXT NOT NULL,
    account TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit(at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


# A deleted credential is deleted: the row goes, its history stays in the audit.
_SCHEMA_0002 = """
CREATE TABLE credentials (
    id INTEGER PRIMARY KEY,
    domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    login TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (domain_id, name)
);
CREATE INDEX credentials_domain ON credentials(domain_id);
"""


# Usage keeps names, not foreign keys, for the domain and login: a domain may
# be removed and a credential revoked, and what they sent stays billed.
# usage_daily is the per-day rollup reports read, kept in the same transaction
# as the events; account_id 0 stands for "no account" (inbound mail to an
# agency-assigned domain, billed to the agency).
_SCHEMA_0003 = """
CREATE TABLE usage_events (
    id INTEGER PRIMARY KEY,
    source_id TEXT UNIQUE,
    at TEXT NOT NULL,
    day TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    agency_id INTEGER NOT NULL REFERENCES agencies(id),
    account_id INTEGER NOT NULL,
    domain TEXT NOT NULL,
    login TEXT NOT NULL,
    to_count INTEGER NOT NULL,
    cc_count INTEGER NOT NULL,
    bcc_count INTEGER NOT NULL,
    emails INTEGER NOT NULL CHECK (emails > 0),
    recorded_at TEXT NOT NULL
);
CREATE TABLE usage_daily (
    day TEXT NOT NULL,
    agency_id INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    domain TEXT NOT NULL,
    login TEXT NOT NULL,
    direction TEXT NOT NULL,
    messages INTEGER NOT NULL,
    emails INTEGER NOT NULL,
    PRIMARY KEY (day, agency_id, account_id, domain, login, direction)
) WITHOUT ROWID;
CREATE INDEX usage_daily_account_day ON usage_daily(account_id, day, direction);
"""


# The schema steps this smtpctl knows, in order. Kept as plain names so that
# opening an up-to-date store needs no sqlite-utils import; a test checks they
# match the registered Migrations.
MIGRATION_NAMES = ("0001_foundation", "0002_credentials", "0003_usage")


def known_migrations() -> list[str]:
    return list(MIGRATION_NAMES)


def _describe(exc: sqlite3.Error, path: Path) -> str:
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


class Store:
    """An open store. Use ``Store.open``; close it with ``close()`` or ``with``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, actor: str):
        self.conn = conn
        self.path = path
        self.actor = actor
        self._db: "Database | None" = None
        self.on_disk = True  # False for Store.empty()

    @property
    def db(self) -> "Database":
        """The sqlite-utils view of the connection, for migrations and writes.

        Reads go straight to ``self.conn``: importing sqlite-utils costs ~30 ms,
        which read-only commands (lists, reports, status) need not pay.
        """
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn, execute_plugins=False)
        return self._db

    # -- opening -----------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, actor: str | None = None,
             busy_timeout: float | None = None) -> "Store":
        """Open (creating on first use) and migrate the store at ``path``.

        Raises ``StoreError`` for a path that is a folder, a file that is not
        an SQLite database, a store written by a newer smtpctl, or any file
        that cannot be opened or written; in each case nothing is changed.
        """
        path = Path(path).expanduser()
        if busy_timeout is None:
            busy_timeout = _env_busy_timeout()
        if path.is_dir():
            raise StoreError(f"the store path {path} is a folder, not a file")
        if not path.exists():
            _create_store_file(path)
        try:
            conn = sqlite3.connect(str(path), timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, path)) from None
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA recursive_triggers = ON")  # as sqlite-utils sets it
            store = cls(conn, path, actor or default_actor())
            store._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(_describe(exc, path)) from None
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def empty(cls, path: str | os.PathLike[str], *, actor: str | None = None) -> "Store":
        """An empty, migrated store in memory that names ``path``: what a
        read-only command sees where no store exists yet. Nothing is created
        on disk, and nothing written to it is kept."""
        conn = sqlite3.connect(":memory:")
        conn.execute("PRAGMA foreign_keys = ON")
        store = cls(conn, Path(path).expanduser(), actor or default_actor())
        store.on_disk = False
        store._migrate()
        return store

    def _applied(self) -> list[str]:
        exists = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"
        ).fetchone()
        if not exists:
            return []
        rows = self.conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id", [MIGRATION_SET]
        ).fetchall()
        return [r[0] for r in rows]

    def _check_not_newer(self, applied: list[str]) -> None:
        unknown = [name for name in applied if name not in known_migrations()]
        if unknown:
            raise StoreError(
                f"the store {self.path} was written by a newer smtpctl (schema step {unknown[-1]}); "
                "upgrade smtpctl to use it"
            )

    def _migrate(self) -> None:
        # Read first, write nothing, until we know the file is ours to change.
        applied = self._applied()
        if not applied:
            tables = self.conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
            if tables:
                raise StoreError(f"{self.path} is an SQLite file but not an smtpctl store")
        self._check_not_newer(applied)
        if len(applied) == len(known_migrations()):
            return
        mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")
        migrations = _migrations()
        with self.write():
            # Another process may have migrated while we waited for the lock.
            self._check_not_newer(self._applied())
            migrations.apply(self.db)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator["Store"]:
        """One ``BEGIN IMMEDIATE`` transaction; nested calls join the outer one.

        Raises ``StoreError`` when the store stays locked past the busy
        timeout or cannot be written; on any error everything is rolled back.
        """
        conn = self.conn
        if conn.in_transaction:
            yield self
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, self.path)) from None
        try:
            yield self
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(_describe(exc, self.path)) from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        try:
            cursor = self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor]
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, self.path)) from None

    def scalar(self, sql: str, params: Any = ()) -> Any:
        try:
            row = self.conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, self.path)) from None
        return row[0] if row else None

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        return self.db[table].insert(record).last_pk  # type: ignore[union-attr]

    # -- information ---------------------------------------------------------
    def schema_version(self) -> list[str]:
        return self._applied()

    def counts(self) -> dict[str, int]:
        return {
            table: self.scalar(f"SELECT count(*) FROM {table}")
            for table in ("agencies", "accounts", "domains", "credentials", "usage_events", "audit")
        }

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

    # -- audit ---------------------------------------------------------------
    def audit(self, action: str, object_type: str, object_name: str, *,
              account: str | None = None, details: dict[str, Any] | None = None) -> None:
        """Append one audit row; call inside ``write()``. Never pass secrets."""
        self._insert("audit", {
            "at": now_iso(),
            "actor": self.actor,
            "action": action,
            "object_type": object_type,
            "object_name": object_name,
            "account": account,
            "details": json.dumps(details or {}, sort_keys=True, default=str),
        })

    # -- settings ------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.query("SELECT key, value FROM settings")}

    def put_setting(self, key: str, value: str) -> None:
        self.db["settings"].upsert({"key": key, "value": value, "updated_at": now_iso()}, pk="key")

    # -- agencies ------------------------------------------------------------
    def agency(self, name: str) -> Agency | None:
        rows = self.query("SELECT id, name, created_at FROM agencies WHERE name = ?", [name])
        return Agency(**rows[0]) if rows else None

    def agencies(self) -> list[Agency]:
        return [Agency(**r) for r in self.query("SELECT id, name, created_at FROM agencies ORDER BY name")]

    def insert_agency(self, name: str) -> int:
        return self._insert("agencies", {"name": name, "created_at": now_iso()})

    def agency_counts(self) -> dict[int, tuple[int, int]]:
        """Per agency id: (accounts, domains), counting dedicated domains of its accounts."""
        rows = self.query("""
            SELECT g.id,
                   (SELECT count(*) FROM accounts a WHERE a.agency_id = g.id) AS accounts,
                   (SELECT count(*) FROM domains d LEFT JOIN accounts a ON a.id = d.account_id
                     WHERE d.agency_id = g.id OR a.agency_id = g.id) AS domains
            FROM agencies g
        """)
        return {r["id"]: (r["accounts"], r["domains"]) for r in rows}

    # -- accounts ------------------------------------------------------------
    _ACCOUNT_SQL = """
        SELECT a.id, a.name, g.name AS agency, a.daily_limit, a.blocked_at, a.block_kind,
               a.block_reason, a.created_at, a.updated_at
        FROM accounts a JOIN agencies g ON g.id = a.agency_id
    """

    def account(self, name: str) -> Account | None:
        rows = self.query(self._ACCOUNT_SQL + " WHERE a.name = ?", [name])
        return Account(**rows[0]) if rows else None

    def accounts(self, agency: str | None = None) -> list[Account]:
        if agency is None:
            rows = self.query(self._ACCOUNT_SQL + " ORDER BY a.name")
        else:
            rows = self.query(self._ACCOUNT_SQL + " WHERE g.name = ? ORDER BY a.name", [agency])
        return [Account(**r) for r in rows]

    def insert_account(self, name: str, agency_id: int, daily_limit: int | None) -> int:
        now = now_iso()
        return self._insert("accounts", {
            "name": name, "agency_id": agency_id, "daily_limit": daily_limit,
            "created_at": now, "updated_at": now,
        })

    def update_account(self, account_id: int, **changes: Any) -> None:
        changes["updated_at"] = now_iso()
        self.db["accounts"].update(account_id, changes)

    def account_domain_counts(self) -> dict[int, int]:
        rows = self.query("SELECT account_id, count(*) AS n FROM domains WHERE account_id IS NOT NULL GROUP BY account_id")
        return {r["account_id"]: r["n"] for r in rows}

    # -- domains -------------------------------------------------------------
    _DOMAIN_SQL = """
        SELECT d.id, d.name, a.name AS account, COALESCE(g1.name, g2.name) AS agency, d.created_at
        FROM domains d
        LEFT JOIN accounts a ON a.id = d.account_id
        LEFT JOIN agencies g1 ON g1.id = a.agency_id
        LEFT JOIN agencies g2 ON g2.id = d.agency_id
    """

    @staticmethod
    def _domain(row: dict[str, Any]) -> Domain:
        from smtpctl.core.rules import domain_unicode

        return Domain(unicode_name=domain_unicode(row["name"]), **row)

    def domain(self, name: str) -> Domain | None:
        rows = self.query(self._DOMAIN_SQL + " WHERE d.name = ?", [name])
        return self._domain(rows[0]) if rows else None

    def domains(self, *, account: str | None = None, agency: str | None = None) -> list[Domain]:
        where, params = [], []
        if account is not None:
            where.append("a.name = ?")
            params.append(account)
        if agency is not None:
            where.append("COALESCE(g1.name, g2.name) = ?")
            params.append(agency)
        sql = self._DOMAIN_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY d.name"
        return [self._domain(r) for r in self.query(sql, params)]

    def insert_domain(self, name: str, *, account_id: int | None, agency_id: int | None) -> int:
        return self._insert("domains", {
            "name": name, "account_id": account_id, "agency_id": agency_id, "created_at": now_iso(),
        })

    def domain_owners(self, name: str | None = None) -> dict[str, tuple[int, int | None, str | None]]:
        """Domain name -> (agency id, account id or None, account name or None), for one domain or all."""
        sql = """
            SELECT d.name, COALESCE(a.agency_id, d.agency_id), d.account_id, a.name
            FROM domains d LEFT JOIN accounts a ON a.id = d.account_id
        """
        rows = self.conn.execute(sql + " WHERE d.name = ?", [name]).fetchall() if name else self.conn.execute(sql).fetchall()
        return {name: (agency_id, account_id, account) for name, agency_id, account_id, account in rows}

    def domain_credential_counts(self) -> dict[int, int]:
        rows = self.query("SELECT domain_id, count(*) AS n FROM credentials GROUP BY domain_id")
        return {r["domain_id"]: r["n"] for r in rows}

    def delete_domain(self, domain_id: int) -> None:
        self.conn.execute("DELETE FROM credentials WHERE domain_id = ?", [domain_id])
        self.conn.execute("DELETE FROM domains WHERE id = ?", [domain_id])

    # -- credentials ---------------------------------------------------------
    _CREDENTIAL_SQL = """
        SELECT c.id, c.login, c.name, d.name AS domain, a.name AS account, g.name AS agency,
               c.password_hash, c.created_at, c.updated_at
        FROM credentials c
        JOIN domains d ON d.id = c.domain_id
        JOIN accounts a ON a.id = d.account_id
        JOIN agencies g ON g.id = a.agency_id
    """

    def credential(self, login: str) -> Credential | None:
        rows = self.query(self._CREDENTIAL_SQL + " WHERE c.login = ?", [login])
        return Credential(**rows[0]) if rows else None

    def credentials(self, *, domain: str | None = None, account: str | None = None,
                    agency: str | None = None) -> list[Credential]:
        where, params = [], []
        for column, value in (("d.name", domain), ("a.name", account), ("g.name", agency)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = self._CREDENTIAL_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY c.login"
        return [Credential(**r) for r in self.query(sql, params)]

    def insert_credential(self, domain_id: int, name: str, login: str, password_hash: str) -> int:
        now = now_iso()
        return self._insert("credentials", {
            "domain_id": domain_id, "name": name, "login": login, "password_hash": password_hash,
            "created_at": now, "updated_at": now,
        })

    def update_credential_hash(self, credential_id: int, password_hash: str, *, touch: bool = True) -> None:
        changes: dict[str, Any] = {"password_hash": password_hash}
        if touch:
            changes["updated_at"] = now_iso()
        self.db["credentials"].update(credential_id, changes)

    def delete_credential(self, credential_id: int) -> None:
        self.conn.execute("DELETE FROM credentials WHERE id = ?", [credential_id])

    # -- accounts by id, and revocation ----------------------------------------
    def accounts_by_id(self, ids: set[int]) -> list[Account]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return [Account(**r) for r in self.query(self._ACCOUNT_SQL + f" WHERE a.id IN ({marks})", sorted(ids))]

    def account_logins(self, account_id: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT c.login FROM credentials c JOIN domains d ON d.id = c.domain_id "
            "WHERE d.account_id = ? ORDER BY c.login", [account_id]).fetchall()
        return [r[0] for r in rows]

    def revoke_account_credentials(self, account_id: int) -> None:
        self.conn.execute(
            "DELETE FROM credentials WHERE domain_id IN (SELECT id FROM domains WHERE account_id = ?)", [account_id])

    # -- usage -----------------------------------------------------------------
    # The hot path of imports: plain executemany on the sqlite-utils connection.
    def existing_source_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(
                f"SELECT source_id FROM usage_events WHERE source_id IN ({marks})", chunk))
        return found

    def insert_usage(self, rows: list[tuple], *, only_new: bool = False) -> bool:
        """Insert events and add them to the per-day rollup, in the caller's transaction.

        With ``only_new`` the caller has not checked the source ids against
        the store (an import of new messages need not look each one up: the
        insert checks them anyway): if any is already there, nothing is
        inserted and the answer is False, for the caller to check and retry.
        """
        conn = self.conn
        if only_new:
            conn.execute("SAVEPOINT usage_only_new")
            inserted = conn.executemany(_INSERT_EVENT + " ON CONFLICT (source_id) DO NOTHING", rows).rowcount
            if inserted != len(rows):
                conn.execute("ROLLBACK TO usage_only_new")
                conn.execute("RELEASE usage_only_new")
                return False
            conn.execute("RELEASE usage_only_new")
        else:
            conn.executemany(_INSERT_EVENT, rows)
        rollup: dict[tuple, list[int]] = {}
        for row in rows:
            key = (row[2], row[4], row[5], row[6], row[7], row[3])
            acc = rollup.get(key)
            if acc is None:
                rollup[key] = [1, row[11]]
            else:
                acc[0] += 1
                acc[1] += row[11]
        conn.executemany(
            "INSERT INTO usage_daily (day, agency_id, account_id, domain, login, direction, messages, emails) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (day, agency_id, account_id, domain, login, direction) "
            "DO UPDATE SET messages = messages + excluded.messages, emails = emails + excluded.emails",
            [(*key, m, e) for key, (m, e) in rollup.items()])
        return True

    def delete_usage_event(self, source_id: str) -> bool:
        """Remove one event and take it out of the rollup, in the caller's transaction."""
        row = self.conn.execute(
            "SELECT day, agency_id, account_id, domain, login, direction, emails FROM usage_events "
            "WHERE source_id = ?", [source_id]).fetchone()
        if row is None:
            return False
        self.conn.execute("DELETE FROM usage_events WHERE source_id = ?", [source_id])
        key = "day = ? AND agency_id = ? AND account_id = ? AND domain = ? AND login = ? AND direction = ?"
        self.conn.execute(f"UPDATE usage_daily SET messages = messages - 1, emails = emails - ? WHERE {key}",
                          [row[6], *row[:6]])
        self.conn.execute(f"DELETE FROM usage_daily WHERE {key} AND messages <= 0", list(row[:6]))
        return True

    def outbound_totals(self, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """Outbound emails per (account id, day), for the keys asked.

        A day asked for a few accounts (the live paths ask for one) is read
        through the ``(account_id, day, direction)`` index, one account at a
        time (~20 us each); a day asked for many (an import batch) in one pass
        over that day's rollup, which costs ~1 us a row whatever the number of
        accounts. Without the ``INDEXED BY`` SQLite picks the primary key's
        ``day`` prefix and reads the whole day even for one account.
        """
        wanted = set(keys)
        totals = dict.fromkeys(wanted, 0)
        by_day: dict[str, list[int]] = {}
        for account_id, day in wanted:
            by_day.setdefault(day, []).append(account_id)
        execute = self.conn.execute
        for day, accounts in sorted(by_day.items()):
            if len(accounts) <= _FEW_ACCOUNTS:
                for account_id in accounts:
                    (emails,) = execute(
                        "SELECT SUM(emails) FROM usage_daily INDEXED BY usage_daily_account_day "
                        "WHERE account_id = ? AND day = ? AND direction = 'outbound'", (account_id, day)).fetchone()
                    totals[(account_id, day)] = emails or 0
                continue
            for account_id, emails in execute(
                    "SELECT account_id, SUM(emails) FROM usage_daily WHERE day = ? AND direction = 'outbound' "
                    "GROUP BY account_id", (day,)):
                if (account_id, day) in totals:
                    totals[(account_id, day)] = emails
        return totals

    # Each group: (the column aggregated on, the name shown for it).
    _GROUP_SQL = {
        "day": ("u.day", "r.day"), "agency": ("u.agency_id", "g.name"),
        "account": ("u.account_id", "COALESCE(a.name, '')"), "domain": ("u.domain", "r.domain"),
        "user": ("u.login", "r.user"), "direction": ("u.direction", "r.direction"),
    }

    def usage_rollup(self, since: str, until: str, groups: list[str], filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Sum the per-day rollup over a range, grouped; aggregate on ids first,
        then join names, so the join touches result rows, not rollup rows."""
        inner = [f"{self._GROUP_SQL[g][0]} AS {g}" for g in groups]
        outer = [f"{self._GROUP_SQL[g][1]} AS {g}" for g in groups]
        where, params = ["u.day BETWEEN ? AND ?"], [since, until]
        for column, value in filters.items():
            where.append(f"u.{column} = ?")
            params.append(value)
        positions = ", ".join(str(i + 1) for i in range(len(groups)))
        joins = ""
        if "agency" in groups:
            joins += " JOIN agencies g ON g.id = r.agency"
        if "account" in groups:
            joins += " LEFT JOIN accounts a ON a.id = r.account"
        sql = (
            f"SELECT {', '.join(outer)}, r.messages, r.emails, r.outbound, r.inbound FROM ("
            f"SELECT {', '.join(inner)}, SUM(u.messages) AS messages, SUM(u.emails) AS emails, "
            "SUM(CASE WHEN u.direction = 'outbound' THEN u.emails ELSE 0 END) AS outbound, "
            "SUM(CASE WHEN u.direction = 'inbound' THEN u.emails ELSE 0 END) AS inbound "
            f"FROM usage_daily u WHERE {' AND '.join(where)} GROUP BY {positions}) r{joins} "
            f"ORDER BY {positions}"
        )
        return self.query(sql, params)


    # -- rename and remove ---------------------------------------------------------
    # Usage, domains and credentials refer to agencies and accounts by id, so a
    # rename is one UPDATE and the history follows; the audit trail keeps the
    # names as they were and records the rename (see ``name_history``).
    def rename_agency(self, agency_id: int, name: str) -> None:
        self.conn.execute("UPDATE agencies SET name = ? WHERE id = ?", [name, agency_id])

    def rename_account(self, account_id: int, name: str) -> None:
        self.conn.execute("UPDATE accounts SET name = ?, updated_at = ? WHERE id = ?", [name, now_iso(), account_id])

    def delete_agency(self, agency_id: int) -> None:
        self.conn.execute("DELETE FROM agencies WHERE id = ?", [agency_id])

    def delete_account(self, account_id: int) -> None:
        self.conn.execute("DELETE FROM accounts WHERE id = ?", [account_id])

    def usage_summary(self, *, account_id: int | None = None, agency_id: int | None = None) -> dict[str, Any]:
        """Billed emails of one account or agency: ``{"emails", "first_day", "last_day"}`` (0/None if none)."""
        column, value = ("account_id", account_id) if account_id is not None else ("agency_id", agency_id)
        rows = self.query(f"SELECT COALESCE(SUM(emails), 0) AS emails, MIN(day) AS first_day, MAX(day) AS last_day "
                          f"FROM usage_daily WHERE {column} = ?", [value])
        return rows[0]

    def emails_before(self, day: str) -> dict[str, Any]:
        """Billed emails on days before ``day``: ``{"emails", "first_day"}``."""
        return self.query("SELECT COALESCE(SUM(emails), 0) AS emails, MIN(day) AS first_day FROM usage_daily "
                          "WHERE day < ?", [day])[0]

    def name_history(self, object_type: str) -> list[dict[str, Any]]:
        """Renames and removals of an ``object_type`` in the audit trail, oldest
        first: ``{"id", "action": "rename"|"delete", "old", "new"}`` (``new`` is
        None for a removal)."""
        rows = self.query("SELECT id, action, object_name, details FROM audit WHERE action IN (?, ?) ORDER BY id",
                          [f"{object_type}.rename", f"{object_type}.delete"])
        out = []
        for row in rows:
            if row["action"].endswith(".rename"):
                details = json.loads(row["details"])
                out.append({"id": row["id"], "action": "rename", "old": details.get("old", ""),
                            "new": details.get("new", "")})
            else:
                out.append({"id": row["id"], "action": "delete", "old": row["object_name"], "new": None})
        return out

    def delete_setting(self, key: str) -> None:
        self.conn.execute("DELETE FROM settings WHERE key = ?", [key])


_INSERT_EVENT = ("INSERT INTO usage_events (source_id, at, day, direction, agency_id, account_id, domain, login, "
                 "to_count, cc_count, bcc_count, emails, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")

# Up to this many accounts a day, outbound_totals reads each through the
# account index; past it, the whole day's rollup in one pass.
_FEW_ACCOUNTS = 16


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


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


def _env_busy_timeout() -> float:
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
