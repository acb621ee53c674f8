"""The metering transaction's finer locks on PostgreSQL (docs/store.md): the
write lock shared plus one lock per account. Different accounts meter at
once; one account, and every other write, one at a time; and every cap keeps
holding with several processes racing on one database.

Real processes (fork, each its own connection, or the installed smtpctl) on
a real PostgreSQL cluster; skipped without SMTPCTL_TEST_PG.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import subprocess
import time
from functools import partial

import pytest

from smtpctl.core.directory.settings import today
from smtpctl.core.metering.live import Admission, admit_message, run_steps
from smtpctl.core.model.errors import StoreError
from smtpctl.core.store import Store
from tests.conftest import smtpctl_binary
from tests.e2e.test_policy_hostile import build

pytestmark = pytest.mark.e2e

FORK = multiprocessing.get_context("fork")


def _admit_batch(store: Store, logins: list[str], tag: str) -> list[Admission]:
    steps = [partial(admit_message, login=login, recipients=3, source_id=f"{tag}-{k}")
             for k, login in enumerate(logins)]
    answers = run_steps(store, steps, logins=logins)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


def _racer(dsn: str, number: int, logins: list[str], batches: int, barrier, out) -> None:
    rng = random.Random(number)
    counts: dict[str, dict[str, int]] = {login: {} for login in logins}
    with Store.open(dsn) as store:
        barrier.wait()
        for b in range(batches):
            batch = [rng.choice(logins) for _ in range(4)]
            for login, answer in zip(batch, _admit_batch(store, batch, f"p{number}-{b}")):
                counts[login][answer.status] = counts[login].get(answer.status, 0) + 1
    out.put(counts)


def _totals(dsn: str) -> dict[str, tuple[int, int, int]]:
    """Per account: (emails in events, emails in the rollup, limit_exceeded audit rows)."""
    with Store.open(dsn) as store:
        rows = store.query("SELECT a.name AS name, "
                           "(SELECT COALESCE(SUM(emails), 0) FROM usage_events e WHERE e.account_id = a.id) AS ev, "
                           "(SELECT COALESCE(SUM(emails), 0) FROM usage_daily d WHERE d.account_id = a.id) AS da, "
                           "(SELECT count(*) FROM audit t WHERE t.action = 'account.limit_exceeded' "
                           " AND t.account = a.name) AS au FROM accounts a")
    return {r["name"]: (int(r["ev"]), int(r["da"]), int(r["au"])) for r in rows}


def test_processes_racing_two_accounts_stop_each_exactly_at_its_bound(pg_dsn):
    logins = ["x@a.test", "y@b.test"]
    build(pg_dsn, {"a": (30, ["a.test"], [logins[0]]), "b": (45, ["b.test"], [logins[1]])})
    barrier, out = FORK.Barrier(4), FORK.Queue()
    procs = [FORK.Process(target=_racer, args=(pg_dsn, n, logins, 25, barrier, out)) for n in range(4)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    accepted = {login: sum(r[login].get("accepted", 0) for r in results) for login in logins}
    # 3 emails a message: a (limit 30) takes 10 under it and the 11th crosses it;
    # b (limit 45) 15 and the 16th. Every later one is refused, not recorded.
    assert accepted == {"x@a.test": 11, "y@b.test": 16}, results
    assert _totals(pg_dsn) == {"a": (33, 33, 1), "b": (48, 48, 1)}
    refused = {status for r in results for counts in r.values() for status in counts} - {"accepted"}
    assert refused <= {"over_limit", "revoked"}, results


def test_two_accounts_meter_at_once_and_one_account_waits(pg_dsn):
    build(pg_dsn, {"a": (None, ["a.test"], ["x@a.test"]), "b": (None, ["b.test"], ["y@b.test"])})
    with Store.open(pg_dsn) as holder, Store.open(pg_dsn, busy_timeout=0.5) as other:
        with holder.write(metering=True):
            assert _admit_batch(holder, ["x@a.test"], "held")[0].status == "accepted"  # holds a's lock
            # b's metering runs beside it and commits ...
            assert _admit_batch(other, ["y@b.test"], "beside")[0].status == "accepted"
            # ... a's waits for it (the busy timeout here), and so does every other write.
            with pytest.raises(StoreError, match="locked"):
                _admit_batch(other, ["x@a.test"], "behind")
            with pytest.raises(StoreError, match="locked"):
                with other.write():
                    other.update_account(1, daily_limit=5)
            # a login the batch did not announce takes its account's lock when it gets there
            (answer,) = run_steps(other, [partial(admit_message, login="x@a.test", recipients=1,
                                                        source_id="unannounced")], logins=["y@b.test"])
            assert isinstance(answer, Exception) and "lock timeout" in str(answer), answer
        assert _admit_batch(other, ["x@a.test"], "after")[0].status == "accepted"
        assert other.scalar("SELECT count(*) FROM usage_events") == 3


def _admitter(dsn: str, number: int, login: str, barrier, out) -> None:
    statuses: list[str] = []
    with Store.open(dsn) as store:
        barrier.wait()
        for b in range(3000):  # until the directory write has shown (bounded)
            statuses += [a.status for a in _admit_batch(store, [login] * 2, f"p{number}-{b}")]
            if statuses[-1] != "accepted":
                break
    out.put(statuses)


def _directory_writer(dsn: str, change: str, barrier, out) -> None:
    with Store.open(dsn) as store:
        barrier.wait()
        time.sleep(0.3)
        with store.write():  # the exclusive write lock, as every CLI change
            account_id = store.scalar("SELECT id FROM accounts WHERE name = 'a'")
            day = today(store)
            before = store.outbound_totals([(account_id, day)])[(account_id, day)]
            if change == "limit":
                store.update_account(account_id, daily_limit=before + 6)
            else:
                store.execute("DELETE FROM credentials WHERE login = 'x@a.test'")
    out.put(before)


@pytest.mark.parametrize("change", ["limit", "revoke"])
def test_a_directory_write_racing_admissions_takes_effect_at_once(pg_dsn, change):
    build(pg_dsn, {"a": (10**8, ["a.test"], ["x@a.test"]), "b": (None, ["b.test"], ["y@b.test"])})
    barrier, out, totals = FORK.Barrier(4), FORK.Queue(), FORK.Queue()
    procs = [FORK.Process(target=_admitter, args=(pg_dsn, n, "x@a.test", barrier, out)) for n in range(3)]
    procs.append(FORK.Process(target=_directory_writer, args=(pg_dsn, change, barrier, totals)))
    for proc in procs:
        proc.start()
    before = totals.get(timeout=120)
    results = [out.get(timeout=120) for _ in range(3)]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert before > 0, "the admissions had not started when the directory changed"
    recorded = _totals(pg_dsn)["a"]
    if change == "limit":
        # The new limit is before + 6: two more messages reach it, the third
        # crosses it (recorded), every later one is refused; none read the old limit.
        assert recorded == (before + 9, before + 9, 1), (before, results)
    else:
        # Not one message recorded after the revocation committed.
        assert recorded == (before, before, 0), (before, results)
        assert all(s in ("accepted", "revoked") for r in results for s in r)
    assert sum(r.count("accepted") for r in results) * 3 == recorded[0]


def test_one_file_imported_by_four_processes_counts_every_id_once(pg_dsn, tmp_path):
    build(pg_dsn, {"a": (10**8, ["a.test"], ["x@a.test"])})
    src = tmp_path / "log.jsonl"
    src.write_text("".join(json.dumps({"user": "x@a.test", "recipients": i % 5 + 1, "at": "2026-10-01T10:00:00Z",
                                       "id": f"m{i}"}) + "\n" for i in range(3000)))
    procs = [subprocess.Popen([smtpctl_binary(), "--db", pg_dsn, "usage", "import", str(src), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for _ in range(4)]
    results = [(p.wait(timeout=300), json.loads(p.stdout.read() or "{}"), p.stderr.read()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 4, results
    assert sum(r["messages"] for _, r, _ in results) == 3000
    assert sum(r["messages"] + r["duplicates_skipped"] for _, r, _ in results) == 4 * 3000
    emails = sum(i % 5 + 1 for i in range(3000))
    with Store.open(pg_dsn) as store:
        assert store.usage_totals() == {"events": 3000, "event_emails": emails, "daily_rows": 1,
                                        "daily_messages": 3000, "daily_emails": emails}
