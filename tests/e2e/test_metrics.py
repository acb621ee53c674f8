"""--metrics on both servers: real processes, real SMTP and policy traffic, a real HTTP scrape."""

import re
import smtplib
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.servers import Running

pytestmark = pytest.mark.e2e

PW = "Correct-Horse-Battery-Staple-42"
REQUEST = (Path(__file__).resolve().parents[1] / "fixtures" / "postfix" / "policy-request.txt").read_text()


@pytest.fixture
def world(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "100", check_rc=0)
    run("domain", "add", "acme.test", "--account", "shop", check_rc=0)
    run("user", "create", "bob@acme.test", "--password-stdin", input=PW + "\n", check_rc=0)


def scrape(address: tuple[str, int]) -> dict[str, float]:
    """``GET /metrics``: each sample line as ``name{labels}`` (labels sorted, as the client writes them) -> value."""
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def smtpctl_samples(samples: dict[str, float]) -> dict[str, float]:
    """The smtpctl_ series, without histogram buckets and timing sums (their values depend on the machine)."""
    return {k: v for k, v in samples.items() if k.startswith("smtpctl_") and "_bucket{" not in k
            and not k.startswith("smtpctl_store_admission_seconds_sum")}


def tls_client():
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def submission(server) -> smtplib.SMTP:
    client = smtplib.SMTP(*server.addresses["submission"], timeout=30)
    client.starttls(context=tls_client())
    return client


def settled(metrics: tuple[str, int]) -> dict[str, float]:
    """A scrape once the server has seen every client leave (a moment after the client closes)."""
    deadline = time.monotonic() + 10
    while (samples := scrape(metrics))['smtpctl_connections{server="serve"}'] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return samples


def test_serve_metrics_count_what_happened(world, tmp_path):
    server = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--auth-delay", "0.1",
                      "--max-auth-failures", "1", "--max-connections-per-client", "1",
                      "--maildir", str(tmp_path / "maildir"), "--metrics", "127.0.0.1:0"], tmp_path / "serve.log")
    try:
        metrics = server.addresses["metrics"]
        before = smtpctl_samples(scrape(metrics))
        assert before['smtpctl_messages_accepted_total{server="serve"}'] == 0
        assert before['smtpctl_connections{server="serve"}'] == 0

        client = submission(server)
        assert scrape(metrics)['smtpctl_connections{server="serve"}'] == 1  # counted when accepted
        with socket.create_connection(server.addresses["submission"], timeout=10) as second:  # past the client cap
            assert second.recv(200).startswith(b"421 4.7.0")
        client.login("bob@acme.test", PW)
        assert client.sendmail("bob@acme.test", ["a@x.test", "b@x.test", "c@x.test"], "Subject: hi\r\n\r\nhi\r\n") == {}
        code, _ = client.docmd("MAIL", "FROM:<mallory@elsewhere.test>")  # sender alignment
        assert code == 553
        client.quit()
        settled(metrics)  # its slot is free again: the next client is admitted

        other = submission(server)
        other.ehlo()
        other.user, other.password = "bob@acme.test", "wrong password"
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:  # one try: login() would try two
            other.auth("PLAIN", other.auth_plain)
        assert failed.value.smtp_code == 535
        code, _ = other.docmd("AUTH", "PLAIN AGJvYkBhY21lLnRlc3QAeA==")  # the one guess is spent
        assert code == 454
        other.close()

        after = settled(metrics)
        assert smtpctl_samples(after) == {
            'smtpctl_messages_accepted_total{server="serve"}': 1.0,
            'smtpctl_recipients_metered_total{server="serve"}': 3.0,
            'smtpctl_refusals_total{reason="unknown",server="serve"}': 0.0,
            'smtpctl_refusals_total{reason="revoked",server="serve"}': 0.0,
            'smtpctl_refusals_total{reason="sender_mismatch",server="serve"}': 1.0,
            'smtpctl_refusals_total{reason="too_many_recipients",server="serve"}': 0.0,
            'smtpctl_refusals_total{reason="over_limit",server="serve"}': 0.0,
            'smtpctl_refusals_total{reason="store_error",server="serve"}': 0.0,
            'smtpctl_limit_crossings_total{server="serve"}': 0.0,
            'smtpctl_store_admission_seconds_count{server="serve"}': 1.0,
            'smtpctl_group_commit_batch_size_count{server="serve"}': 1.0,
            'smtpctl_group_commit_batch_size_sum{server="serve"}': 1.0,
            'smtpctl_connections{server="serve"}': 0.0,
            'smtpctl_connections_accepted_total{server="serve"}': 2.0,
            'smtpctl_connections_refused_total{cap="total",server="serve"}': 0.0,
            'smtpctl_connections_refused_total{cap="client",server="serve"}': 1.0,
            'smtpctl_auth_attempts_total{result="ok",server="serve"}': 1.0,
            'smtpctl_auth_attempts_total{result="failed",server="serve"}': 1.0,
            'smtpctl_auth_attempts_total{result="throttled",server="serve"}': 1.0,
            'smtpctl_auth_attempts_total{result="revoked",server="serve"}': 0.0,
        }
        assert after['smtpctl_group_commit_batch_size_bucket{le="1.0",server="serve"}'] == 1.0
        assert after['smtpctl_store_admission_seconds_bucket{le="+Inf",server="serve"}'] == 1.0
        assert 0 < after['smtpctl_store_admission_seconds_sum{server="serve"}'] < 10
        assert after["process_open_fds"] > 0  # the process collector is there too

        host, port = metrics
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://{host}:{port}/", timeout=10)
        assert missing.value.code == 404
        request = urllib.request.Request(f"http://{host}:{port}/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as post:
            urllib.request.urlopen(request, timeout=10)
        assert post.value.code == 405
    finally:
        assert server.stop() == 0
    assert re.search(r"event=listening listener=metrics address=127\.0\.0\.1:\d+\n", server.text())
    assert "Traceback" not in server.text()


def ask(stream, text):
    stream.write(text.encode())
    stream.flush()
    answer = stream.readline().decode()
    assert stream.readline() == b"\n"
    return answer.rstrip("\n")


def test_policy_metrics_count_actions_and_metered_recipients(world, tmp_path):
    server = Running(["policy", "serve", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
                     tmp_path / "policy.log")
    try:
        conn = socket.create_connection(server.addresses["policy"], timeout=10)
        stream = conn.makefile("rwb")
        rcpt = REQUEST.replace("protocol_state=END-OF-MESSAGE", "protocol_state=RCPT")
        assert ask(stream, rcpt) == "action=DUNNO"
        assert ask(stream, REQUEST) == "action=DUNNO"  # 3 recipients metered
        assert ask(stream, REQUEST) == "action=DUNNO"  # the same instance again: not metered twice
        assert ask(stream, rcpt.replace("sender=bob@acme.test", "sender=mallory@elsewhere.test")).startswith(
            "action=REJECT 5.7.1 Sender address")
        assert ask(stream, REQUEST.replace("sasl_username=bob@acme.test", "sasl_username=")) == "action=DUNNO"
        assert ask(stream, "no equals sign\n\n").startswith("action=DEFER_IF_PERMIT 4.5.0")
        samples = smtpctl_samples(scrape(server.addresses["metrics"]))
        conn.close()
    finally:
        assert server.stop() == 0
    assert samples == {
        'smtpctl_messages_accepted_total{server="policy"}': 1.0,
        'smtpctl_recipients_metered_total{server="policy"}': 3.0,
        'smtpctl_refusals_total{reason="revoked",server="policy"}': 0.0,
        'smtpctl_refusals_total{reason="sender_mismatch",server="policy"}': 1.0,
        'smtpctl_refusals_total{reason="too_many_recipients",server="policy"}': 0.0,
        'smtpctl_refusals_total{reason="over_limit",server="policy"}': 0.0,
        'smtpctl_refusals_total{reason="store_error",server="policy"}': 0.0,
        'smtpctl_refusals_total{reason="malformed",server="policy"}': 1.0,
        'smtpctl_limit_crossings_total{server="policy"}': 0.0,
        # Every END-OF-MESSAGE request is one step of a shared transaction (three here, one at a time).
        'smtpctl_store_admission_seconds_count{server="policy"}': 3.0,
        'smtpctl_group_commit_batch_size_count{server="policy"}': 3.0,
        'smtpctl_group_commit_batch_size_sum{server="policy"}': 3.0,
        'smtpctl_connections{server="policy"}': 1.0,
        'smtpctl_connections_accepted_total{server="policy"}': 1.0,
        'smtpctl_policy_requests_total{action="DUNNO",server="policy",state="RCPT"}': 1.0,
        'smtpctl_policy_requests_total{action="DUNNO",server="policy",state="END-OF-MESSAGE"}': 3.0,
        'smtpctl_policy_requests_total{action="REJECT",server="policy",state="RCPT"}': 1.0,
        'smtpctl_policy_requests_total{action="DEFER_IF_PERMIT",server="policy",state="other"}': 1.0,
    }


@pytest.mark.parametrize("command", [["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0"],
                                     ["policy", "serve", "--listen", "127.0.0.1:0"]])
def test_metrics_port_in_use_is_exit_9(world, run, command):
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        taken = occupant.getsockname()[1]
        for check in ([], ["--check"]):
            proc = run(*command, *check, "--metrics", f"127.0.0.1:{taken}")
            # (serve logs the self-signed certificate it made on the first run before it binds)
            errors = [line for line in proc.stderr.splitlines() if "event=tls_selfsigned" not in line]
            assert (proc.returncode, proc.stdout, errors) == (
                9, "", [f"Error: cannot listen on 127.0.0.1:{taken}: address already in use"])


@pytest.mark.parametrize("command", [["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0"],
                                     ["policy", "serve", "--listen", "127.0.0.1:0"]])
def test_metrics_address_is_checked(world, run, command):
    proc = run(*command, "--check", "--metrics", "9100")
    assert (proc.returncode, proc.stderr) == (2, "Error: --metrics takes HOST:PORT, not '9100'\n")
    proc = run(*command, "--check", "--metrics", "127.0.0.1:0")
    assert proc.returncode == 0 and proc.stderr.rstrip().endswith("; metrics on 127.0.0.1:0."), proc.stderr


def test_without_metrics_prometheus_client_is_not_imported(world, tmp_path):
    """The servers run the same calls on stand-ins: the library is loaded only for --metrics."""
    import os
    import subprocess
    import sys

    code = ("import sys; import smtpctl.servers.submission.server, smtpctl.servers.policy.socket, smtpctl.servers.metering; "
            "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ).stdout
    assert out == "[]\n"


def test_a_flood_on_the_metrics_port_leaves_mail_and_scrapes_served(world, tmp_path):
    """issue 23: 400 connections to --metrics at `ulimit -n 256` took every descriptor of the process (Maildir
    deliveries got 451) and asyncio logged ~20,000 tracebacks. The endpoint has a small cap of its own."""
    import resource

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    server = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                      "--maildir", str(tmp_path / "maildir"), "--metrics", "127.0.0.1:0"], tmp_path / "serve.log",
                     preexec_fn=low_limit)
    flood = []
    try:
        for _ in range(400):
            try:
                flood.append(socket.create_connection(server.addresses["metrics"], timeout=5))
            except OSError:
                break
        for _ in range(5):
            client = submission(server)
            client.login("bob@acme.test", PW)
            assert client.sendmail("bob@acme.test", ["a@x.test"], "Subject: hi\r\n\r\nhi\r\n") == {}
            client.quit()
        for sock in flood:
            sock.close()
        flood = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the held slots go back as the flood's connections close
            try:
                assert scrape(server.addresses["metrics"])['smtpctl_messages_accepted_total{server="serve"}'] == 5
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("metrics not served after the flood")
    finally:
        for sock in flood:
            sock.close()
        assert server.stop() == 0
    text = server.text()
    assert "Traceback" not in text and text.count("\n") < 500
    assert "event=connection_refused listener=metrics" in text
