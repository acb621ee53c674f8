"""What a fresh store per test costs on the PostgreSQL test pass
(SMTPCTL_TEST_BACKEND=postgresql), three ways, interleaved in one run:

- empty:    CREATE DATABASE, migrate on first open, DROP DATABASE (the first version)
- template: CREATE DATABASE … TEMPLATE (a migrated database), DROP DATABASE
- reset:    one copy, reset between tests (tests/conftest.py ``_PgStores``)

Each is followed by what a small test does (open, add an agency). Prints per
test the wall time and the CPU of the cluster (the postmaster, its live
processes and those it reaped) and of this process. Needs SMTPCTL_TEST_PG:

    eval "$(.ci/pg start /tmp/smtpctl-pg)"; python benchmarks/pg_test_stores.py; .ci/pg stop /tmp/smtpctl-pg
"""

from __future__ import annotations

import os
import resource
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.store import Store  # noqa: E402
from tests.conftest import _PgStores, _with_database  # noqa: E402

N = int(os.environ.get("N", "30"))
TICK = os.sysconf("SC_CLK_TCK")


def cluster_cpu(postmaster: int) -> float:
    total = 0.0
    for pid in [postmaster, *map(int, Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split())]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(x) for x in fields[11:13 if pid != postmaster else 15]) / TICK
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def use(dsn: str) -> None:
    with Store.open(dsn, actor="bench") as store:
        add_agency(store, "acme")


def main() -> None:
    base = os.environ["SMTPCTL_TEST_PG"]
    host = dict(p.split("=", 1) for p in base.split("?", 1)[1].split("&"))["host"]
    postmaster = int(Path(host, "data", "postmaster.pid").read_text().split()[0])
    stores = _PgStores(base)
    stores.start()
    admin = psycopg.connect(base, autocommit=True)

    def empty() -> None:
        name = f"b_{uuid.uuid4().hex[:12]}"
        admin.execute(f"CREATE DATABASE {name}")
        use(_with_database(base, name))
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")

    def template() -> None:
        name = f"b_{uuid.uuid4().hex[:12]}"
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {stores.template}")
        use(_with_database(base, name))
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")

    def reset() -> None:
        use(stores.take())

    ways = {"empty": empty, "template": template, "reset": reset}
    spent = {name: [0.0, 0.0, 0.0] for name in ways}
    try:
        for _ in range(N):
            for name, way in ways.items():
                wall, server, mine = time.perf_counter(), cluster_cpu(postmaster), own_cpu()
                way()
                time.sleep(0.05)  # closed backends are reaped into the postmaster's counters
                spent[name][0] += time.perf_counter() - wall - 0.05
                spent[name][1] += cluster_cpu(postmaster) - server
                spent[name][2] += own_cpu() - mine
    finally:
        admin.close()
        stores.stop()
    for name, (wall, server, mine) in spent.items():
        print(f"{name:9s} per test: wall {wall / N * 1000:6.1f} ms, cluster CPU {server / N * 1000:6.1f} ms, "
              f"client CPU {mine / N * 1000:5.1f} ms")


if __name__ == "__main__":
    main()
