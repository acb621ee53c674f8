"""smtpctl serve against hostile clients: parallel password guessing,
connection floods, idle sessions, and addresses it cannot take. Real
processes, real sockets; client addresses are spread over 127.0.0.0/8 (all
of it is loopback) to play several clients."""

import collections
import json
import os
import resource
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ON_POSTGRESQL, smtpctl_binary
from tests.e2e.servers import Running

pytestmark = pytest.mark.e2e

PW = "Correct-Horse-Battery-Staple-42"
MESSAGE = "From: app@d.example\r\nTo: a@x.test\r\nSubject: hello\r\n\r\nHello.\r\n"
TOO_MANY_AUTH = b"4.7.0 Too many failed authentications; try again later"
FROM_YOUR_ADDRESS = b"421 4.7.0 Too many connections from your address; try again later\r\n"
IN_ALL = b"421 4.7.0 Too many connections; try again later\r\n"
TLS = ssl.create_default_context()
TLS.check_hostname, TLS.verify_mode = False, ssl.CERT_NONE  # the server's self-signed certificate


@pytest.fixture
def world(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "1000", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    for login in ("app@d.example", "other@d.example"):
        run("user", "create", login, "--password-stdin", input=PW + "\n", check_rc=0)


def start(tmp_path, *options, preexec_fn=None):
    return Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--maildir",
                    str(tmp_path / "maildir"), "--auth-delay", "0.1", *options], tmp_path / "serve.log",
                   preexec_fn=preexec_fn)


def stopped(server) -> str:
    assert server.stop() == 0, server.text()
    log = server.text()
    assert "Traceback" not in log and PW not in log
    return log


def submission_from(server, source: str) -> smtplib.SMTP:
    client = smtplib.SMTP(*server.addresses["submission"], timeout=60, source_address=(source, 0))
    client.ehlo()
    client.starttls(context=TLS)
    client.ehlo()
    return client


def send_from(server, source: str, login: str = "app@d.example") -> None:
    client = submission_from(server, source)
    client.login(login, PW)
    assert client.sendmail(login, ["a@x.test"], MESSAGE) == {}
    client.quit()


def greeting(server, source: str, listener: str = "submission") -> tuple[socket.socket, bytes]:
    """A raw connection from ``source``, and the first line the server says (b"" if it closed)."""
    sock = socket.create_connection(server.addresses[listener], timeout=30, source_address=(source, 0))
    return sock, first_line(sock)


def first_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def burst(server, sources: list[str]) -> list[tuple[socket.socket, bytes]]:
    """Connect from every source first (the server finds them all waiting at once), then read each greeting."""
    socks = [socket.create_connection(server.addresses["submission"], timeout=30, source_address=(source, 0))
             for source in sources]
    return [(sock, first_line(sock)) for sock in socks]


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def try_auth(server, source: str, login: str, password: str, barrier: threading.Barrier):
    client = submission_from(server, source)
    try:
        barrier.wait()  # every session is past STARTTLS: the guesses arrive together
        client.user, client.password = login, password
        try:
            code, text = client.auth("PLAIN", client.auth_plain)  # one attempt (login() tries each mechanism)
        except smtplib.SMTPAuthenticationError as err:
            code, text = err.smtp_code, err.smtp_error
        return code, text
    finally:
        client.close()


def emails(run) -> int:
    return json.loads(run("usage", "report", "--json", check_rc=0).stdout)["total"]["emails"]


def test_parallel_wrong_passwords_get_no_more_verifies_than_sequential_ones(world, tmp_path, run):
    # Let all 200 sessions reach AUTH, and wait there for each other however slow the machine.
    server = start(tmp_path, "--max-connections-per-client", "500", "--pre-auth-timeout", "600")
    try:
        barrier = threading.Barrier(200, timeout=120)
        with ThreadPoolExecutor(200) as pool:
            results = list(pool.map(lambda i: try_auth(server, "127.0.0.1", "app@d.example", f"guess-{i}", barrier),
                                    range(200)))
        assert collections.Counter(code for code, _ in results) == {535: 5, 454: 195}
        assert {text for code, text in results if code == 454} == {TOO_MANY_AUTH}
        # The right password from the guessing address is refused unverified, too ...
        client = submission_from(server, "127.0.0.1")
        client.user, client.password = "app@d.example", PW
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.auth("PLAIN", client.auth_plain)
        assert (err.value.smtp_code, err.value.smtp_error) == (454, TOO_MANY_AUTH)
        client.close()
        # ... while another client is served as usual (the login was not locked: 5 failures < 10).
        send_from(server, "127.0.0.2")
    finally:
        log = stopped(server)
    assert log.count("event=auth_failed") == 5  # verified: the sequential rule's 5, not 200
    assert log.count("event=auth_throttled") == 196
    assert log.count("event=auth_ok") == 1 and emails(run) == 1


def test_parallel_right_passwords_from_one_address_are_all_served(world, tmp_path):
    """Counting guesses when they start must not refuse a sender that opens many sessions at once:
    past the per-client budget, attempts still being verified make a new one wait, not fail."""
    server = start(tmp_path)
    try:
        barrier = threading.Barrier(20, timeout=120)
        logins = ["app@d.example", "other@d.example"]
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda i: try_auth(server, "127.0.0.1", logins[i % 2], PW, barrier), range(20)))
        assert [code for code, _ in results] == [235] * 20
    finally:
        log = stopped(server)
    assert log.count("event=auth_ok") == 20 and "event=auth_throttled" not in log


def test_a_login_is_capped_across_clients_but_not_for_its_own_sender(world, tmp_path):
    server = start(tmp_path)
    try:
        send_from(server, "127.0.0.2", "other@d.example")  # its own sender, known from now on
        sources = [f"127.0.1.{i}" for i in range(1, 21)]  # 20 clients, 3 guesses each, all at once
        barrier = threading.Barrier(60, timeout=120)
        with ThreadPoolExecutor(60) as pool:
            results = list(pool.map(lambda i: try_auth(server, sources[i % 20], "other@d.example", f"g{i}", barrier),
                                    range(60)))
        assert collections.Counter(code for code, _ in results) == {535: 10, 454: 50}
        # A fresh client with the right password: the login is out of guesses for strangers ...
        client = submission_from(server, "127.0.2.1")
        client.user, client.password = "other@d.example", PW
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.auth("PLAIN", client.auth_plain)
        assert (err.value.smtp_code, err.value.smtp_error) == (454, TOO_MANY_AUTH)
        client.close()
        # ... not for the client that sends as it every day, nor for the other logins.
        send_from(server, "127.0.0.2", "other@d.example")
        send_from(server, "127.0.2.2", "app@d.example")
    finally:
        log = stopped(server)
    assert log.count("event=auth_failed") == 10


def test_per_client_connection_cap(world, tmp_path, run):
    server = start(tmp_path, "--max-connections-per-client", "3")
    try:
        held = [greeting(server, "127.0.0.1") for _ in range(3)]
        assert all(line.startswith(b"220 ") for _, line in held)
        sock, line = greeting(server, "127.0.0.1")
        assert line == FROM_YOUR_ADDRESS and closed_by_server(sock)
        sock.close()
        send_from(server, "127.0.0.2")  # another client: a full send
        assert emails(run) == 1
        # A slot comes back when its connection closes.
        held.pop()[0].close()
        deadline = time.monotonic() + 10
        while True:
            sock, line = greeting(server, "127.0.0.1")
            sock.close()
            if line.startswith(b"220 ") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert line.startswith(b"220 ")
        # On the implicit-TLS port a connection counts from the moment it is accepted, before any
        # handshake (three that never start one hold their client's slots), and the count is shared.
        silent = [socket.create_connection(server.addresses["smtps"], timeout=30, source_address=("127.0.0.3", 0))
                  for _ in range(3)]
        probe = smtplib.SMTP_SSL(*server.addresses["smtps"], context=TLS, timeout=30, source_address=("127.0.0.4", 0))
        probe.quit()  # served after the three (one accept queue): they are counted by now
        sock, line = greeting(server, "127.0.0.3")
        assert line == FROM_YOUR_ADDRESS
        sock.close()
        with pytest.raises((ssl.SSLError, OSError, smtplib.SMTPServerDisconnected)):
            smtplib.SMTP_SSL(*server.addresses["smtps"], context=TLS, timeout=30, source_address=("127.0.0.3", 0))
        for sock in silent + [s for s, _ in held]:
            sock.close()
    finally:
        log = stopped(server)
    assert "event=connection_refused listener=submission peer=127.0.0.1:" in log and "cap=client" in log
    assert "event=connection_refused listener=smtps peer=127.0.0.3:" in log


def test_idle_flood_against_256_open_files(world, tmp_path, run):
    """300 idle strangers from one address, then more from others, against a
    server allowed 256 files: the caps refuse the excess with 421 before the
    process runs out of descriptors, and a real client is still served."""

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    server = start(tmp_path, preexec_fn=few_files)
    flood = []
    try:
        assert "max_connections=192 max_connections_per_client=50" in server.text()  # 256 - 64 for the rest
        flood = burst(server, ["127.0.0.1"] * 300)
        lines = collections.Counter(b"220" if line.startswith(b"220 ") else line for _, line in flood)
        assert lines == {b"220": 50, FROM_YOUR_ADDRESS: 250}
        send_from(server, "127.0.0.2")
        more = burst(server, [f"127.0.0.{3 + i // 50}" for i in range(200)])  # 4 more clients, 50 each
        flood += more
        lines = collections.Counter(b"220" if line.startswith(b"220 ") else line for _, line in more)
        assert lines == {b"220": 142, IN_ALL: 58}  # 50 + 142 = 192 in all
        for sock, _ in more:
            sock.close()
        time.sleep(0.5)
        send_from(server, "127.0.0.2")  # slots freed: served again
        assert server.proc.poll() is None
    finally:
        for sock, _ in flood:
            sock.close()
        log = stopped(server)
    assert "Too many open files" not in log and "out of system resource" not in log
    assert emails(run) == 2


def test_idle_sessions_time_out_sooner_before_auth(world, tmp_path):
    server = start(tmp_path, "--pre-auth-timeout", "1", "--auth-delay", "0")
    try:
        idle, line = greeting(server, "127.0.0.1")
        assert line.startswith(b"220 ")
        client = submission_from(server, "127.0.0.2")
        client.login("app@d.example", PW)
        started = time.monotonic()
        idle.settimeout(10)
        assert closed_by_server(idle) and time.monotonic() - started < 5
        time.sleep(1.5)  # past the pre-AUTH timeout: an authenticated session has the longer one
        assert client.noop()[0] == 250
        client.quit()
        idle.close()
        # A connection to the implicit-TLS port that never starts its handshake is dropped as soon.
        silent = socket.create_connection(server.addresses["smtps"], timeout=10, source_address=("127.0.0.3", 0))
        started = time.monotonic()
        assert closed_by_server(silent) and time.monotonic() - started < 5
        silent.close()
    finally:
        log = stopped(server)
    assert "event=timeout listener=submission peer=127.0.0.1:" in log
    assert "event=tls_failed listener=smtps peer=127.0.0.3:" in log


def test_keep_alives_do_not_hold_a_slot_before_auth(world, tmp_path):
    """issue 23: the pre-AUTH timeout was reset by every command, so NOOPs held a slot for ever. Before AUTH
    the whole unauthenticated phase has one deadline: NOOPs every 0.3 s do not keep a 1 s session open."""
    server = start(tmp_path, "--pre-auth-timeout", "1", "--auth-delay", "0")
    try:
        client = smtplib.SMTP(*server.addresses["submission"], timeout=10, source_address=("127.0.0.1", 0))
        started = time.monotonic()
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            for _ in range(20):
                assert client.noop()[0] == 250
                time.sleep(0.3)
        assert time.monotonic() - started < 4
        client.close()
    finally:
        log = stopped(server)
    assert "event=timeout listener=submission peer=127.0.0.1:" in log


def test_more_than_20_commands_before_auth_close_the_session(world, tmp_path):
    """As Postfix's smtpd_junk_command_limit: a bounded number of command lines before AUTH."""
    server = start(tmp_path, "--auth-delay", "0")
    try:
        raw = socket.create_connection(server.addresses["submission"], timeout=10, source_address=("127.0.0.1", 0))
        stream = raw.makefile("rb")
        assert stream.readline().startswith(b"220")
        raw.sendall(b"NOOP\r\n" * 25)
        replies = [stream.readline() for _ in range(21)]
        assert replies[:20] == [b"250 OK\r\n"] * 20
        assert b"421 4.7.0 Too many commands before authentication; closing\r\n" in replies[20:] + [stream.readline()]
        assert closed_by_server(raw)
        raw.close()
        client = submission_from(server, "127.0.0.2")  # an honest client is served
        client.login("app@d.example", PW)
        for _ in range(25):  # once authenticated, no such bound
            assert client.noop()[0] == 250
        client.quit()
    finally:
        log = stopped(server)
    assert "event=too_many_commands listener=submission peer=127.0.0.1:" in log


def test_an_authenticated_talking_session_outlives_its_timeout_and_then_idles_out(world, tmp_path):
    """Once authenticated the timeout counts from the last command (serve moves one timer instead of making one
    per line): commands every 0.3 s keep a session with a 1 s timeout open for 3 s; silent, it is closed."""
    server = start(tmp_path, "--timeout", "1", "--auth-delay", "0")
    try:
        client = submission_from(server, "127.0.0.1")
        client.login("app@d.example", PW)
        for _ in range(10):
            assert client.noop()[0] == 250
            time.sleep(0.3)
        client.sock.settimeout(10)
        assert closed_by_server(client.sock)
        client.close()
    finally:
        log = stopped(server)
    assert "event=timeout listener=submission peer=127.0.0.1:" in log


def test_port_in_use_is_one_error_and_nothing_served(world, tmp_path, run):
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        taken = occupant.getsockname()[1]
        for check in ([], ["--check"]):
            proc = run("serve", *check, "--submission", "127.0.0.1:0", "--submission", f"127.0.0.1:{taken}",
                       "--smtps", "127.0.0.1:0")
            assert (proc.returncode, proc.stderr.splitlines()[-1]) == (
                9, f"Error: cannot listen on 127.0.0.1:{taken}: address already in use")
            assert "event=listening" not in proc.stderr and "Configuration OK" not in proc.stderr


def test_check_tries_the_binds_and_shows_the_caps(world, run):
    ok = run("serve", "--check", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
             "--max-connections", "200", "--max-connections-per-client", "20")
    assert ok.returncode == 0
    assert ("connections at most 200 (20 per client); AUTH failures at most 5 per client and 10 per login in "
            "5 minutes; timeouts 60 s before AUTH, 300 s after; AUTH cache 10000 logins for 300 s; bodies over 262144 "
            "bytes spooled to ") in ok.stderr
    huge = run("serve", "--check", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
               "--max-connections", "100000000")
    assert (huge.returncode, huge.stderr) == (2, "Error: --max-connections must be between 1 and 1,000,000, "
                                                 "not 100000000\n")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1_000_000 - 200:
        more = run("serve", "--check", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                   "--max-connections", "1000000")
        assert (more.returncode, more.stderr) == (
            2, f"Error: --max-connections 1000000 needs about 1000064 open files, and the limit is {soft}: raise it "
               f"(ulimit -n, systemd LimitNOFILE=) or lower --max-connections\n")
    nan = run("serve", "--check", "--timeout", "nan")
    assert (nan.returncode, nan.stderr) == (2, "Error: --timeout takes a number of seconds, not nan\n")


def test_privileged_port_as_an_unprivileged_user(tmp_path):
    """Port 465 as uid 65534: one Error line, exit 9 (as root, run the server through setpriv)."""
    if int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read()) <= 465:
        pytest.skip("this host lets unprivileged users bind port 465 (net.ipv4.ip_unprivileged_port_start)")
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run([*prefix, smtpctl_binary(), "--version"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot run smtpctl as uid 65534: {probe.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory() as shared:  # a store uid 65534 can create and read
        os.chmod(shared, 0o777)
        # On the PostgreSQL pass the test's database (the cluster's socket is open to uid 65534).
        db = os.environ["SMTPCTL_DB"] if ON_POSTGRESQL else f"{shared}/smtpctl.db"
        env = {**os.environ, "SMTPCTL_DB": db, "SMTPCTL_CONFIG": f"{shared}/config.toml",
               "HOME": shared, "XDG_DATA_HOME": shared, "XDG_CONFIG_HOME": shared}
        open(f"{shared}/config.toml", "w").close()
        os.chmod(f"{shared}/config.toml", 0o644)
        for check in ([], ["--check"]):
            proc = subprocess.run([*prefix, smtpctl_binary(), "serve", *check, "--submission", "127.0.0.1:0",
                                   "--smtps", "127.0.0.1:465"], capture_output=True, text=True, env=env, timeout=60,
                                  stdin=subprocess.DEVNULL)
            assert (proc.returncode, proc.stderr.splitlines()[-1]) == (
                9, "Error: cannot listen on 127.0.0.1:465: permission denied (a port below 1024 needs root or "
                   "CAP_NET_BIND_SERVICE)"), proc.stderr
