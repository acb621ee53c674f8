"""Queries on usage: the events, the per-day rollup kept in the same
transaction, and the totals the daily limit and the reports read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple


class EventRow(NamedTuple):
    """One usage_events row, its fields in column order (a named row that the
    driver takes as the statement's parameters as it is)."""

    source_id: str | None
    at: str
    day: str
    direction: str
    agency_id: int
    account_id: int  # 0: no account (inbound to an agency-assigned domain)
    domain: str
    login: str
    to_count: int
    cc_count: int
    bcc_count: int
    emails: int
    recorded_at: str


class SenderRow(NamedTuple):
    """What an admission needs about a sender's domain and login."""

    account_id: int | None  # None: the domain is agency-assigned
    agency_id: int | None
    account: str | None
    daily_limit: int | None
    blocked: bool
    live: bool  # the credential exists
    agency: str | None = None
    account_hour: int | None = None  # the limits in more windows (None: not set)
    account_month: int | None = None
    credential_hour: int | None = None
    credential_day: int | None = None
    agency_month: int | None = None


class WindowLimits(NamedTuple):
    """The limits set in more windows, by the ids of what they cap (an import
    reads them once per batch for the senders it meets)."""

    accounts: dict[int, tuple[int | None, int | None]]  # account id -> (hourly, monthly)
    credentials: dict[str, tuple[int | None, int | None]]  # login -> (hourly, daily)
    agencies: dict[int, tuple[str, int | None]]  # agency id -> (name, monthly)


USAGE_COLUMNS = EventRow._fields


class UsageQueries:
    # The hot path of imports: plain executemany on the backend's connection.
    def existing_source_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.backend.execute(
                f"SELECT source_id FROM usage_events WHERE source_id IN ({marks})", chunk))
        return found

    def insert_usage(self, rows: list[tuple], daily: dict[tuple, list[int]], hourly: dict[tuple, int] | None = None,
                     *, only_new: bool = False) -> bool:
        """Insert events and add them to the per-day rollup, in the caller's
        transaction. ``rows`` are each event's values in ``EventRow``'s field
        order (the statement's parameters); ``daily`` is what they add to the
        rollup: (day, agency id, account id, domain, login, direction) ->
        [messages, emails], summed by the caller as it made the rows (an import
        makes a million: reading them back by name cost a tenth of it);
        ``hourly`` what the outbound ones add to the hourly rollup: (account
        id, hour, login) -> emails.

        With ``only_new`` the caller has not checked the source ids against
        the store (an import of new messages need not look each one up: the
        insert checks them anyway): if any is already there, nothing is
        inserted and the answer is False, for the caller to check and retry.
        """
        backend = self.backend
        if only_new:
            try:
                with self.savepoint():
                    inserted = backend.executemany(_INSERT_EVENT + " ON CONFLICT (source_id) DO NOTHING", rows)
                    if inserted != len(rows):
                        raise _SomeIdStored  # the savepoint undoes what was inserted
            except _SomeIdStored:
                return False
        else:
            backend.executemany(_INSERT_EVENT, rows)
        backend.executemany(
            "INSERT INTO usage_daily (day, agency_id, account_id, domain, login, direction, messages, emails) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (day, agency_id, account_id, domain, login, direction) "
            "DO UPDATE SET messages = usage_daily.messages + excluded.messages, "
            "emails = usage_daily.emails + excluded.emails",
            [(*key, m, e) for key, (m, e) in sorted(daily.items())])
        if hourly:
            backend.executemany(_UPSERT_HOURLY, [(*key, e) for key, e in sorted(hourly.items())])
        return True

    # -- the live paths' admission (usage.admit_message) -------------------------
    def meter_sender(self, login: str, domain: str) -> SenderRow | None:
        """What an admission needs about a sender, in one query: None when the
        domain is not in the store."""
        rows = self._rows(  # outside a transaction (MAIL's check on a reader) an error is a StoreError
            "SELECT d.account_id, a.agency_id, a.name, a.daily_limit, "
            "CASE WHEN a.blocked_at IS NULL THEN 0 ELSE 1 END, CASE WHEN c.id IS NULL THEN 0 ELSE 1 END, "
            "g.name, a.hourly_limit, a.monthly_limit, c.hourly_limit, c.daily_limit, g.monthly_limit "
            "FROM domains d LEFT JOIN accounts a ON a.id = d.account_id "
            "LEFT JOIN agencies g ON g.id = a.agency_id "
            "LEFT JOIN credentials c ON c.login = ? AND c.domain_id = d.id WHERE d.name = ?",
            (login, domain))
        if not rows:
            return None
        account_id, agency_id, account, daily_limit, blocked, live, *windows = rows[0]
        return SenderRow(account_id, agency_id, account, daily_limit, bool(blocked), bool(live), *windows)

    def window_limits(self, account_ids: list[int], logins: list[str], agency_ids: list[int]) -> WindowLimits:
        """The limits set in more windows on these accounts, credentials and
        agencies (only those that have one)."""
        return WindowLimits(
            self._set_limits("accounts", "id", ("hourly_limit", "monthly_limit"), account_ids),
            self._set_limits("credentials", "login", ("hourly_limit", "daily_limit"), logins),
            self._set_limits("agencies", "id", ("name", "monthly_limit"), agency_ids, only=("monthly_limit",)))

    def _set_limits(self, table: str, key: str, columns: tuple[str, str], wanted: list, *,
                    only: tuple[str, ...] | None = None) -> dict:
        """``key`` -> ``columns`` of the rows of ``table`` among ``wanted`` with a limit set (any of ``only``)."""
        found = {}
        limited = " OR ".join(f"{column} IS NOT NULL" for column in only or columns)
        for chunk in _chunks(sorted(set(wanted))):
            marks = ",".join("?" * len(chunk))
            for row_key, first, second in self.backend.execute(
                    f"SELECT {key}, {', '.join(columns)} FROM {table} WHERE {key} IN ({marks}) AND ({limited})", chunk):
                found[row_key] = (first, second)
        return found

    def outbound_event_times(self, account_id: int, login: str | None = None) -> Iterator[tuple[str, str, int]]:
        """(time as stored, login, emails) of every outbound event of an account (or one login of it):
        what the hourly rollup is made from when an hourly limit is set (a scan of the events)."""
        sql = "SELECT at, login, emails FROM usage_events WHERE account_id = ? AND direction = 'outbound'"
        params: list[Any] = [account_id]
        if login is not None:
            sql += " AND login = ?"
            params.append(login)
        yield from self.backend.execute(sql, params)

    def replace_hourly(self, account_id: int, login: str | None, sums: dict[tuple[str, str], int]) -> None:
        """The hourly rollup of an account (or of one login of it) made anew: ``sums`` is (hour, login) -> emails."""
        if login is None:
            self.backend.execute("DELETE FROM usage_hourly WHERE account_id = ?", [account_id])
        else:
            self.backend.execute("DELETE FROM usage_hourly WHERE account_id = ? AND login = ?", [account_id, login])
        self.backend.executemany(_UPSERT_HOURLY, [(account_id, hour, row_login, emails)
                                                  for (hour, row_login), emails in sorted(sums.items())])

    def window_total(self, scope: str, subject: int | str, window: str, period: str, account_id: int) -> int:
        """Outbound emails counted against one limit (``windows.Counter``'s
        fields): an account's or a credential's hour (the hourly rollup), a
        credential's day, an account's or an agency's month (the daily rollup).
        An account's day is ``outbound_totals``."""
        if window == "hour":
            if scope == "account":
                sql, params = ("SELECT SUM(emails) FROM usage_hourly WHERE account_id = ? AND hour = ?",
                               (subject, period))
            else:
                sql, params = ("SELECT SUM(emails) FROM usage_hourly WHERE account_id = ? AND hour = ? AND login = ?",
                               (account_id, period, subject))
        elif window == "day" and scope == "credential":
            hint = " INDEXED BY usage_daily_account_day" if self.backend.engine == "sqlite" else ""
            sql, params = (f"SELECT SUM(emails) FROM usage_daily{hint} WHERE account_id = ? AND day = ? "
                           "AND direction = 'outbound' AND login = ?", (account_id, period, subject))
        elif window == "day":
            return self.outbound_totals([(int(subject), period)])[(int(subject), period)]
        else:
            column = "account_id" if scope == "account" else "agency_id"
            sql, params = (f"SELECT SUM(emails) FROM usage_daily WHERE {column} = ? AND day >= ? AND day <= ? "
                           "AND direction = 'outbound'", (subject, period + "-01", period + "-31"))
        (emails,) = self.backend.execute(sql, params).fetchone()
        return int(emails or 0)

    def accounts_of_domains(self, domains: list[str]) -> list[int]:
        """The accounts the dedicated domains among ``domains`` belong to."""
        found: set[int] = set()
        for chunk in _chunks(sorted(set(domains))):
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.backend.execute(
                f"SELECT account_id FROM domains WHERE name IN ({marks}) AND account_id IS NOT NULL", chunk))
        return sorted(found)

    def record_admission(self, row: EventRow, hour: str | None = None) -> bool:
        """Insert one event (a tuple in ``USAGE_COLUMNS`` order) and add it to
        the rollup, in the caller's transaction; False (nothing written) when
        its source id is already stored; with an ``hour`` (a sender with an
        hourly limit: windows.SenderWindows.hourly) it is added to the hourly
        rollup too. Two or three statements: the insert checks the id itself
        (a node racing the same id waits for the other's commit)."""
        execute = self.backend.execute
        if self.backend.engine == "postgresql":  # one statement, so one round trip to the server
            if hour is None:
                return execute(_RECORD_ONE_PG, row).rowcount == 1
            return execute(_RECORD_ONE_PG_HOURLY, (*row, hour)).rowcount == 1
        if execute(_INSERT_EVENT + " ON CONFLICT (source_id) DO NOTHING", row).rowcount != 1:
            return False
        execute(_UPSERT_DAILY, (row.day, row.agency_id, row.account_id, row.domain, row.login, row.direction, 1,
                                row.emails))
        if hour is not None:
            execute(_UPSERT_HOURLY, (row.account_id, hour, row.login, row.emails))
        return True

    def source_id_stored(self, source_id: str) -> bool:
        return self.backend.execute("SELECT 1 FROM usage_events WHERE source_id = ?", (source_id,)).fetchone() \
            is not None

    def delete_usage_event(self, source_id: str) -> bool:
        """Remove one event and take it out of the rollup, in the caller's transaction."""
        rows = self.query("SELECT at, day, agency_id, account_id, domain, login, direction, emails FROM usage_events "
                          "WHERE source_id = ?", [source_id])
        if not rows:
            return False
        event = rows[0]
        key_values = [event[k] for k in ("day", "agency_id", "account_id", "domain", "login", "direction")]
        emails = event["emails"]
        self.backend.execute("DELETE FROM usage_events WHERE source_id = ?", [source_id])
        key = "day = ? AND agency_id = ? AND account_id = ? AND domain = ? AND login = ? AND direction = ?"
        self.backend.execute(f"UPDATE usage_daily SET messages = messages - 1, emails = emails - ? WHERE {key}",
                             [emails, *key_values])
        self.backend.execute(f"DELETE FROM usage_daily WHERE {key} AND messages <= 0", key_values)
        if event["direction"] == "outbound":  # admitted in its hour: the hour its time falls in (windows.hour_start)
            self.backend.execute("UPDATE usage_hourly SET emails = emails - ? WHERE account_id = ? AND login = ? "
                                 "AND hour = (SELECT MAX(hour) FROM usage_hourly WHERE account_id = ? AND login = ? "
                                 "AND hour <= ?)", [emails, event["account_id"], event["login"], event["account_id"],
                                                    event["login"], event["at"]])
        return True

    def outbound_totals(self, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """Outbound emails per (account id, day), for the keys asked.

        A day asked for a few accounts (the live paths ask for one) is read
        through the ``(account_id, day, direction)`` index, one account at a
        time (~20 us each); a day asked for many (an import batch) in one pass
        over that day's rollup, which costs ~1 us a row whatever the number of
        accounts. On SQLite the index is named (``INDEXED BY``): without it
        SQLite picks the primary key's ``day`` prefix and reads the whole day
        even for one account; PostgreSQL's planner finds it by itself.
        """
        wanted = set(keys)
        totals = dict.fromkeys(wanted, 0)
        by_day: dict[str, list[int]] = {}
        for account_id, day in wanted:
            by_day.setdefault(day, []).append(account_id)
        execute = self.backend.execute
        hint = " INDEXED BY usage_daily_account_day" if self.backend.engine == "sqlite" else ""
        for day, accounts in sorted(by_day.items()):
            if len(accounts) <= _FEW_ACCOUNTS:
                for account_id in accounts:
                    (emails,) = execute(
                        f"SELECT SUM(emails) FROM usage_daily{hint} "
                        "WHERE account_id = ? AND day = ? AND direction = 'outbound'", (account_id, day)).fetchone()
                    totals[(account_id, day)] = int(emails or 0)
                continue
            for account_id, emails in execute(
                    "SELECT account_id, SUM(emails) FROM usage_daily WHERE day = ? AND direction = 'outbound' "
                    "GROUP BY account_id", (day,)):
                if (account_id, day) in totals:
                    totals[(account_id, day)] = int(emails)
        return totals

    # Each group: (the column aggregated on, the name shown for it).
    _GROUP_SQL = {
        "day": ("u.day", "r.day"), "agency": ("u.agency_id", "g.name"),
        "account": ("u.account_id", "COALESCE(a.name, '')"), "domain": ("u.domain", "r.domain"),
        "user": ("u.login", 'r."user"'), "direction": ("u.direction", "r.direction"),
    }

    def usage_rollup(self, since: str, until: str, groups: list[str], filters: dict[str, Any], *,
                     cuts: list[str] = ()) -> list[dict[str, Any]]:
        """Sum the per-day rollup over a range, grouped, and by ``period``: 0
        before the first day of ``cuts``, 1 from it to the next, and so on (the
        periods of one group come together, in order). Aggregates on ids first,
        then joins names, so the join touches result rows, not rollup rows."""
        period = ("CASE " + "".join(f"WHEN u.day < ? THEN {i} " for i in range(len(cuts))) + f"ELSE {len(cuts)} END"
                  if cuts else "0")
        inner = [f"{self._GROUP_SQL[g][0]} AS {_quoted(g)}" for g in groups] + [f"{period} AS period"]
        outer = [f"{self._GROUP_SQL[g][1]} AS {_quoted(g)}" for g in groups] + ["r.period"]
        where, params = ["u.day BETWEEN ? AND ?"], [*cuts, since, until]
        for column, value in filters.items():
            where.append(f"u.{column} = ?")
            params.append(value)
        positions = ", ".join(str(i + 1) for i in range(len(groups) + 1))
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
        return [_ints(row, ("messages", "emails", "outbound", "inbound", "period")) for row in self.query(sql, params)]

    def usage_summary(self, *, account_id: int | None = None, agency_id: int | None = None) -> dict[str, Any]:
        """Billed emails of one account or agency: ``{"emails", "first_day", "last_day"}`` (0/None if none)."""
        column, value = ("account_id", account_id) if account_id is not None else ("agency_id", agency_id)
        rows = self.query(f"SELECT COALESCE(SUM(emails), 0) AS emails, MIN(day) AS first_day, MAX(day) AS last_day "
                          f"FROM usage_daily WHERE {column} = ?", [value])
        return _ints(rows[0], ("emails",))

    def emails_before(self, day: str) -> dict[str, Any]:
        """Billed emails on days before ``day``: ``{"emails", "first_day"}``."""
        return _ints(self.query("SELECT COALESCE(SUM(emails), 0) AS emails, MIN(day) AS first_day FROM usage_daily "
                                "WHERE day < ?", [day])[0], ("emails",))

    def usage_totals(self) -> dict[str, int]:
        """Counts and sums over all usage, to compare two stores: events, their
        emails, rollup rows, and the rollup's messages and emails."""
        events = self.query("SELECT count(*) AS n, COALESCE(SUM(emails), 0) AS emails FROM usage_events")[0]
        daily = self.query("SELECT count(*) AS n, COALESCE(SUM(messages), 0) AS messages, "
                           "COALESCE(SUM(emails), 0) AS emails FROM usage_daily")[0]
        return {"events": int(events["n"]), "event_emails": int(events["emails"]), "daily_rows": int(daily["n"]),
                "daily_messages": int(daily["messages"]), "daily_emails": int(daily["emails"])}


def _quoted(name: str) -> str:
    """A result column named like a keyword (``day``, ``user``) quoted for both engines."""
    return f'"{name}"'


def _ints(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """SUM() is an integer on SQLite and a NUMERIC on PostgreSQL: read both as int."""
    for key in keys:
        if row.get(key) is not None:
            row[key] = int(row[key])
    return row


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


_UPSERT_DAILY = ("INSERT INTO usage_daily (day, agency_id, account_id, domain, login, direction, messages, emails) "
                 "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (day, agency_id, account_id, domain, login, direction) "
                 "DO UPDATE SET messages = usage_daily.messages + excluded.messages, "
                 "emails = usage_daily.emails + excluded.emails")

_INSERT_EVENT = ("INSERT INTO usage_events (source_id, at, day, direction, agency_id, account_id, domain, login, "
                 "to_count, cc_count, bcc_count, emails, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")

_UPSERT_HOURLY = ("INSERT INTO usage_hourly (account_id, hour, login, emails) VALUES (?,?,?,?) "
                  "ON CONFLICT (account_id, hour, login) DO UPDATE SET emails = usage_hourly.emails + excluded.emails")

# PostgreSQL: the event and its rollup row(s) in one statement; a rollup row
# is written only when the event was (a stored id inserts none: 0 rows).
_RECORD_EVENT_PG = ("WITH event AS (" + _INSERT_EVENT + " ON CONFLICT (source_id) DO NOTHING "
                    "RETURNING day, agency_id, account_id, domain, login, direction, emails)")
_DAILY_FROM_EVENT_PG = (
    "INSERT INTO usage_daily (day, agency_id, account_id, domain, login, direction, messages, emails) "
    "SELECT day, agency_id, account_id, domain, login, direction, 1, emails FROM event "
    "ON CONFLICT (day, agency_id, account_id, domain, login, direction) "
    "DO UPDATE SET messages = usage_daily.messages + excluded.messages, "
    "emails = usage_daily.emails + excluded.emails")
_RECORD_ONE_PG = _RECORD_EVENT_PG + " " + _DAILY_FROM_EVENT_PG
# ... and the hourly rollup's row (the last parameter is the hour: windows.hour_start)
_RECORD_ONE_PG_HOURLY = (
    _RECORD_EVENT_PG + ", daily AS (" + _DAILY_FROM_EVENT_PG + " RETURNING 1) "
    "INSERT INTO usage_hourly (account_id, hour, login, emails) SELECT account_id, ?, login, emails FROM event "
    "ON CONFLICT (account_id, hour, login) DO UPDATE SET emails = usage_hourly.emails + excluded.emails")

# Up to this many accounts a day, outbound_totals reads each through the
# account index; past it, the whole day's rollup in one pass.
_FEW_ACCOUNTS = 16


class _SomeIdStored(Exception):
    """Raised inside insert_usage's savepoint to undo an insert that met a stored id."""
