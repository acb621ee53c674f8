"""Queries on the directory: agencies, accounts, domains and credentials.

Agency and account names compare case-insensitively in the schema itself
(SQLite ``COLLATE NOCASE``, PostgreSQL ``citext``), so ``name = ?`` finds
``Acme`` for ``acme``, and sorts and uniqueness agree, on both engines.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from smtpctl.core.model.clock import now_iso
from smtpctl.core.model.records import Account, Agency, Credential, Domain


class DomainOwner(NamedTuple):
    """Who a domain belongs to: its agency, and its account when dedicated."""

    agency_id: int
    account_id: int | None  # None: agency-assigned
    account: str | None  # the account's name, None when agency-assigned


class AgencyCounts(NamedTuple):
    accounts: int
    domains: int  # dedicated domains of its accounts and its agency-assigned ones


class DirectoryQueries:
    # -- agencies ------------------------------------------------------------
    def agency(self, name: str) -> Agency | None:
        rows = self.query("SELECT id, name, created_at FROM agencies WHERE name = ?", [name])
        return Agency(**rows[0]) if rows else None

    def agencies(self) -> list[Agency]:
        return [Agency(**r) for r in self.query("SELECT id, name, created_at FROM agencies ORDER BY name")]

    def insert_agency(self, name: str) -> int:
        return self._insert("agencies", {"name": name, "created_at": now_iso()})

    def agency_counts(self) -> dict[int, AgencyCounts]:
        """Per agency id: (accounts, domains), counting dedicated domains of its accounts."""
        rows = self.query("""
            SELECT g.id,
                   (SELECT count(*) FROM accounts a WHERE a.agency_id = g.id) AS accounts,
                   (SELECT count(*) FROM domains d LEFT JOIN accounts a ON a.id = d.account_id
                     WHERE d.agency_id = g.id OR a.agency_id = g.id) AS domains
            FROM agencies g
        """)
        return {r["id"]: AgencyCounts(r["accounts"], r["domains"]) for r in rows}

    def rename_agency(self, agency_id: int, name: str) -> None:
        # Usage, domains and credentials refer to agencies and accounts by id,
        # so a rename is one UPDATE and the history follows; the audit trail
        # keeps the names as they were and records the rename (``name_history``).
        self.backend.execute("UPDATE agencies SET name = ? WHERE id = ?", [name, agency_id])

    def delete_agency(self, agency_id: int) -> None:
        self.backend.execute("DELETE FROM agencies WHERE id = ?", [agency_id])

    # -- limits in more windows (directory/limits.py) ---------------------------
    _LIMIT_COLUMNS = {"accounts": ("hourly_limit", "daily_limit", "monthly_limit"),
                      "credentials": ("hourly_limit", "daily_limit"), "agencies": ("monthly_limit",)}

    def limit_columns(self, table: str, row_id: int, columns: list[str]) -> list[int | None]:
        assert set(columns) <= set(self._LIMIT_COLUMNS[table])  # names from the code, never from input
        rows = self._rows(f"SELECT {', '.join(columns)} FROM {table} WHERE id = ?", [row_id])
        return list(rows[0]) if rows else [None] * len(columns)

    def set_limit_column(self, table: str, row_id: int, column: str, value: int | None) -> None:
        assert column in self._LIMIT_COLUMNS[table]
        # (not a credential's updated_at: it tells a reset password from the one a session authenticated with)
        extra = ", updated_at = ?" if table == "accounts" else ""
        params = [value, now_iso()] if extra else [value]
        self.backend.execute(f"UPDATE {table} SET {column} = ?{extra} WHERE id = ?", [*params, row_id])

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

    def accounts_by_id(self, ids: set[int]) -> list[Account]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return [Account(**r) for r in self.query(self._ACCOUNT_SQL + f" WHERE a.id IN ({marks})", sorted(ids))]

    def insert_account(self, name: str, agency_id: int, daily_limit: int | None) -> int:
        now = now_iso()
        return self._insert("accounts", {
            "name": name, "agency_id": agency_id, "daily_limit": daily_limit,
            "created_at": now, "updated_at": now,
        })

    def update_account(self, account_id: int, **changes: Any) -> None:
        changes["updated_at"] = now_iso()
        self._update("accounts", account_id, changes)

    def account_domain_counts(self) -> dict[int, int]:
        rows = self.query("SELECT account_id, count(*) AS n FROM domains WHERE account_id IS NOT NULL "
                          "GROUP BY account_id")
        return {r["account_id"]: r["n"] for r in rows}

    def rename_account(self, account_id: int, name: str) -> None:
        self.backend.execute("UPDATE accounts SET name = ?, updated_at = ? WHERE id = ?", [name, now_iso(), account_id])

    def delete_account(self, account_id: int) -> None:
        self.backend.execute("DELETE FROM accounts WHERE id = ?", [account_id])

    def account_logins(self, account_id: int) -> list[str]:
        rows = self._rows(
            "SELECT c.login FROM credentials c JOIN domains d ON d.id = c.domain_id "
            "WHERE d.account_id = ? ORDER BY c.login", [account_id])
        return [r[0] for r in rows]

    def revoke_account_credentials(self, account_id: int, reason: str, day: str | None = None) -> None:
        """Delete every credential of the account, keeping a short-lived record
        of each (``revoked.py``: ``serve`` tells their senders ``reason``), in
        the caller's transaction."""
        self.record_revoked_credentials(account_id, reason, day)
        self.backend.execute(
            "DELETE FROM credentials WHERE domain_id IN (SELECT id FROM domains WHERE account_id = ?)", [account_id])

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
        from smtpctl.core.model.rules import domain_unicode

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

    def domain_owners(self, name: str | None = None) -> dict[str, DomainOwner]:
        """Domain name -> its ``DomainOwner`` (agency id, account id, account name), for one domain or all."""
        sql = """
            SELECT d.name, COALESCE(a.agency_id, d.agency_id), d.account_id, a.name
            FROM domains d LEFT JOIN accounts a ON a.id = d.account_id
        """
        rows = self._rows(sql + " WHERE d.name = ?", [name]) if name else self._rows(sql)
        return {name: DomainOwner(agency_id, account_id, account) for name, agency_id, account_id, account in rows}

    def domain_credential_counts(self) -> dict[int, int]:
        rows = self.query("SELECT domain_id, count(*) AS n FROM credentials GROUP BY domain_id")
        return {r["domain_id"]: r["n"] for r in rows}

    def delete_domain(self, domain_id: int) -> None:
        self.backend.execute("DELETE FROM credentials WHERE domain_id = ?", [domain_id])
        self.backend.execute("DELETE FROM domains WHERE id = ?", [domain_id])

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
        self._update("credentials", credential_id, changes)

    def delete_credential(self, credential_id: int) -> None:
        self.backend.execute("DELETE FROM credentials WHERE id = ?", [credential_id])
