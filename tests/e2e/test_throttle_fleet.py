"""Two `smtpctl serve` nodes on one store (one SQLite file shared by two
processes, or one PostgreSQL database) throttle AUTH guesses as one server
would: the budget is counted in the store. Real processes, real sockets;
client addresses are spread over 127.0.0.0/8 to play several clients."""

import collections
import re
import smtplib
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.servers import Running
from tests.e2e.test_serve_hostile import MESSAGE, PW, TLS, TOO_MANY_AUTH

pytestmark = pytest.mark.e2e


@pytest.fixture
def store(store_at, run):
    """The fleet's store, provisioned: one account, two logins with the password PW."""
    db = str(store_at)
    run("--db", db, "agency", "add", "acme", check_rc=0)
    run("--db", db, "account", "add", "shop", "--agency", "acme", "--daily-limit", "1000", check_rc=0)
    run("--db", db, "domain", "add", "d.example", "--account", "shop", check_rc=0)
    for login in ("app@d.example", "other@d.example"):
        run("--db", db, "user", "create", login, "--password-stdin", input=PW + "\n", check_rc=0)
    return db


@pytest.fixture
def fleet(store, tmp_path):
    """``fleet(*options)``: two serve nodes on the store (started one after the other), stopped at the end."""
    started = []

    def start(*options):
        for name in ("a", "b"):
            started.append(Running(["--db", store, "serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                                    "--maildir", str(tmp_path / f"maildir-{name}"), "--auth-delay", "0.1",
                                    "--metrics", "127.0.0.1:0", *options], tmp_path / f"serve-{name}.log"))
        return started

    yield start
    for node in started:
        node.stop()
        log = node.text()
        assert "Traceback" not in log and PW not in log, log


def session(node, source):
    client = smtplib.SMTP(*node.addresses["submission"], timeout=120, source_address=(source, 0))
    client.ehlo()
    client.starttls(context=TLS)
    client.ehlo()
    return client


def auth(node, source, login, password, barrier=None):
    """One AUTH PLAIN from ``source`` (after ``barrier``, when given): (code, text)."""
    client = session(node, source)
    try:
        if barrier is not None:
            barrier.wait()  # every session is past STARTTLS: the guesses arrive together
        client.user, client.password = login, password
        try:
            return client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as err:
            return err.smtp_code, err.smtp_error
    finally:
        client.close()


def send(node, source, login):
    client = session(node, source)
    client.login(login, PW)
    assert client.sendmail(login, ["a@x.test"], MESSAGE) == {}
    client.quit()


def in_parallel(jobs):
    """Run the ``(node, source, login, password)`` jobs at once, all past STARTTLS first; their codes."""
    barrier = threading.Barrier(len(jobs), timeout=180)
    with ThreadPoolExecutor(len(jobs)) as pool:
        return [code for code, _ in pool.map(lambda job: auth(*job, barrier), jobs)]


def auth_results(node):
    """``smtpctl_auth_attempts_total`` by result, scraped from the node's --metrics."""
    host, port = node.addresses["metrics"]
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {result: float(value) for result, value in
            re.findall(r'^smtpctl_auth_attempts_total\{result="(\w+)",server="serve"\} (\S+)$', text, flags=re.M)}


def test_parallel_wrong_passwords_over_two_nodes_get_five_verifies(fleet):
    a, b = fleet("--max-connections-per-client", "500", "--pre-auth-timeout", "600")
    nodes = [a, b]
    codes = in_parallel([(nodes[i % 2], "127.0.0.1", "app@d.example", f"guess-{i}") for i in range(200)])
    assert collections.Counter(codes) == {535: 5, 454: 195}
    failed = [auth_results(node)["failed"] for node in nodes]
    assert sum(failed) == 5  # verified fleet-wide: one server's 5, not 5 per node
    assert sum(node.text().count("event=auth_failed") for node in nodes) == 5
    assert sum(node.text().count("event=auth_throttled") for node in nodes) == 195
    # The right password from the guessing address is refused unverified, by either node ...
    for node in nodes:
        assert auth(node, "127.0.0.1", "app@d.example", PW) == (454, TOO_MANY_AUTH)
    # ... while another client is served as usual by both (the login was not locked: 5 failures < 10).
    for node in nodes:
        send(node, "127.0.0.2", "app@d.example")
    assert sum(auth_results(node)["ok"] for node in nodes) == 2


def test_a_login_is_capped_across_nodes_but_not_for_its_own_sender(fleet):
    a, b = fleet()
    nodes = [a, b]
    send(a, "127.0.0.2", "other@d.example")  # its own sender, known to the fleet from now on
    sources = [f"127.0.1.{i}" for i in range(1, 21)]  # 20 clients, 3 guesses each, over both nodes, all at once
    codes = in_parallel([(nodes[i % 2], sources[i % 20], "other@d.example", f"g{i}") for i in range(60)])
    assert collections.Counter(codes) == {535: 10, 454: 50}
    assert sum(node.text().count("event=auth_failed") for node in nodes) == 10
    for node in nodes:
        # A fresh client with the right password: the login is out of guesses for strangers ...
        assert auth(node, "127.0.2.1", "other@d.example", PW) == (454, TOO_MANY_AUTH)
        # ... not for the client that sends as it every day (it authenticated on node a only),
        send(node, "127.0.0.2", "other@d.example")
        # nor for the other logins.
        send(node, "127.0.2.2", "app@d.example")


def test_the_right_password_is_accepted_again_after_the_window(fleet):
    a, b = fleet("--auth-failure-window", "3")
    nodes = [a, b]
    for i in range(5):  # one after the other, over both nodes
        assert auth(nodes[i % 2], "127.0.0.3", "app@d.example", f"wrong-{i}")[0] == 535
    for node in nodes:
        assert auth(node, "127.0.0.3", "app@d.example", PW) == (454, TOO_MANY_AUTH)
    time.sleep(3.5)  # every failure is older than the window now
    for node in nodes:
        send(node, "127.0.0.3", "app@d.example")
    # The fleet counted anew: five more guesses, not ten.
    codes = [auth(nodes[i % 2], "127.0.0.3", "app@d.example", f"again-{i}")[0] for i in range(6)]
    assert codes == [535] * 5 + [454]


def test_parallel_right_passwords_over_two_nodes_are_all_served(fleet):
    """Counting guesses in the store must not refuse a sender that opens many sessions at once on every
    node: past the budget, guesses still being verified make a new one wait (or the AUTH cache proves it)."""
    a, b = fleet()
    nodes = [a, b]
    logins = ["app@d.example", "other@d.example"]
    codes = in_parallel([(nodes[i % 2], "127.0.0.4", logins[i // 2 % 2], PW) for i in range(20)])
    assert codes == [235] * 20
    assert sum(auth_results(node)["ok"] for node in nodes) == 20
    assert not any("event=auth_throttled" in node.text() for node in nodes)
