"""Queries on the notices: the outbox, the endpoints and the deliveries."""

from __future__ import annotations

from typing import Any

# A delivery row with what the worker and ``notify log`` need of its notice and endpoint.
_DELIVERY_SQL = """
    SELECT n.msg_id, n.kind, n.data, n.created_at, d.notice_id, d.endpoint_id, e.url, e.secret, d.status,
           d.attempts, d.next_attempt_at, d.last_http_status, d.last_error, d.updated_at
    FROM notice_deliveries d
    JOIN notices n ON n.id = d.notice_id
    JOIN notify_endpoints e ON e.id = d.endpoint_id
"""


class NoticeQueries:
    # -- the outbox ------------------------------------------------------------
    def insert_notice(self, msg_id: str, kind: str, data: str, created_at: str, once_key: str | None) -> int | None:
        """Add a notice; call inside ``write()``. Its row id, or None when
        ``once_key`` is already in the outbox (nothing is written)."""
        cursor = self.backend.execute(
            "INSERT INTO notices (msg_id, kind, data, created_at, once_key) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (once_key) DO NOTHING", [msg_id, kind, data, created_at, once_key])
        if cursor.rowcount == 0:
            return None
        return int(self._rows("SELECT id FROM notices WHERE msg_id = ?", [msg_id])[0][0])

    def insert_deliveries(self, notice_id: int, endpoint_ids: list[int], due: str) -> None:
        self.backend.executemany(
            "INSERT INTO notice_deliveries (notice_id, endpoint_id, status, attempts, next_attempt_at, updated_at) "
            "VALUES (?, ?, 'pending', 0, ?, ?)", [(notice_id, endpoint_id, due, due) for endpoint_id in endpoint_ids])

    def notices(self, *, limit: int = 0) -> list[dict[str, Any]]:
        """The outbox, oldest first (``data`` as stored: JSON text)."""
        sql = "SELECT id, msg_id, kind, data, created_at, once_key FROM notices ORDER BY id"
        return self.query(sql + (" LIMIT ?" if limit else ""), [limit] if limit else [])

    # -- endpoints ---------------------------------------------------------------
    def insert_endpoint(self, url: str, events: str, secret: str, created_at: str) -> int:
        return self._insert("notify_endpoints", {"url": url, "events": events, "secret": secret,
                                                 "created_at": created_at})

    def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint, by id, secret included (the caller keeps it to itself)."""
        return self.query("SELECT id, url, events, secret, created_at FROM notify_endpoints ORDER BY id")

    def endpoint(self, endpoint_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT id, url, events, secret, created_at FROM notify_endpoints WHERE id = ?",
                          [endpoint_id])
        return rows[0] if rows else None

    def delete_endpoint(self, endpoint_id: int) -> None:
        # Explicitly, not by the cascade alone: SQLite enforces it, but say what goes.
        self.backend.execute("DELETE FROM notice_deliveries WHERE endpoint_id = ?", [endpoint_id])
        self.backend.execute("DELETE FROM notify_endpoints WHERE id = ?", [endpoint_id])

    # -- deliveries -------------------------------------------------------------
    def due_delivery(self, now: str) -> dict[str, Any] | None:
        """The oldest pending delivery due at ``now`` whose lease (if any) has run out."""
        rows = self.query(_DELIVERY_SQL + " WHERE d.status = 'pending' AND d.next_attempt_at <= ? "
                          "AND (d.lease_until IS NULL OR d.lease_until <= ?) "
                          "ORDER BY d.next_attempt_at, d.notice_id, d.endpoint_id LIMIT 1", [now, now])
        return rows[0] if rows else None

    def lease_delivery(self, notice_id: int, endpoint_id: int, until: str, token: str) -> None:
        self.backend.execute("UPDATE notice_deliveries SET lease_until = ?, lease_token = ? "
                             "WHERE notice_id = ? AND endpoint_id = ?", [until, token, notice_id, endpoint_id])

    def finish_delivery(self, notice_id: int, endpoint_id: int, token: str, changes: dict[str, Any]) -> bool:
        """Record an attempt's outcome, if this worker still holds the lease
        (``token``); False when it does not (the row changed hands or went)."""
        assignments = ", ".join(f"{column} = ?" for column in changes)
        cursor = self.backend.execute(
            f"UPDATE notice_deliveries SET {assignments}, lease_until = NULL, lease_token = NULL "
            "WHERE notice_id = ? AND endpoint_id = ? AND lease_token = ?",
            [*changes.values(), notice_id, endpoint_id, token])
        return cursor.rowcount == 1

    def deliveries(self, *, status: str | None = None, limit: int = 0) -> list[dict[str, Any]]:
        """Delivery rows, newest notice first."""
        sql, params = _DELIVERY_SQL, []
        if status is not None:
            sql += " WHERE d.status = ?"
            params.append(status)
        sql += " ORDER BY d.notice_id DESC, d.endpoint_id"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return self.query(sql, params)

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries by status: pending, delivered, failed (each present, 0 when none)."""
        counts = {"pending": 0, "delivered": 0, "failed": 0}
        for row in self.query("SELECT status, count(*) AS n FROM notice_deliveries GROUP BY status"):
            counts[row["status"]] = int(row["n"])
        return counts
