"""The metering write path alone: what one policy END-OF-MESSAGE admission
costs the store thread, in CPU and in SQL statements (each a round trip on
PostgreSQL), with group commit's batches of 8 (8 clients, one request each).

    python benchmarks/admission.py                    # SQLite, a temporary file
    python benchmarks/admission.py postgresql://...   # a database it may fill

Runs in this process, on the smtpctl this interpreter imports (run it with
two installs to compare builds: CPU time is steady on a loaded machine where
requests/s are not). Never run as a test.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.metering.live import run_steps
from smtpctl.core.store import Store
from smtpctl.servers.policy import check_and_admit

ACCOUNTS, BATCH, BATCHES = 4, 8, 400
REQUEST = {"request": "smtpd_access_policy", "protocol_state": "END-OF-MESSAGE", "recipient_count": "3",
           "server_address": "192.0.2.1"}


class Counting:
    """The backend's connection, counting the statements sent through it."""

    def __init__(self, conn: Any):
        self.conn, self.statements = conn, 0

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1 + str(sql).count(";")
        return self.conn.execute(sql, *args, **kwargs)

    def executemany(self, sql: Any, rows: Any, *args: Any) -> Any:
        rows = list(rows)
        self.statements += len(rows)
        return self.conn.executemany(sql, rows, *args)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        outer, cursor = self, self.conn.cursor(*args, **kwargs)

        class Cursor:
            def __enter__(self) -> "Cursor":
                return self

            def __exit__(self, *exc: Any) -> None:
                cursor.close()

            def executemany(self, sql: Any, rows: Any) -> Any:
                rows = list(rows)
                outer.statements += len(rows)
                return cursor.executemany(sql, rows)

            def __getattr__(self, name: str) -> Any:
                return getattr(cursor, name)

        return Cursor()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "admission.db")
    with Store.open(target) as store:
        add_agency(store, "bench")
        logins = []
        for a in range(ACCOUNTS):
            add_account(store, f"bench{a}", "bench", daily_limit=100_000_000)
            add_domain(store, f"b{a}.example", account=f"bench{a}")
            for k in range(2):
                create_credential(store, f"u{k}@b{a}.example", "a good long password")
                logins.append(f"u{k}@b{a}.example")
        announces = "logins" in inspect.signature(run_steps).parameters
        counting = store.backend.conn = Counting(store.backend.conn)
        cpu, statements = 0.0, 0
        for b in range(BATCHES):
            batch = [logins[(b * BATCH + i) % len(logins)] for i in range(BATCH)]
            steps = [partial(check_and_admit, attrs={**REQUEST, "sasl_username": login, "sender": login,
                                                     "instance": f"i{b}.{i}", "queue_id": f"Q{b}X{i}"})
                     for i, login in enumerate(batch)]
            before, start = counting.statements, time.process_time()
            answers = run_steps(store, steps, logins=batch) if announces else run_steps(store, steps)
            cpu += time.process_time() - start
            statements += counting.statements - before
            assert all(not isinstance(a, BaseException) and a[2].status == "accepted" for a in answers), answers
        store.backend.conn = counting.conn
    admissions = BATCHES * BATCH
    print(f"{store.engine}: {admissions} admissions in batches of {BATCH}, {ACCOUNTS} accounts: "
          f"{1e6 * cpu / admissions:.0f} us CPU and {statements / admissions:.2f} statements per admission")


if __name__ == "__main__":
    main()
