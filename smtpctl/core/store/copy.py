"""Copy a whole store into an empty one, on either engine: every object,
event, rollup row, audit entry and setting, with their ids, in one
transaction on the destination, then verified (counts and totals equal)
before it commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Iterator

from smtpctl.core.model.errors import StoreError

if TYPE_CHECKING:
    from smtpctl.core.store import Store

# In the order foreign keys need; the audit trail in id order (append-only).
COPIED_TABLES = ("settings", "agencies", "accounts", "domains", "credentials", "usage_events", "usage_daily",
                 "usage_hourly", "audit", "prices", "agency_billing", "credits", "statements", "billed",
                 "months_closed", "usage_pruned", "notices", "notify_endpoints", "notice_deliveries")
_ORDER = {"settings": "key", "usage_daily": "day, agency_id, account_id, domain, login, direction",
          "usage_hourly": "account_id, hour, login",
          "agency_billing": "agency_id", "billed": "statement_id, agency_id, account_id, day, direction",
          "months_closed": "month", "notice_deliveries": "notice_id, endpoint_id"}
BATCH = 5000


def _rows(store: "Store", table: str, columns: list[str]) -> Iterator[list[tuple]]:
    cols = ", ".join(columns)
    if "id" in columns:  # keyset pages: memory stays flat on a large store
        last = None
        while True:
            where, params = ("WHERE id > ?", [last]) if last is not None else ("", [])
            page = store._rows(f"SELECT {cols} FROM {table} {where} ORDER BY id LIMIT {BATCH}", params)
            if not page:
                return
            yield page
            last = page[-1][columns.index("id")]
    else:
        rows = store._rows(f"SELECT {cols} FROM {table} ORDER BY {_ORDER[table]}")
        for start in range(0, len(rows), BATCH):
            yield rows[start:start + BATCH]


def fingerprint(store: "Store") -> dict[str, Any]:
    """What must be equal after a copy: row counts of every table, usage totals,
    the last audit id and the settings."""
    counts = {table: int(store.scalar(f"SELECT count(*) FROM {table}")) for table in COPIED_TABLES}
    return {"counts": counts, "usage": store.usage_totals(),
            "last_audit_id": store.scalar("SELECT max(id) FROM audit"), "settings": store.settings()}


def is_empty(store: "Store") -> bool:
    return all(int(store.scalar(f"SELECT count(*) FROM {table}")) == 0 for table in COPIED_TABLES)


def copy_into(source: "Store", dest: "Store",
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Copy ``source`` into the empty ``dest``; returns the verified fingerprint.

    Holds the source's write lock for the copy, so the copy is one consistent
    moment of a store other processes keep writing to. ``progress``, when
    given, is called with the rows copied so far and the rows in all after
    each page. Raises ``StoreError`` when the copy does not verify (nothing
    is kept in ``dest``)."""
    with source.write(), dest.write():
        total = sum(int(source.scalar(f"SELECT count(*) FROM {t}")) for t in COPIED_TABLES) if progress else 0
        done = 0
        for table in COPIED_TABLES:
            columns = source.columns(table)
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            for page in _rows(source, table, columns):
                dest.backend.executemany(sql, page)
                if progress:
                    done += len(page)
                    progress(done, total)
        dest.backend.reset_identities()
        expected, got = fingerprint(source), fingerprint(dest)
        if expected != got:
            raise StoreError(f"the copy does not match its source ({expected} != {got}); nothing was kept")
    return got
