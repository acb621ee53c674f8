"""Queries on the audit trail (append-only) and the service settings."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from smtpctl.core.model.clock import now_iso


class NameSpan(NamedTuple):
    """Audit rows recorded under one account name, between two audit ids."""

    name: str
    low: int | None = None  # None: from the start
    high: int | None = None  # exclusive; None: to the end
    low_inclusive: bool = True


class AuditQueries:
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

    def audit_entries(self, *, since: str | None = None, until: str | None = None, until_inclusive: bool = False,
                      account_spans: list[NameSpan] | None = None, action: str | None = None,
                      action_prefix: str | None = None, actor: str | None = None,
                      limit: int = 0) -> list[dict[str, Any]]:
        """Audit rows, newest first, ``details`` decoded. ``since``/``until``
        bound ``at`` (UTC text); ``account_spans`` selects the rows of an account
        under each name it has had (names compare case-insensitively);
        ``action`` is exact, ``action_prefix`` matches ``PREFIX.*``; ``limit`` 0: all."""
        where: list[str] = []
        params: list[Any] = []
        if since:
            where.append("at >= ?")
            params.append(since)
        if until:
            where.append("at <= ?" if until_inclusive else "at < ?")
            params.append(until)
        if account_spans:
            parts = []
            for span in account_spans:
                clause = "lower(account) = lower(?)"
                params.append(span.name)
                if span.low is not None:
                    clause += " AND id >= ?" if span.low_inclusive else " AND id > ?"
                    params.append(span.low)
                if span.high is not None:
                    clause += " AND id < ?"
                    params.append(span.high)
                parts.append(f"({clause})")
            where.append("(" + " OR ".join(parts) + ")")
        if action:
            where.append("action = ?")
            params.append(action)
        if action_prefix:
            where.append("action LIKE ? ESCAPE '\\'")
            params.append(_like_prefix(action_prefix) + ".%")
        if actor:
            where.append("actor = ?")
            params.append(actor)
        sql = "SELECT id, at, actor, action, object_type, object_name, account, details FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.query(sql, params)
        for row in rows:
            row["details"] = json.loads(row["details"])
        return rows

    def audit_rows(self, *, object_type: str | None = None, action: str | None = None) -> list[dict[str, Any]]:
        """Every audit row (of one object type, or one action), oldest first, ``details`` as stored."""
        where, params = [], []
        if object_type is not None:
            where.append("object_type = ?")
            params.append(object_type)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        sql = "SELECT id, at, actor, action, object_type, object_name, account, details FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.query(sql + " ORDER BY id", params)

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

    # -- settings ------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        if self._writing and self._settings_memo is not None:  # read once per write transaction (Store.__init__)
            return dict(self._settings_memo)
        values = {r["key"]: r["value"] for r in self.query("SELECT key, value FROM settings")}
        if self._writing:
            self._settings_memo = values
            return dict(values)
        return values

    def put_setting(self, key: str, value: str) -> None:
        self._settings_memo = None
        self.backend.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            [key, value, now_iso()])

    def delete_setting(self, key: str) -> None:
        self._settings_memo = None
        self.backend.execute("DELETE FROM settings WHERE key = ?", [key])


def _like_prefix(text: str) -> str:
    """``text`` for a LIKE pattern with ``\\`` as the escape character."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
