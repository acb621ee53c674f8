"""smtpctl serve as a real process, driven by smtplib and swaks over loopback."""

import base64
import json
import mailbox
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from tests.e2e.servers import Running, sink_server

pytestmark = pytest.mark.e2e

PW = "Correct-Horse-Battery-Staple-42"
MESSAGE = ("From: app@d.example\r\nTo: to1@x.test, to2@x.test\r\nCc: cc@x.test\r\nSubject: hello\r\n\r\n"
           "Four recipients, one of them Bcc.\r\n")


def tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return context


@pytest.fixture
def world(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "10", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    for login in ("app@d.example", "other@d.example"):
        run("user", "create", login, "--password-stdin", input=PW + "\n", check_rc=0)


@pytest.fixture
def server(world, tmp_path):
    maildir = tmp_path / "maildir"
    running = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--auth-delay", "0.1",
                       "--max-auth-failures", "3", "--maildir", str(maildir)], tmp_path / "serve.log")
    running.maildir = maildir
    yield running
    code = running.stop()
    assert code == 0, running.text()
    assert "event=stopped" in running.text()
    assert PW not in running.text()


def submission(server) -> smtplib.SMTP:
    client = smtplib.SMTP(*server.addresses["submission"], timeout=30)
    client.ehlo()
    client.starttls(context=tls_client())
    client.ehlo()
    return client


def report(run):
    return json.loads(run("usage", "report", "--by", "user", "--json", check_rc=0).stdout)


def test_ehlo_offers_only_real_mechanisms_and_an_unknown_one_is_a_plain_504(server):
    # issue 23: the handler's auth_cache attribute was offered as "AUTH ... cache", and using it logged a traceback
    client = submission(server)
    assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
    for mechanism in ("CACHE", "cache", "CRAM-MD5"):
        code, _ = client.docmd("AUTH", mechanism)
        assert code == 504, mechanism
    client.quit()
    assert "Traceback" not in server.text() and "TypeError" not in server.text()


def test_starttls_plain_and_bcc_counts_four(server, run):
    client = submission(server)
    assert "PLAIN" in client.esmtp_features["auth"] and "LOGIN" in client.esmtp_features["auth"]
    client.login("app@d.example", PW)  # smtplib picks PLAIN... or LOGIN; pin both below
    refused = client.sendmail("app@d.example", ["to1@x.test", "to2@x.test", "cc@x.test", "hidden@x.test"], MESSAGE)
    assert refused == {}
    client.quit()
    assert [(r["user"], r["messages"], r["emails"]) for r in report(run)["rows"]] == [("app@d.example", 1, 4)]
    [stored] = list(mailbox.Maildir(server.maildir, create=False))
    assert stored["Subject"] == "hello" and stored["Return-Path"] == "<app@d.example>"
    assert "hidden@x.test" not in stored.as_string()  # Bcc stays in the envelope
    assert "event=message login=app@d.example" in server.text() and "recipients=4 emails=4" in server.text()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_each_mechanism_on_submission(server, mechanism):
    client = submission(server)
    client.user, client.password = "App@D.Example", PW  # logins are case-insensitive
    auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
    code, _ = client.auth(mechanism, auth)
    assert code == 235
    client.quit()
    assert "event=auth_ok peer=127.0.0.1:" in server.text() and f"mechanism={mechanism} login=app@d.example" in server.text()


def test_login_challenges_are_plain_text(server):
    """aiosmtpd's own LOGIN challenges end in a NUL byte (aiosmtpd#566)."""
    client = submission(server)
    code, challenge = client.docmd("AUTH", "LOGIN")
    assert code == 334 and base64.b64decode(challenge) == b"Username:"
    code, challenge = client.docmd(base64.b64encode(b"app@d.example").decode())
    assert code == 334 and base64.b64decode(challenge) == b"Password:"
    code, _ = client.docmd(base64.b64encode(PW.encode()).decode())
    assert code == 235


def test_implicit_tls_offers_and_accepts_auth(server, run):
    client = smtplib.SMTP_SSL(*server.addresses["smtps"], context=tls_client(), timeout=30)
    client.ehlo()
    assert "PLAIN" in client.esmtp_features.get("auth", "")
    client.login("app@d.example", PW)
    client.sendmail("app@d.example", ["a@x.test"], MESSAGE)
    client.quit()
    assert report(run)["total"]["emails"] == 1


def test_auth_before_starttls_is_refused(server):
    client = smtplib.SMTP(*server.addresses["submission"], timeout=30)
    client.ehlo()
    assert "auth" not in client.esmtp_features
    code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0app@d.example\0{PW}".encode()).decode())
    assert code == 530 and b"STARTTLS" in text
    code, _ = client.docmd("MAIL", "FROM:<app@d.example>")
    assert code == 530
    client.close()


def test_clear_text_on_the_smtps_port_gets_nothing(server):
    with socket.create_connection(server.addresses["smtps"], timeout=10) as raw:
        raw.sendall(b"EHLO clear\r\n")
        raw.settimeout(5)
        try:
            data = raw.recv(1024)
        except (ConnectionResetError, socket.timeout):
            data = b""
    assert b"AUTH" not in data


def test_wrong_password_then_throttled(server):
    for _ in range(3):
        client = submission(server)
        client.user, client.password = "app@d.example", PW + "x"
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.auth("PLAIN", client.auth_plain)  # one attempt (login() would try every mechanism)
        assert err.value.smtp_code == 535
        client.close()
    client = submission(server)
    client.user, client.password = "app@d.example", PW
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        client.auth("PLAIN", client.auth_plain)  # even the right password, from a throttled address
    assert err.value.smtp_code == 454
    client.close()
    log = server.text()
    assert log.count("event=auth_failed") == 3 and "event=auth_throttled" in log
    assert PW not in log


def test_mail_without_auth_is_refused(server):
    client = submission(server)
    code, _ = client.docmd("MAIL", "FROM:<app@d.example>")
    assert code == 530
    client.close()


def test_crossing_the_limit_then_refusals(server, run):
    client = submission(server)
    client.login("app@d.example", PW)
    client.sendmail("app@d.example", [f"r{i}@x.test" for i in range(9)], MESSAGE)
    client.sendmail("app@d.example", ["r9@x.test", "r10@x.test"], MESSAGE)  # 11 > 10: accepted, then revoked
    with pytest.raises(smtplib.SMTPSenderRefused) as err:
        client.sendmail("app@d.example", ["late@x.test"], MESSAGE)
    assert err.value.smtp_code == 550 and b"5.7.1" in err.value.smtp_error
    client.close()
    for login in ("app@d.example", "other@d.example"):
        again = submission(server)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            again.login(login, PW)
        again.close()
    status = json.loads(run("usage", "status", "shop", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"], status["live_credentials"]) == (11, True, 0)
    assert "event=limit_exceeded account=shop" in server.text()
    assert run("user", "create", "new@d.example", "--generate").returncode == 6


@pytest.fixture
def sink():
    """A second local SMTP server, as the relay."""

    class Collect:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    with sink_server(Collect()) as handler:
        yield handler


def test_relay_delivers_to_a_local_sink(world, tmp_path, sink, run):
    relay = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--relay",
                     f"127.0.0.1:{sink.port}"], tmp_path / "relay.log")
    try:
        client = submission(relay)
        client.login("app@d.example", PW)
        client.sendmail("app@d.example", ["to1@x.test", "to2@x.test", "cc@x.test", "hidden@x.test"], MESSAGE)
        client.quit()
    finally:
        assert relay.stop() == 0
    [(mail_from, rcpts, content)] = sink.envelopes
    assert (mail_from, sorted(rcpts)) == ("app@d.example", ["cc@x.test", "hidden@x.test", "to1@x.test", "to2@x.test"])
    assert b"Subject: hello" in content
    assert "delivered=relay:127.0.0.1:" in relay.text()
    assert report(run)["total"]["emails"] == 4


def test_a_failing_relay_is_temporary_and_bills_nothing(world, tmp_path, run):
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    relay = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--relay",
                     f"127.0.0.1:{dead}"], tmp_path / "dead.log")
    try:
        client = submission(relay)
        client.login("app@d.example", PW)
        # The next hop is asked at MAIL (each recipient is checked with it while the client waits).
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            client.sendmail("app@d.example", ["a@x.test"], MESSAGE)
        assert (err.value.smtp_code, err.value.smtp_error) == (451, b"4.4.1 Next hop unavailable; try again later")
        client.close()
    finally:
        assert relay.stop() == 0
    assert report(run)["rows"] == []


def test_swaks_submits_with_starttls_and_auth_login(server, run):
    swaks = shutil.which("swaks")
    if not swaks:
        if os.environ.get("CI"):
            pytest.fail("swaks is missing: .ci/run installs it from Debian")
        pytest.skip("swaks not installed")
    host, port = server.addresses["submission"]
    env = {**os.environ, "SWAKS_OPT_auth_password": PW}  # keeps the password out of argv
    proc = subprocess.run([swaks, "--server", host, "--port", str(port), "--tls", "--auth", "LOGIN",
                           "--auth-user", "app@d.example", "--from", "app@d.example",
                           "--to", "a@x.test,b@x.test", "--header", "Subject: swaks"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report(run)["total"]["emails"] == 2


def test_check_validates_and_exits(world, run, tmp_path):
    ok = run("serve", "--check", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0")
    assert ok.returncode == 0 and ok.stderr.splitlines()[-1].startswith("Configuration OK")
    bad = run("serve", "--check", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "nope.key"))
    assert bad.returncode == 2 and bad.stderr.startswith("Error: cannot load the TLS certificate")
    half = run("serve", "--check", "--tls-cert", str(tmp_path / "c.pem"))
    assert (half.returncode, half.stderr) == (
        2, "Error: give both --tls-cert and --tls-key, or neither (a self-signed pair is made)\n")
    addr = run("serve", "--check", "--submission", "localhost")
    assert (addr.returncode, addr.stderr) == (2, "Error: --submission takes HOST:PORT, not 'localhost'\n")


def test_manual_block_stops_creation_not_sending(server, run):
    # docs/rules.md: a manual block stops credential creation only.
    run("account", "block", "shop", "--reason", "compliance review", check_rc=0)
    client = submission(server)
    client.login("app@d.example", PW)
    client.sendmail("app@d.example", ["a@x.test"], MESSAGE)
    client.quit()
    assert report(run)["total"]["emails"] == 1


def test_revoking_block_stops_authentication(server, run):
    run("account", "block", "shop", "--reason", "compliance review", "--revoke", "--yes", check_rc=0)
    client = submission(server)
    client.user, client.password = "app@d.example", PW
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        client.auth("PLAIN", client.auth_plain)
    assert (err.value.smtp_code, err.value.smtp_error) == (
        535, b"5.7.8 Authentication credentials revoked by an operator; contact support")
    client.close()
    assert "event=auth_revoked" in server.text() and "event=auth_failed" not in server.text()


def test_a_credential_revoked_between_messages_is_refused_at_the_next_mail(server, run):
    """MAIL reads the credential when it arrives (ReadBatch), never from the session's AUTH: a revocation
    by another process between two messages of one session is refused at the second MAIL, before any body."""
    client = submission(server)
    client.login("app@d.example", PW)
    client.sendmail("app@d.example", ["a@x.test"], MESSAGE)
    run("account", "block", "shop", "--reason", "abuse", "--revoke", "--yes", check_rc=0)
    code, reply = client.mail("app@d.example")
    assert code == 550 and b"credentials were revoked" in reply, (code, reply)
    with pytest.raises(smtplib.SMTPServerDisconnected):  # and the session is closed (issue 23)
        client.rset()
    assert report(run)["total"]["emails"] == 1  # the first message only
    assert "event=mail_refused" in server.text() and "reason=revoked" in server.text()


@pytest.mark.parametrize("change", ["reset", "delete and create"])
def test_a_session_whose_credential_changed_is_refused_and_closed_at_the_next_mail(server, run, change):
    """issue 23: after a reset, or a delete and a new credential with the same login, a session that
    authenticated before kept getting 250: a leaked password's session must end at the next MAIL."""
    client = submission(server)
    client.login("app@d.example", PW)
    client.sendmail("app@d.example", ["a@x.test"], MESSAGE)
    if change == "reset":
        run("user", "reset", "app@d.example", "--generate", check_rc=0)
    else:
        run("user", "delete", "app@d.example", "--yes", check_rc=0)
        run("user", "create", "app@d.example", "--generate", check_rc=0)
    code, reply = client.mail("app@d.example")
    assert (code, reply) == (421, b"4.7.0 Your SMTP credentials changed since you authenticated (reset or deleted); "
                                  b"closing")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.rcpt("a@x.test")
    assert report(run)["total"]["emails"] == 1
    assert "reason=credential_changed" in server.text() and "Traceback" not in server.text()


def test_a_rehash_of_an_adopted_hash_keeps_the_session(server, run, tmp_path):
    """The first verify of an adopted hash replaces it by argon2id (a rehash): the same password and the same
    credential, so the session that caused it goes on sending."""
    from passlib.hash import sha512_crypt

    accounts = tmp_path / "passwd"
    accounts.write_text(f"old@d.example:{{SHA512-CRYPT}}{sha512_crypt.using(rounds=5000).hash(PW)}\n")
    run("user", "import", str(accounts), "--format", "dovecot", check_rc=0)
    client = submission(server)
    client.login("old@d.example", PW)  # verified against SHA512-CRYPT, then rehashed to argon2id
    assert client.sendmail("old@d.example", ["a@x.test"], MESSAGE) == {}
    assert client.sendmail("old@d.example", ["b@x.test"], MESSAGE) == {}
    client.quit()
    assert json.loads(run("user", "show", "old@d.example", "--json", check_rc=0).stdout)["hash_scheme"] == "argon2id"


def test_a_client_gone_right_after_starttls_is_one_log_line(server):
    # issue 23: a client that closed after "220 Ready to start TLS" printed a multi-line traceback, each one
    for _ in range(20):
        with socket.create_connection(server.addresses["submission"], timeout=10) as raw:
            stream = raw.makefile("rb")
            stream.readline()
            raw.sendall(b"EHLO x\r\n")
            while not stream.readline().startswith(b"250 "):
                pass
            raw.sendall(b"STARTTLS\r\n")
            assert stream.readline().startswith(b"220")
    client = submission(server)  # the server serves on
    client.quit()
    deadline = time.monotonic() + 10
    while server.text().count("event=disconnect") < 21 and time.monotonic() < deadline:
        time.sleep(0.1)
    errors = [line for line in server.text().splitlines() if "event=session_error" in line]
    # at most one line a client (one whose close the server sees before the handshake has none)
    assert 1 <= len(errors) <= 20 and any("error=TLSSetupException" in line for line in errors)
    assert "Traceback" not in server.text()


def test_a_header_from_of_another_tenant_is_refused_at_the_end_of_data(server, run):
    # issue 23: with the envelope aligned, a From header of another tenant's domain was delivered
    run("agency", "add", "rival", check_rc=0)
    run("account", "add", "rival-shop", "--agency", "rival", check_rc=0)
    run("domain", "add", "rival.example", "--account", "rival-shop", check_rc=0)
    client = submission(server)
    client.login("app@d.example", PW)
    forged = "From: Rival <ceo@rival.example>\r\nTo: a@x.test\r\nSubject: pay\r\n\r\nhi\r\n"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("app@d.example", ["a@x.test"], forged)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        550, b"5.7.1 <ceo@rival.example>: header From address not owned by user app@d.example")
    assert client.sendmail("app@d.example", ["a@x.test"], "From: App <app@d.example>\r\n\r\nok\r\n") == {}
    run("store", "set", "sender_alignment", "off", check_rc=0)  # the same setting turns both checks off
    assert client.sendmail("app@d.example", ["a@x.test"], forged) == {}
    client.quit()
    assert report(run)["total"]["emails"] == 2  # the refused message is not billed
    assert "reason=header_from_mismatch" in server.text()


def test_a_prepaid_agency_out_of_credits_gets_451_keeps_its_session_and_resumes_on_top_up(server, run):
    """issue 24 over real SMTP: out of credits is temporary (451 4.7.1), not a
    revocation; a top-up lets the very next MAIL through on the same session."""
    run("billing", "set-mode", "acme", "prepaid", check_rc=0)
    run("account", "set-limit", "shop", "1000", check_rc=0)  # the daily limit out of the way
    run("billing", "credit", "acme", "0.01", check_rc=0)  # 14.8 emails at $0.675 per 1,000
    client = submission(server)
    client.login("app@d.example", PW)
    body = "From: App <app@d.example>\r\n\r\nhi\r\n"
    for _ in range(5):  # 3 emails each: the fifth takes the balance below zero and is the one crossing
        assert client.sendmail("app@d.example", ["a@x.test", "b@x.test", "c@x.test"], body) == {}
    with pytest.raises(smtplib.SMTPDataError) as refused:  # decided at the end of DATA, as the daily limit is
        client.sendmail("app@d.example", ["a@x.test"], body)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        451, b"4.7.1 Your agency's prepaid credits are used up; sending resumes once it is topped up; try again later")
    run("billing", "credit", "acme", "1", check_rc=0)
    assert client.sendmail("app@d.example", ["a@x.test"], body) == {}
    client.quit()
    assert report(run)["total"]["emails"] == 16
    listed = json.loads(run("user", "list", "--json", check_rc=0).stdout)
    assert len(listed) == 2  # credentials kept


def test_a_body_over_the_size_limit_is_552_and_not_billed(server, run):
    """docs/servers.md: SIZE is advertised; a body over 25 MiB is refused after
    DATA (its lines are dropped as they arrive, not held) and bills nothing."""
    client = submission(server)
    assert int(client.esmtp_features["size"]) == 25 * 1024 * 1024
    client.login("app@d.example", PW)
    line = b"x" * 998 + b"\r\n"
    body = b"From: App <app@d.example>\r\n\r\n" + line * (26 * 1024 * 1024 // len(line))
    client.mail("app@d.example")
    client.rcpt("a@x.test")
    code, reply = client.data(body)
    assert (code, reply) == (552, b"Error: Too much mail data")
    assert client.sendmail("app@d.example", ["a@x.test"], "From: App <app@d.example>\r\n\r\nok\r\n") == {}
    client.quit()
    assert report(run)["total"]["emails"] == 1


def test_sigint_stops_cleanly(world, tmp_path):
    import signal

    running = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0"], tmp_path / "int.log")
    running.proc.send_signal(signal.SIGINT)
    assert running.stop() == 0
    assert "event=stopping" in running.text() and "event=stopped" in running.text()
    assert "Traceback" not in running.text()


def test_relay_with_starttls_and_auth(world, tmp_path, run):
    """The relay leg: STARTTLS (certificate verified) and AUTH with credentials
    from the environment, never argv."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from smtpctl.servers.tls import self_signed, server_context

    cert, key, _ = self_signed(tmp_path / "relay-tls", "localhost")
    seen = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            seen.append((session.auth_data, session.ssl is not None, list(envelope.rcpt_tos)))
            return "250 OK"

    def check(server, session, envelope, mechanism, data):
        ok = data.login == b"relay-user" and data.password == b"relay-secret-123"
        return AuthResult(success=ok, auth_data=data.login.decode() if ok else None)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, server_hostname="localhost",
                            tls_context=server_context(cert, key), require_starttls=True, auth_required=True,
                            authenticator=check)
    controller.start()
    relay = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--relay", f"localhost:{port}",
                     "--relay-starttls"], tmp_path / "relay-auth.log",
                    env={"SMTPCTL_RELAY_USERNAME": "relay-user", "SMTPCTL_RELAY_PASSWORD": "relay-secret-123",
                         "SSL_CERT_FILE": str(cert)})
    try:
        client = submission(relay)
        client.login("app@d.example", PW)
        client.sendmail("app@d.example", ["a@x.test", "b@x.test"], MESSAGE)
        client.quit()
    finally:
        assert relay.stop() == 0
        controller.stop()
    assert seen == [("relay-user", True, ["a@x.test", "b@x.test"])]
    assert "relay-secret-123" not in relay.text()
    assert report(run)["total"]["emails"] == 2
