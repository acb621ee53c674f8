"""The AUTH throttle's store functions (core/store/throttle.py), on both
backends: a budget counted in one write transaction holds across
connections as it does in one, ages out on the store's clock, and forgets
dead nodes' guesses."""

import threading

import pytest

from smtpctl.core.model.errors import StoreError
from smtpctl.core.store import Store, throttle
from smtpctl.core.store.throttle import Limits

LIMITS = Limits(per_client=5, per_login=10, window=300.0)
CLIENT, LOGIN = "198.51.100.7", "app@d.example"


@pytest.fixture
def store(store_at):
    with Store.open(store_at) as opened:
        yield opened


def rows(store, where="1 = 1"):
    return store.query(f"SELECT client, login, state FROM auth_attempts WHERE {where} ORDER BY id")


def age(store, seconds, where="1 = 1"):
    """Move rows back in time on the store's clock (what waiting would do)."""
    with store.write():
        store.execute(f"UPDATE auth_attempts SET at = at - ? WHERE {where}", [seconds])


def test_a_budget_fills_with_pending_guesses_then_failures_refuse(store):
    reserved = [throttle.reserve(store, CLIENT, LOGIN, LIMITS) for _ in range(5)]
    assert [v.status for v in reserved] == ["ok"] * 5 and len({v.attempt for v in reserved}) == 5
    assert [(r["client"], r["login"], r["state"]) for r in rows(store)] == [(CLIENT, LOGIN, "pending")] * 5
    full = throttle.reserve(store, CLIENT, "other@d.example", LIMITS)
    assert full.status == "full" and full.attempt is None and len(rows(store)) == 5  # nothing counted
    assert throttle.check(store, CLIENT, LOGIN, LIMITS).status == "ok"  # being verified is not out of guesses
    for verdict in reserved:
        throttle.settle(store, verdict.attempt, failed=True)
    assert {r["state"] for r in rows(store)} == {"failed"}
    refused = throttle.reserve(store, CLIENT, "other@d.example", LIMITS)
    assert (refused.status, refused.refused_by) == ("refused", "client")
    assert 299 < refused.retry_in <= 300  # until the oldest failure ages out
    assert throttle.check(store, CLIENT, LOGIN, LIMITS).status == "refused"
    assert throttle.reserve(store, "198.51.100.8", LOGIN, LIMITS).status == "ok"  # another client: its own budget


def test_a_success_gives_its_slot_back_and_trusts_the_client(store):
    attempts = [throttle.reserve(store, CLIENT, LOGIN, LIMITS).attempt for _ in range(5)]
    throttle.settle(store, attempts[0], failed=False, trust=(LOGIN, CLIENT))
    assert len(rows(store)) == 4
    assert throttle.reserve(store, CLIENT, LOGIN, LIMITS).status == "ok"  # the slot came back
    [trusted] = store.query("SELECT login, client, expires FROM auth_trusted")
    assert (trusted["login"], trusted["client"]) == (LOGIN, CLIENT)
    assert abs(trusted["expires"] - store.now().timestamp() - throttle.TRUSTED_FOR) < 60


def test_a_login_is_capped_across_clients_except_for_trusted_ones(store):
    for i in range(10):
        verdict = throttle.reserve(store, f"198.51.100.{i}", LOGIN, LIMITS)
        throttle.settle(store, verdict.attempt, failed=True)
    refused = throttle.reserve(store, "203.0.113.1", LOGIN, LIMITS)  # a fresh client, the same login
    assert (refused.status, refused.refused_by) == ("refused", "login")
    assert throttle.check(store, "203.0.113.1", LOGIN, LIMITS).status == "refused"
    assert throttle.reserve(store, "203.0.113.1", "ghost@d.example", LIMITS).status == "ok"  # another login
    assert throttle.reserve(store, "203.0.113.2", None, LIMITS).status == "ok"  # no login: no login budget
    throttle.trust(store, LOGIN, "192.0.2.10")
    mine = throttle.reserve(store, "192.0.2.10", LOGIN, LIMITS)
    assert (mine.status, mine.counted) == ("ok", None) and mine.trusted_for > throttle.TRUSTED_FOR - 60
    assert rows(store, f"id = {mine.attempt}") == [{"client": "192.0.2.10", "login": None, "state": "pending"}]
    with store.write():  # a day later
        store.execute("UPDATE auth_trusted SET expires = expires - ?", [throttle.TRUSTED_FOR + 1])
    assert throttle.reserve(store, "192.0.2.10", LOGIN, LIMITS).status == "refused"


def test_failures_age_out_of_the_window(store):
    limits = Limits(per_client=2, per_login=10, window=300.0)
    for _ in range(2):
        throttle.settle(store, throttle.reserve(store, CLIENT, None, limits).attempt, failed=True)
    assert throttle.reserve(store, CLIENT, None, limits).status == "refused"
    age(store, 299)
    assert throttle.check(store, CLIENT, None, limits).status == "refused"
    age(store, 2)
    assert throttle.check(store, CLIENT, None, limits).status == "ok"
    assert throttle.reserve(store, CLIENT, None, limits).status == "ok"


def test_a_dead_nodes_pending_guess_counts_as_failed_then_ages_out(store):
    limits = Limits(per_client=2, per_login=10, window=300.0, stale=60.0)
    for _ in range(2):
        throttle.reserve(store, CLIENT, None, limits)  # never settled: the node died
    assert throttle.reserve(store, CLIENT, None, limits).status == "full"
    age(store, 61)  # past `stale`: no longer being verified, a failure since then
    refused = throttle.reserve(store, CLIENT, None, limits)
    assert refused.status == "refused" and 298 < refused.retry_in <= 299
    age(store, 300)  # 361 s after it started: past stale + window
    assert throttle.reserve(store, CLIENT, None, limits).status == "ok"


def test_a_failure_settled_late_counts_from_its_failure(store):
    limits = Limits(per_client=1, per_login=10, window=300.0, stale=60.0)
    attempt = throttle.reserve(store, CLIENT, None, limits).attempt
    age(store, 100)  # a verify that took 100 s on a live node
    throttle.settle(store, attempt, failed=True)
    refused = throttle.reserve(store, CLIENT, None, limits)
    assert refused.status == "refused" and refused.retry_in > 299


def test_pruning_keeps_only_what_still_counts(store):
    for i in range(50):
        throttle.settle(store, throttle.reserve(store, f"198.51.100.{i}", f"u{i}@d.example", LIMITS).attempt,
                        failed=True)
        throttle.trust(store, f"u{i}@d.example", "192.0.2.1")
    age(store, LIMITS.window + LIMITS.stale + 1)
    with store.write():
        store.execute("UPDATE auth_trusted SET expires = expires - ?", [throttle.TRUSTED_FOR + 1])
    throttle.reserve(store, "192.0.2.1", None, LIMITS)  # no pruning asked: nothing goes
    assert len(rows(store)) == 51
    throttle.reserve(store, "192.0.2.1", None, LIMITS, prune=True)
    assert [r["client"] for r in rows(store)] == ["192.0.2.1", "192.0.2.1"]
    assert store.query("SELECT * FROM auth_trusted") == []


def test_refused_guesses_write_nothing(store):
    limits = Limits(per_client=1, per_login=10, window=300.0)
    throttle.settle(store, throttle.reserve(store, CLIENT, "u0@d.example", limits).attempt, failed=True)
    for i in range(1, 200):
        assert throttle.reserve(store, CLIENT, f"u{i}@d.example", limits).status == "refused"
    assert len(rows(store)) == 1


def test_parallel_connections_share_one_budget(store_at):
    """Eight connections (as eight nodes would hold) race 25 guesses each for one client: 5 are reserved."""
    Store.open(store_at).close()
    results, barrier = [], threading.Barrier(8, timeout=60)

    def node():
        with Store.open(store_at) as mine:
            barrier.wait()
            for _ in range(25):
                results.append(throttle.reserve(mine, CLIENT, LOGIN, LIMITS).status)

    threads = [threading.Thread(target=node) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 5 and results.count("full") == 195
    with Store.open(store_at) as store:
        assert len(rows(store)) == 5


def test_a_locked_store_counts_nothing(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    with Store.open(path) as holder, Store.open(path, busy_timeout=0.1) as store:
        with holder.write():
            with pytest.raises(StoreError, match="locked"):
                throttle.reserve(store, CLIENT, LOGIN, LIMITS)
        assert rows(store) == []
