"""Delivery end to end: the real ``smtpctl notify run`` against a real HTTP
receiver on 127.0.0.1 that verifies every request with the Standard
Webhooks reference library. No clock is waited on: a test that needs a
retry due moves its ``next_attempt_at`` (or an expired lease) into the past."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import urllib.request

import pytest

from smtpctl.core.notices.delivery import RETRY_DELAYS, TIMEOUT
from smtpctl.core.notices.outbox import emit
from smtpctl.core.store import Store
from tests.conftest import smtpctl_binary
from tests.webhook_receiver import Receiver

PAST = "2000-01-01T00:00:00Z"


@pytest.fixture
def seeded(run, isolated_store):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    return isolated_store


def add_endpoint(run, url: str) -> str:
    return json.loads(run("notify", "add", url, "--json", check_rc=0).stdout)["secret"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sql(where, statement: str, params=()) -> int:
    with Store.open(where) as store:
        with store.write():
            return store.execute(statement, params)


def outbox_ids(where) -> list[str]:
    with Store.open(where) as store:
        return [row["msg_id"] for row in store.notices()]


def log(run, *args) -> list[dict]:
    return json.loads(run("notify", "log", "--limit", "0", "--json", *args, check_rc=0).stdout)


def emit_many(where, count: int) -> None:
    with Store.open(where) as store, store.write():
        for n in range(count):
            emit(store, "credential.created", {"login": f"u{n}@d.example"})


def test_receiver_down_then_up_gets_every_notice_once_per_id(run, seeded):
    port = free_port()
    receiver = Receiver(secret=add_endpoint(run, f"http://127.0.0.1:{port}/hook"), port=port)
    for login in ("a", "b", "c"):
        run("user", "create", f"{login}@d.example", "--generate", check_rc=0)
    run("user", "reset", "a@d.example", "--generate", check_rc=0)
    run("user", "delete", "b@d.example", "--yes", check_rc=0)
    ids = outbox_ids(seeded)
    assert len(ids) == 5
    # down: nothing listens; every delivery is retried, the first time after RETRY_DELAYS[0] seconds
    proc = run("notify", "run", "--once", check_rc=0)
    assert proc.stderr.count("event=notice_attempt_failed") == 5 and "ConnectError" in proc.stderr
    rows = log(run)
    assert {(r["status"], r["attempts"], r["last_http_status"]) for r in rows} == {("pending", 1, None)}
    # not due yet: a second run sends nothing
    assert "event=notice_" not in run("notify", "run", "--once", check_rc=0).stderr
    sql(seeded, "UPDATE notice_deliveries SET next_attempt_at = ?", [PAST])
    run("notify", "run", "--once", check_rc=0)
    assert {(r["status"], r["attempts"]) for r in log(run)} == {("pending", 2)}
    # up again: every notice arrives, signed, under its outbox id
    receiver.start()
    try:
        sql(seeded, "UPDATE notice_deliveries SET next_attempt_at = ?", [PAST])
        proc = run("notify", "run", "--once", check_rc=0)
        assert proc.stderr.count("event=notice_delivered") == 5
        assert sorted(receiver.ids()) == sorted(ids) and receiver.unverified == 0
        assert [r.type for r in sorted(receiver.received, key=lambda r: ids.index(r.id))] == [
            "credential.created"] * 3 + ["credential.reset", "credential.deleted"]
        assert {(r["status"], r["attempts"], r["last_http_status"]) for r in log(run)} == {("delivered", 3, 204)}
        # and never again
        sql(seeded, "UPDATE notice_deliveries SET next_attempt_at = ?", [PAST])
        run("notify", "run", "--once", check_rc=0)
        assert len(receiver.ids()) == 5
    finally:
        receiver.stop()


@pytest.fixture
def receiver_on(monkeypatch):
    started = []

    def start(**kwargs) -> Receiver:
        receiver = Receiver(**kwargs).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        if receiver.hold is not None:
            receiver.hold.set()
        receiver.stop()


def test_a_refusing_endpoint_backs_off_and_then_fails(run, seeded, receiver_on):
    receiver = receiver_on(status=503)
    receiver.secret = add_endpoint(run, receiver.url)
    run("user", "create", "a@d.example", "--generate", check_rc=0)
    run("notify", "run", "--once", check_rc=0)
    [row] = log(run)
    assert (row["status"], row["attempts"], row["last_http_status"], row["last_error"]) == (
        "pending", 1, 503, "HTTP 503")
    # the retries spent but one: the next failure is the last
    sql(seeded, "UPDATE notice_deliveries SET attempts = ?, next_attempt_at = ?", [len(RETRY_DELAYS), PAST])
    run("notify", "run", "--once", check_rc=0)
    [row] = log(run, "--failed")
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("failed", len(RETRY_DELAYS) + 1, None)
    sql(seeded, "UPDATE notice_deliveries SET next_attempt_at = ?", [PAST])
    assert "event=notice_" not in run("notify", "run", "--once", check_rc=0).stderr  # failed stays failed
    # every attempt carried the same id
    assert receiver.unverified == 0 and len(receiver.overlaps) == 0


def test_notify_test_reports_the_answer(run, seeded, receiver_on):
    receiver = receiver_on()
    receiver.secret = add_endpoint(run, receiver.url)
    result = json.loads(run("notify", "test", "1", "--json", check_rc=0).stdout)
    assert (result["ok"], result["http_status"], result["type"], result["status"]) == (True, 204, "notify.test",
                                                                                        "delivered")
    assert [(r.id, r.type, r.data) for r in receiver.received] == [
        (result["id"], "notify.test", {"endpoint": 1, "url": receiver.url})]
    receiver.status = 500
    proc = run("notify", "test", "1")
    assert (proc.returncode, proc.stderr) == (10, "Error: endpoint 1 did not take the test notice: HTTP 500\n")
    assert log(run) == []  # a test is not in the outbox


def test_a_receiver_that_never_answers_is_cut_off_and_retried(run, seeded, receiver_on):
    # httpx's timeouts are per read: the request as a whole is bounded, so no lease runs out under it
    receiver = receiver_on(hold=threading.Event())
    receiver.secret = add_endpoint(run, receiver.url)
    emit_many(seeded, 1)
    run("notify", "run", "--once", check_rc=0)
    [row] = log(run)
    assert (row["status"], row["attempts"], row["last_http_status"], row["last_error"]) == (
        "pending", 1, None, f"no answer within {TIMEOUT:g} seconds")
    assert receiver.arrived.is_set()


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([smtpctl_binary(), "notify", "run", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_delivery_loses_nothing(run, seeded, receiver_on):
    hold = threading.Event()
    receiver = receiver_on(hold=hold)
    receiver.secret = add_endpoint(run, receiver.url)
    emit_many(seeded, 3)
    ids = outbox_ids(seeded)
    worker = start_worker()
    try:
        assert receiver.arrived.wait(60)  # the worker is inside a request: the receiver holds it
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=60)
    hold.set()
    rows = log(run)
    assert {r["status"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}
    # the dead worker's lease still holds its delivery: another worker leaves it alone...
    run("notify", "run", "--once", check_rc=0)
    leased = [r["id"] for r in log(run) if r["status"] == "pending"]
    assert len(leased) == 1
    # ...until the lease runs out; then it is delivered again, under the same id
    sql(seeded, "UPDATE notice_deliveries SET lease_until = ? WHERE lease_until IS NOT NULL", [PAST])
    run("notify", "run", "--once", check_rc=0)
    assert {r["status"] for r in log(run)} == {"delivered"}
    got = receiver.ids()
    assert set(got) == set(ids) and receiver.unverified == 0
    assert sorted(got) == sorted([*ids, leased[0]])  # the interrupted one twice (at least once), same id


def test_two_workers_never_send_one_delivery_at_once(run, seeded, receiver_on):
    receiver = receiver_on(delay=0.02)
    receiver.secret = add_endpoint(run, receiver.url)
    emit_many(seeded, 40)
    workers = [start_worker("--once") for _ in range(2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert receiver.overlaps == [] and receiver.unverified == 0
    got = receiver.ids()
    assert sorted(got) == sorted(outbox_ids(seeded)) and len(got) == len(set(got)) == 40
    assert {r["status"] for r in log(run)} == {"delivered"}
    delivered = [out[1].count("event=notice_delivered") for out in outputs]
    assert sum(delivered) == 40


def test_sigterm_stops_the_worker_cleanly_and_metrics_count_the_deliveries(run, seeded, receiver_on):
    receiver = receiver_on()
    receiver.secret = add_endpoint(run, receiver.url)
    emit_many(seeded, 3)
    worker = start_worker("--metrics", "127.0.0.1:0")
    try:
        address = None
        for line in worker.stderr:
            found = re.search(r"listener=metrics address=(\S+)", line)
            if found:
                address = found[1]
                break
        assert address
        body = ""
        for _ in range(600):  # until the worker has counted the three deliveries (at most once a second)
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
                body = response.read().decode()
            if 'smtpctl_notice_deliveries{server="notify",state="delivered"} 3.0' in body:
                break
            threading.Event().wait(0.1)
        assert 'smtpctl_notice_deliveries{server="notify",state="delivered"} 3.0' in body
        assert 'smtpctl_notice_deliveries{server="notify",state="pending"} 0.0' in body
        assert 'smtpctl_notice_deliveries{server="notify",state="failed"} 0.0' in body
        assert 'smtpctl_notice_attempts_total{result="ok",server="notify"} 3.0' in body
    finally:
        worker.send_signal(signal.SIGTERM)
        rest = worker.communicate(timeout=60)[1]
    assert worker.returncode == 0
    assert "event=stopped server=notify" in rest
    assert len(receiver.ids()) == 3


def test_the_worker_on_a_port_in_use_is_exit_9(run, seeded):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        proc = run("notify", "run", "--metrics", f"127.0.0.1:{sock.getsockname()[1]}")
    assert proc.returncode == 9 and proc.stderr.startswith("Error: ")

