"""Queries on billing: prices in force, each agency's mode, the credits
ledger, closed statements and what they billed, and the pruning horizon."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple

from smtpctl.core.model.clock import now_iso


class PriceRow(NamedTuple):
    from_day: str
    price_per_1000: str
    set_at: str


class AgencyBilling(NamedTuple):
    mode: str  # postpaid | prepaid
    warn_below: str | None


class DayUsage(NamedTuple):
    """One agency's usage on one day, per account and direction (the rollup summed)."""

    day: str
    account_id: int  # 0: agency-assigned (inbound, no account)
    direction: str
    messages: int
    emails: int


class BillingQueries:
    # -- prices ----------------------------------------------------------------
    def prices(self, kind: str, agency_id: int = 0) -> list[PriceRow]:
        rows = self.query("SELECT from_day, price_per_1000, set_at FROM prices WHERE kind = ? AND agency_id = ? "
                          "ORDER BY from_day", [kind, agency_id])
        return [PriceRow(**r) for r in rows]

    def put_price(self, kind: str, agency_id: int, from_day: str, price: str) -> str:
        """Set the price from ``from_day``: ``created``, ``updated`` or ``unchanged``."""
        rows = self.query("SELECT price_per_1000 FROM prices WHERE kind = ? AND agency_id = ? AND from_day = ?",
                          [kind, agency_id, from_day])
        if rows and rows[0]["price_per_1000"] == price:
            return "unchanged"
        if rows:
            self.backend.execute("UPDATE prices SET price_per_1000 = ?, set_at = ? WHERE kind = ? AND agency_id = ? "
                                 "AND from_day = ?", [price, now_iso(), kind, agency_id, from_day])
            return "updated"
        self._insert("prices", {"kind": kind, "agency_id": agency_id, "from_day": from_day, "price_per_1000": price,
                                "set_at": now_iso()})
        return "created"

    # -- an agency's mode --------------------------------------------------------
    def agency_billing(self, agency_id: int) -> AgencyBilling:
        rows = self.query("SELECT mode, warn_below FROM agency_billing WHERE agency_id = ?", [agency_id])
        return AgencyBilling(**rows[0]) if rows else AgencyBilling("postpaid", None)

    def agency_billings(self) -> dict[int, AgencyBilling]:
        return {r["agency_id"]: AgencyBilling(r["mode"], r["warn_below"])
                for r in self.query("SELECT agency_id, mode, warn_below FROM agency_billing")}

    def prepaid_agencies(self, agency_ids: Iterable[int]) -> dict[int, str]:
        """The prepaid agencies among ``agency_ids``: id -> name."""
        wanted = sorted(set(agency_ids))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self.query(f"SELECT g.id, g.name FROM agency_billing b JOIN agencies g ON g.id = b.agency_id "
                          f"WHERE b.mode = 'prepaid' AND b.agency_id IN ({marks})", wanted)
        return {r["id"]: r["name"] for r in rows}

    def credit_total(self, agency_id: int) -> Decimal:
        return sum((Decimal(r["amount"]) for r in self.query("SELECT amount FROM credits WHERE agency_id = ?",
                                                             [agency_id])), Decimal(0))

    def put_agency_billing(self, agency_id: int, billing: AgencyBilling) -> None:
        self.backend.execute(
            "INSERT INTO agency_billing (agency_id, mode, warn_below) VALUES (?, ?, ?) ON CONFLICT (agency_id) "
            "DO UPDATE SET mode = excluded.mode, warn_below = excluded.warn_below",
            [agency_id, billing.mode, billing.warn_below])

    # -- credits -----------------------------------------------------------------
    def credit_by_ref(self, agency_id: int, ref: str) -> dict[str, Any] | None:
        rows = self.query("SELECT id, amount, note, ref, at, day, actor FROM credits WHERE agency_id = ? AND ref = ?",
                          [agency_id, ref])
        return rows[0] if rows else None

    def insert_credit(self, agency_id: int, amount: str, note: str | None, ref: str | None, day: str) -> int:
        return self._insert("credits", {"agency_id": agency_id, "amount": amount, "note": note, "ref": ref,
                                        "at": now_iso(), "day": day, "actor": self.actor})

    def credits(self, agency_id: int, *, since: str | None = None, until: str | None = None) -> list[dict[str, Any]]:
        """Credit entries of an agency (``day`` between ``since`` and ``until``, inclusive), oldest first."""
        where, params = ["agency_id = ?"], [agency_id]
        if since is not None:
            where.append("day >= ?")
            params.append(since)
        if until is not None:
            where.append("day <= ?")
            params.append(until)
        return self.query(f"SELECT id, amount, note, ref, at, day, actor FROM credits WHERE {' AND '.join(where)} "
                          "ORDER BY id", params)

    # -- usage as billing reads it -------------------------------------------------
    def agency_usage(self, agency_id: int, since: str, until: str) -> list[DayUsage]:
        """The agency's usage per day, account and direction, ``since`` to ``until`` inclusive."""
        rows = self.query("SELECT day, account_id, direction, SUM(messages) AS messages, SUM(emails) AS emails "
                          "FROM usage_daily WHERE agency_id = ? AND day BETWEEN ? AND ? "
                          "GROUP BY day, account_id, direction ORDER BY day, account_id, direction",
                          [agency_id, since, until])
        return [DayUsage(r["day"], r["account_id"], r["direction"], int(r["messages"]), int(r["emails"]))
                for r in rows]

    def agency_emails(self, agency_id: int, since: str, until: str) -> int:
        row = self.query("SELECT COALESCE(SUM(emails), 0) AS emails FROM usage_daily WHERE agency_id = ? "
                         "AND day BETWEEN ? AND ?", [agency_id, since, until])[0]
        return int(row["emails"])

    def first_usage_day(self, agency_id: int | None = None) -> str | None:
        if agency_id is None:
            return self.scalar("SELECT MIN(day) FROM usage_daily")
        return self.scalar("SELECT MIN(day) FROM usage_daily WHERE agency_id = ?", [agency_id])

    # -- statements ----------------------------------------------------------------
    def statement_rows(self, agency_id: int | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE s.agency_id = ?", [agency_id]) if agency_id is not None else ("", [])
        return self.query("SELECT s.id, s.number, g.name AS agency, s.agency_id, s.month, s.closed_at, s.document "
                          f"FROM statements s JOIN agencies g ON g.id = s.agency_id {where} "
                          "ORDER BY s.month, g.name", params)

    def statement_row(self, agency_id: int, month: str) -> dict[str, Any] | None:
        rows = self.query("SELECT id, number, agency_id, month, closed_at, document FROM statements "
                          "WHERE agency_id = ? AND month = ?", [agency_id, month])
        return rows[0] if rows else None

    def statements_in_month(self, month: str) -> int:
        return int(self.scalar("SELECT count(*) FROM statements WHERE month = ?", [month]))

    def insert_statement(self, number: str, agency_id: int, month: str, document: str) -> int:
        return self._insert("statements", {"number": number, "agency_id": agency_id, "month": month,
                                           "closed_at": now_iso(), "document": document})

    def insert_billed(self, statement_id: int, agency_id: int, rows: Iterable[DayUsage]) -> None:
        self.backend.executemany(
            "INSERT INTO billed (statement_id, agency_id, account_id, day, direction, messages, emails) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(statement_id, agency_id, r.account_id, r.day, r.direction, r.messages, r.emails) for r in rows])

    def billed_usage(self, agency_id: int) -> dict[tuple[str, int, str], tuple[int, int]]:
        """What the agency's statements billed: (day, account id, direction) -> (messages, emails)."""
        rows = self.query("SELECT day, account_id, direction, SUM(messages) AS messages, SUM(emails) AS emails "
                          "FROM billed WHERE agency_id = ? GROUP BY day, account_id, direction", [agency_id])
        return {(r["day"], r["account_id"], r["direction"]): (int(r["messages"]), int(r["emails"])) for r in rows}

    def billed_rows(self, statement_id: int) -> list[DayUsage]:
        """What one statement billed, per day, account and direction (late days included)."""
        rows = self.query("SELECT day, account_id, direction, messages, emails FROM billed WHERE statement_id = ? "
                          "ORDER BY day, account_id, direction", [statement_id])
        return [DayUsage(r["day"], r["account_id"], r["direction"], int(r["messages"]), int(r["emails"]))
                for r in rows]

    def last_billed_day(self, agency_id: int | None = None) -> tuple[str, str] | None:
        """The last month on a closed statement (of one agency, or of any) and that statement's number."""
        where, params = ("WHERE agency_id = ?", [agency_id]) if agency_id is not None else ("", [])
        rows = self.query(f"SELECT month, number FROM statements {where} ORDER BY month DESC, number DESC LIMIT 1",
                          params)
        return (rows[0]["month"], rows[0]["number"]) if rows else None

    def close_month(self, month: str) -> None:
        self.backend.execute("INSERT INTO months_closed (month, closed_at) VALUES (?, ?) ON CONFLICT (month) "
                             "DO NOTHING", [month, now_iso()])

    def months_closed(self) -> set[str]:
        return {r["month"] for r in self.query("SELECT month FROM months_closed")}

    # -- retention -----------------------------------------------------------------
    def pruned_before(self) -> str | None:
        return self.scalar("SELECT before_day FROM usage_pruned WHERE id = 1")

    def events_before(self, day: str) -> int:
        return int(self.scalar("SELECT count(*) FROM usage_events WHERE day < ?", [day]))

    def prune_events_before(self, day: str) -> int:
        """Delete raw usage events before ``day`` (the rollup stays) and move the horizon there."""
        deleted = self.backend.execute("DELETE FROM usage_events WHERE day < ?", [day]).rowcount
        self.backend.execute("INSERT INTO usage_pruned (id, before_day, pruned_at) VALUES (1, ?, ?) "
                             "ON CONFLICT (id) DO UPDATE SET before_day = excluded.before_day, "
                             "pruned_at = excluded.pruned_at", [day, now_iso()])
        return int(deleted)
