"""Issue 9: serve holds every cap against racing, oversized, misaligned and
crashing senders. Real `smtpctl serve` processes, real smtplib clients."""

from __future__ import annotations

import json
import signal
import smtplib
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.servers import Running, sink_server

pytestmark = pytest.mark.e2e

PW = "Correct-Horse-Battery-Staple-42"
BODY = "From: app@d.example\r\nSubject: caps\r\n\r\nhello\r\n"
TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate; one context for every client


@pytest.fixture
def tenants(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "100", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    run("domain", "add", "news.d.example", "--account", "shop", check_rc=0)
    run("account", "add", "other", "--agency", "acme", check_rc=0)
    run("domain", "add", "other.example", "--account", "other", check_rc=0)
    run("domain", "add", "shared.acme.example", "--agency", "acme", check_rc=0)
    run("user", "create", "app@d.example", "--password-stdin", input=PW + "\n", check_rc=0)
    run("user", "create", "ceo@other.example", "--password-stdin", input=PW + "\n", check_rc=0)


def start(tmp_path: Path, *extra: str, name: str = "serve") -> Running:
    maildir = tmp_path / "maildir"
    server = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--auth-delay", "0",
                      "--maildir", str(maildir), *extra], tmp_path / f"{name}.log")
    server.maildir = maildir
    return server


def client(server: Running, login: str = "app@d.example") -> smtplib.SMTP:
    smtp = smtplib.SMTP(*server.addresses["submission"], timeout=60)
    smtp.starttls(context=TLS)
    smtp.login(login, PW)
    return smtp


def delivered(maildir: Path) -> int:
    return sum(1 for sub in ("new", "cur") for _ in (maildir / sub).iterdir())


def billed(run) -> tuple[int, int]:
    report = json.loads(run("usage", "report", "--json", check_rc=0).stdout)
    return report["total"]["messages"], report["total"]["emails"]


def test_parallel_sessions_racing_one_account_stay_within_the_bound(tenants, tmp_path, run):
    """The issue's reproduction: limit 100, 10 sessions each MAIL + 60 RCPT,
    then every DATA at once. At most one message crosses: 2 accepted (60, then
    120 crossing), 8 refused with 550 5.7.1 and not billed."""
    server = start(tmp_path)
    try:
        sessions = [client(server) for _ in range(10)]
        for smtp in sessions:
            assert smtp.mail("app@d.example")[0] == 250
            for i in range(60):
                assert smtp.rcpt(f"r{i}@x.test")[0] == 250
        barrier = threading.Barrier(len(sessions))

        def data(smtp: smtplib.SMTP) -> int:
            barrier.wait()
            try:
                return smtp.data(BODY)[0]
            except smtplib.SMTPDataError as exc:
                assert b"5.7.1" in exc.smtp_error
                return exc.smtp_code

        with ThreadPoolExecutor(len(sessions)) as pool:
            codes = list(pool.map(data, sessions))
        for smtp in sessions:
            smtp.close()
    finally:
        assert server.stop() == 0
    assert sorted(codes) == [250, 250] + [550] * 8
    assert billed(run) == (2, 120)
    assert delivered(server.maildir) == 2
    assert list((server.maildir / "tmp").iterdir()) == []
    assert server.text().count("event=message_refused") == 8


def test_many_small_messages_racing_stop_at_the_crossing(tenants, tmp_path, run):
    """40 sessions of 10 recipients on a 100/day account: exactly 11 accepted."""
    server = start(tmp_path)

    def send(i: int) -> int:
        try:
            smtp = client(server)
        except smtplib.SMTPAuthenticationError:
            return 535  # the credential was already revoked by the crossing
        try:
            smtp.sendmail("app@d.example", [f"r{i}-{j}@x.test" for j in range(10)], BODY)
            return 250
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code
        except smtplib.SMTPSenderRefused as exc:
            return exc.smtp_code
        finally:
            smtp.close()

    try:
        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(send, range(40)))
    finally:
        assert server.stop() == 0
    assert codes.count(250) == 11
    assert billed(run) == (11, 110)
    assert delivered(server.maildir) == 11


def test_recipient_cap_answers_452_past_it(tenants, tmp_path, run):
    run("account", "set-limit", "shop", "5000", check_rc=0)
    server = start(tmp_path)
    try:
        smtp = client(server)
        smtp.mail("app@d.example")
        codes = [smtp.rcpt(f"r{i}@x.test") for i in range(1001)]
        assert {c[0] for c in codes[:1000]} == {250}
        assert codes[1000] == (452, b"4.5.3 Too many recipients")
        assert smtp.rcpt("r0@x.test")[0] == 250  # a repeated address is the same recipient, not a new one
        assert smtp.data(BODY)[0] == 250
        smtp.quit()
    finally:
        assert server.stop() == 0
    assert billed(run) == (1, 1000)


def test_recipient_cap_follows_the_store_setting(tenants, tmp_path, run):
    run("store", "set", "max_recipients_per_message", "3", check_rc=0)
    server = start(tmp_path)
    try:
        smtp = client(server)
        refused = smtp.sendmail("app@d.example", ["a@x.test", "b@x.test", "c@x.test", "d@x.test"], BODY)
        smtp.quit()
    finally:
        assert server.stop() == 0
    assert refused == {"d@x.test": (452, b"4.5.3 Too many recipients")}
    assert billed(run) == (1, 3)


@pytest.mark.parametrize("sender", ["ceo@other.example", "x@paypal.com", "", "x@shared.acme.example"])
def test_sender_alignment_refuses_other_domains(tenants, tmp_path, run, sender):
    server = start(tmp_path)
    try:
        smtp = client(server)
        code, text = smtp.mail(sender)
        assert code == 553 and text.startswith(b"5.7.1 <") and b"not owned by user app@d.example" in text
        # The account's own dedicated domains are fine.
        assert smtp.mail("bounce@news.d.example")[0] == 250
        smtp.close()
    finally:
        assert server.stop() == 0
    assert "reason=sender_mismatch" in server.text()
    assert billed(run) == (0, 0)


def test_sender_alignment_can_be_turned_off(tenants, tmp_path, run):
    run("store", "set", "sender_alignment", "off", check_rc=0)
    server = start(tmp_path)
    try:
        smtp = client(server)
        smtp.sendmail("x@paypal.com", ["a@x.test"], BODY)
        smtp.quit()
    finally:
        assert server.stop() == 0
    assert billed(run) == (1, 1)


def test_kill_9_under_load_then_restart_delivered_equals_billed(tenants, tmp_path, run):
    """Repeated kill -9 of serve while 24 clients send: after each restart
    (which reconciles tmp/), the Maildir and the bill agree exactly."""
    run("account", "set-limit", "shop", "1000000", check_rc=0)
    for round_no in range(3):
        server = start(tmp_path, name=f"kill{round_no}")
        stop = threading.Event()
        sent = [0]

        def load(server=server, stop=stop, sent=sent) -> None:
            while not stop.is_set():
                try:
                    smtp = client(server)
                    while not stop.is_set():
                        smtp.sendmail("app@d.example", ["a@x.test", "b@x.test"], BODY)
                        sent[0] += 1
                except (OSError, smtplib.SMTPException):
                    time.sleep(0.01)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(24)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while sent[0] < 40 * (round_no + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=20)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.handle.close()
        assert sent[0] > 0
    # The restart reconciles what the last killed process left staged.
    server = start(tmp_path, name="after")
    assert server.stop() == 0
    messages, emails = billed(run)
    assert messages > 0 and emails == 2 * messages
    assert delivered(server.maildir) == messages
    assert list((server.maildir / "tmp").iterdir()) == []


@pytest.fixture
def picky_sink():
    """A next hop that refuses recipients named bad*, and whole messages whose
    subject says so, as real MTAs do."""

    class Picky:
        def __init__(self):
            self.envelopes = []

        async def handle_RCPT(self, server, session, envelope, address, options):
            if address.startswith("bad"):
                return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            if b"Subject: spam" in envelope.content:
                return "554 5.7.1 Message rejected as spam"
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            return "250 OK"

    with sink_server(Picky()) as handler:
        yield handler


def test_relay_refusals_reach_the_sender_and_are_not_billed(tenants, tmp_path, run, picky_sink):
    server = start(tmp_path, "--relay", f"127.0.0.1:{picky_sink.port}", name="relay")
    try:
        smtp = client(server)
        refused = smtp.sendmail("app@d.example", ["good1@x.test", "bad1@x.test", "good2@x.test", "bad2@x.test"],
                                BODY)
        assert set(refused) == {"bad1@x.test", "bad2@x.test"}
        assert refused["bad1@x.test"][0] == 550 and b"User unknown" in refused["bad1@x.test"][1]
        # Wholly refused at RCPT: the client learns it at once; nothing is billed or retried.
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("app@d.example", ["bad3@x.test"], BODY)
        # Refused at the end of DATA: refused to the client and taken off the bill.
        with pytest.raises(smtplib.SMTPDataError) as err:
            smtp.sendmail("app@d.example", ["good3@x.test"], "Subject: spam\r\n\r\nbuy\r\n")
        assert (err.value.smtp_code, err.value.smtp_error) == (554, b"5.7.1 Message rejected as spam")
        smtp.quit()
    finally:
        assert server.stop() == 0
    assert picky_sink.envelopes == [("app@d.example", ["good1@x.test", "good2@x.test"])]
    assert billed(run) == (1, 2)


def _auth(server: Running, login: str, password: str) -> int:
    smtp = smtplib.SMTP(*server.addresses["submission"], timeout=60)
    smtp.starttls(context=TLS)
    try:
        return smtp.login(login, password)[0]
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code
    finally:
        smtp.close()


def test_auth_cache_serves_repeat_logins_and_forgets_across_processes(tenants, tmp_path, run):
    """A repeat login skips the verify; a reset, a delete and a revoking block made by another
    process (the CLI) take effect at the very next AUTH."""
    server = start(tmp_path, "--max-auth-failures", "50")
    try:
        assert _auth(server, "app@d.example", PW) == 235
        assert _auth(server, "app@d.example", PW) == 235
        assert server.text().count("event=auth_ok") == 2
        assert "login=app@d.example verified=hash" in server.text()
        assert "login=app@d.example verified=cache" in server.text()
        assert _auth(server, "app@d.example", "a wrong guess") == 535  # never a cache hit

        new_pw = "A-new-password-after-reset-77"
        run("user", "reset", "app@d.example", "--password-stdin", input=new_pw + "\n", check_rc=0)
        assert _auth(server, "app@d.example", PW) == 535  # the old password is gone at once
        assert _auth(server, "app@d.example", new_pw) == 235
        assert _auth(server, "app@d.example", new_pw) == 235

        run("user", "delete", "app@d.example", "--yes", check_rc=0)
        assert _auth(server, "app@d.example", new_pw) == 535

        run("user", "create", "app@d.example", "--password-stdin", input=PW + "\n", check_rc=0)
        assert _auth(server, "app@d.example", PW) == 235
        run("account", "block", "shop", "--reason", "abuse", "--revoke", "--yes", check_rc=0)
        assert _auth(server, "app@d.example", PW) == 535
    finally:
        assert server.stop() == 0
    assert sum("event=auth_ok" in line and "verified=cache" in line for line in server.text().splitlines()) == 2
    # the revoked credential's record keeps its hash: its right password is told it was revoked (from the cache)
    assert "event=auth_revoked" in server.text() and "reason=operator_block" in server.text()
