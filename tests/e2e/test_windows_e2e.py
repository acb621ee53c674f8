"""Limits in more windows through the real servers and the real command,
with several processes on one store (issue 25): at most one message crosses
each window, every later one is deferred (4xx, DEFER_IF_PERMIT, exit 5), and
nothing is revoked. On SQLite and, with SMTPCTL_TEST_BACKEND=postgresql, on
one PostgreSQL database shared by every process."""

from __future__ import annotations

import json
import smtplib
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from smtpctl.core.directory.limits import set_window_limit
from smtpctl.core.store import Store
from tests.conftest import smtpctl_binary
from tests.e2e.servers import Running
from tests.e2e.test_policy_hostile import build, race

pytestmark = pytest.mark.e2e

PW = "a good long password"


def clear_of_the_hour() -> None:
    """An hour window race must not straddle two hours: wait out the last 40 seconds of one."""
    now = datetime.now(timezone.utc)
    if now.minute == 59 and now.second >= 20:
        time.sleep(61 - now.second)


def live_logins(db) -> set[str]:
    with Store.open(db) as store:
        return {c.login for c in store.credentials()}


def test_two_policy_servers_hold_an_hourly_limit_and_defer_the_rest(run, tmp_path, isolated_store):
    login = "app@race.test"
    build(isolated_store, {"race": (10**6, ["race.test"], [login])})
    with Store.open(isolated_store) as store:
        set_window_limit(store, "account", "race", "hour", 100)
    clear_of_the_hour()
    servers = [Running(["policy", "serve", "--listen", "127.0.0.1:0"], tmp_path / f"p{i}.log") for i in range(2)]
    try:
        answers = race(servers, login, "hour")
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0]
    assert answers.count("action=DUNNO") == 11, answers  # 10 under the limit + the one that crosses it
    deferred = [a for a in answers if a != "action=DUNNO"]
    assert len(deferred) == 29
    assert all(a.startswith("action=DEFER_IF_PERMIT 4.7.1 Hourly sending limit of account race reached "
                            "(100 emails); try again after ") for a in deferred), deferred
    status = json.loads(run("usage", "status", "race", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"], status["live_credentials"]) == (110, False, 1)
    for server in servers:
        assert "Traceback" not in server.text()


def test_a_credentials_hourly_cap_in_serve_is_a_451_for_it_alone(run, tmp_path, isolated_store):
    build(isolated_store, {"shop": (10**6, ["shop.test"], ["app@shop.test", "ops@shop.test"])})
    run("user", "set-limit", "app@shop.test", "2", "--window", "hour", check_rc=0)
    clear_of_the_hour()
    server = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--auth-delay", "0",
                      "--maildir", str(tmp_path / "maildir")], tmp_path / "serve.log")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE

    def send(login: str) -> tuple[int, str]:
        smtp = smtplib.SMTP(*server.addresses["submission"], timeout=60)
        try:
            smtp.starttls(context=context)
            smtp.login(login, PW)
            smtp.sendmail(login, ["x@example.org"], f"From: {login}\r\nSubject: w\r\n\r\nhi\r\n")
            return 250, ""
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode()
        finally:
            smtp.close()

    try:
        codes = [send("app@shop.test") for _ in range(4)]
        other = send("ops@shop.test")
    finally:
        assert server.stop() == 0
    assert [c for c, _ in codes] == [250, 250, 250, 451]  # 1, 2, 3 (crosses), then deferred
    assert codes[3][1].startswith("4.7.1 Hourly sending limit of credential app@shop.test reached (2 emails); "
                                  "try again after ")
    assert other == (250, "")
    assert live_logins(isolated_store) == {"app@shop.test", "ops@shop.test"}
    assert "reason=over_window_limit" in server.text() and "Traceback" not in server.text()


def test_parallel_usage_record_processes_cross_an_hour_once(tmp_path, isolated_store):
    build(isolated_store, {"shop": (10**6, ["shop.test"], ["app@shop.test"])})
    with Store.open(isolated_store) as store:
        set_window_limit(store, "account", "shop", "hour", 20)
    clear_of_the_hour()

    def record(n: int) -> tuple[int, str]:
        done = subprocess.run([smtpctl_binary(), "usage", "record", "--user", "app@shop.test", "--recipients", "3",
                               "--id", f"rec-{n}"], capture_output=True, text=True, timeout=120)
        return done.returncode, done.stderr

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(record, range(18)))
    codes = sorted(code for code, _ in results)
    assert codes == [0] * 7 + [5] * 11, results  # 0, 3, ..., 18 -> 21: seven, the 7th crossing
    assert all(err.startswith("Error: account shop has reached its hourly limit (21 of 20 emails until ")
               for code, err in results if code == 5), results
    with Store.open(isolated_store) as store:
        assert store.scalar("SELECT SUM(emails) FROM usage_hourly") == 21
        assert store.scalar("SELECT SUM(emails) FROM usage_events") == 21


def test_two_policy_servers_hold_an_agencys_month_across_its_accounts(run, tmp_path, isolated_store):
    """Two accounts of one agency, sent for at once through two servers: their
    month is one counter (on PostgreSQL, the agency's lock beside each
    account's), crossed by one message; then both are deferred."""
    logins = ["app@one.test", "app@two.test"]
    build(isolated_store, {"one": (10**6, ["one.test"], [logins[0]]), "two": (10**6, ["two.test"], [logins[1]])})
    with Store.open(isolated_store) as store:
        set_window_limit(store, "agency", "acme", "month", 150)
    servers = [Running(["policy", "serve", "--listen", "127.0.0.1:0"], tmp_path / f"p{i}.log") for i in range(2)]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = [a for batch in pool.map(lambda pair: race(servers, pair[0], pair[1], requests=20),
                                               [(logins[0], "one"), (logins[1], "two")]) for a in batch]
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0]
    assert answers.count("action=DUNNO") == 16, answers  # 15 under the limit (150) + the one that crosses it
    assert all(a.startswith("action=DEFER_IF_PERMIT 4.7.1 Monthly sending limit of agency acme reached (150 emails)")
               for a in answers if a != "action=DUNNO")
    with Store.open(isolated_store) as store:
        assert store.scalar("SELECT SUM(emails) FROM usage_events") == 160
    assert live_logins(isolated_store) == set(logins)


def test_parallel_imports_of_one_hour_refuse_past_its_limit_once(tmp_path, isolated_store):
    """Four processes import four files of one account's hour at once: the hour
    takes exactly what fits (and the one crossing message), whatever the order."""
    build(isolated_store, {"shop": (10**6, ["shop.test"], ["app@shop.test"])})
    with Store.open(isolated_store) as store:
        set_window_limit(store, "account", "shop", "hour", 500)
    files = []
    for p in range(4):
        src = tmp_path / f"log{p}.jsonl"
        src.write_text("".join(json.dumps({"user": "app@shop.test", "recipients": 5, "at": "2026-12-01T10:00:00Z",
                                           "id": f"p{p}-m{i}"}) + "\n" for i in range(100)))
        files.append(src)
    procs = [subprocess.Popen([smtpctl_binary(), "usage", "import", str(src), "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) for src in files]
    results = [(p.wait(timeout=300), json.loads(p.stdout.read() or "{}")) for p in procs]
    # exit 2 for an import with rejected lines (docs/commands.md), 0 for one that had room for all its lines
    assert all(code == (2 if r["lines_rejected"] else 0) for code, r in results), results
    # 500 emails fit in 100 messages of 5; the 101st crosses (505); the other 299 are refused
    assert sum(r["messages"] for _, r in results) == 101
    assert sum(r["lines_rejected"] for _, r in results) == 299
    with Store.open(isolated_store) as store:
        assert store.query("SELECT hour, emails FROM usage_hourly") == [{"hour": "2026-12-01T10:00:00Z",
                                                                          "emails": 505}]


def test_two_serve_processes_hold_a_credentials_hour_between_them(run, tmp_path, isolated_store):
    """Two `serve` nodes on one store, 20 sessions at once each sending one
    message of 3 recipients against a credential's hourly cap of 30: 11 are
    accepted (the 11th crosses, 33), 9 get the 451, nothing is revoked."""
    build(isolated_store, {"shop": (10**6, ["shop.test"], ["app@shop.test"])})
    with Store.open(isolated_store) as store:
        set_window_limit(store, "credential", "app@shop.test", "hour", 30)
    clear_of_the_hour()
    servers = [Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--auth-delay", "0",
                        "--maildir", str(tmp_path / f"maildir{i}")], tmp_path / f"serve{i}.log") for i in range(2)]
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    import threading

    barrier = threading.Barrier(20)

    def send(i: int) -> int:
        smtp = smtplib.SMTP(*servers[i % 2].addresses["submission"], timeout=60)
        try:
            smtp.starttls(context=context)
            smtp.login("app@shop.test", PW)
            smtp.mail("app@shop.test")
            for r in range(3):
                smtp.rcpt(f"r{r}@example.org")
            barrier.wait()
            code, _ = smtp.data(b"From: app@shop.test\r\nSubject: w\r\n\r\nhi\r\n")
            return code
        finally:
            smtp.close()

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = sorted(pool.map(send, range(20)))
    finally:
        assert [server.stop() for server in servers] == [0, 0]
    assert codes == [250] * 11 + [451] * 9, codes
    with Store.open(isolated_store) as store:
        assert store.scalar("SELECT SUM(emails) FROM usage_events") == 33
    assert live_logins(isolated_store) == {"app@shop.test"}
    delivered = sum(1 for i in range(2) for sub in ("new", "cur") for _ in (tmp_path / f"maildir{i}" / sub).glob("*"))
    assert delivered == 11  # delivered = billed
