"""`smtpctl policy serve` against every protocol state, hostile clients and a
second process on the same store: real processes, real sockets."""

import json
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.store import Store
from tests.e2e.servers import Running

pytestmark = pytest.mark.e2e

REQUEST = (Path(__file__).resolve().parents[1] / "fixtures" / "postfix" / "policy-request.txt").read_text()
STATES = ["CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"]
REVOKED = "action=REJECT 5.7.1 SMTP credentials revoked: daily sending limit exceeded or removed; contact support"
MALFORMED = "action=DEFER_IF_PERMIT 4.5.0 Malformed policy request"


def request(**changes: str) -> str:
    """The real request Postfix sent (tests/fixtures), with some attributes changed."""
    lines = []
    for line in REQUEST.strip("\n").split("\n"):
        name = line.partition("=")[0]
        if name in changes:
            line = f"{name}={changes.pop(name)}"
        lines.append(line)
    lines += [f"{name}={value}" for name, value in changes.items()]
    return "\n".join(lines) + "\n\n"


class Client:
    def __init__(self, server: Running, where: str | Path):
        if isinstance(where, Path):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(30)
            self.sock.connect(str(where))
        else:
            self.sock = socket.create_connection(server.addresses["policy"], timeout=30)
        self.stream = self.sock.makefile("rwb")

    def ask(self, text: str | bytes) -> str:
        self.stream.write(text.encode() if isinstance(text, str) else text)
        self.stream.flush()
        answer = self.stream.readline().decode()
        assert self.stream.readline() == b"\n"  # the empty line that ends every answer
        return answer.rstrip("\n")

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def sent(run, account="shop") -> int:
    return json.loads(run("usage", "status", account, "--json", check_rc=0).stdout)[0]["sent"]


def events(server: Running, name: str) -> list[str]:
    return [line for line in server.text().splitlines() if f" event={name} " in line + " "]


def build(db: Path, accounts: dict[str, tuple[int | None, list[str], list[str]]]) -> None:
    """Set the store up in-process (fast); the servers under test are real processes."""
    with Store.open(db) as store:
        add_agency(store, "acme")
        for account, (limit, domains, logins) in accounts.items():
            add_account(store, account, "acme", daily_limit=limit)
            for domain in domains:
                add_domain(store, domain, account=account)
            for login in logins:
                create_credential(store, login, "a good long password")


@pytest.fixture
def world(isolated_store):
    build(isolated_store, {"shop": (5000, ["acme.test", "news.acme.test"], ["bob@acme.test"]),
                           "other": (None, ["other.test"], ["eve@other.test"])})


@pytest.fixture
def policy(world, tmp_path):
    servers = []

    def start(*args: str, env: dict[str, str] | None = None, name: str = "policy") -> Running:
        server = Running(["policy", "serve", *(args or ("--listen", "127.0.0.1:0"))], tmp_path / f"{name}.log",
                         env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.stop() == 0
        assert "Traceback" not in server.text()


def test_every_state_gets_an_answer_and_only_end_of_message_meters(policy, run, tmp_path):
    server = policy("--listen", f"unix:{tmp_path / 'p.sock'}")
    client = Client(server, tmp_path / "p.sock")
    answers = {state: client.ask(request(protocol_state=state, instance=f"i-{state}")) for state in STATES}
    # Postfix's requests before AUTH carry no sasl_username: not ours to judge either.
    anonymous = {state: client.ask(request(protocol_state=state, sasl_username="", instance=f"a-{state}"))
                 for state in STATES}
    client.close()
    assert answers == {state: "action=DUNNO" for state in STATES}
    assert anonymous == {state: "action=DUNNO" for state in STATES}
    assert sent(run) == 3  # END-OF-MESSAGE only, once
    logged = events(server, "policy")
    assert len(logged) == 2 * len(STATES)  # one line per request
    assert [line.split(" state=")[1].split()[0] for line in logged[:len(STATES)]] == STATES


def test_revoked_credential_is_refused_in_every_state_it_sends_from(policy, run):
    server = policy()
    run("user", "delete", "bob@acme.test", "--yes", check_rc=0)
    client = Client(server, "tcp")
    for state in ("MAIL", "RCPT", "DATA", "END-OF-MESSAGE"):
        assert client.ask(request(protocol_state=state)) == REVOKED, state
    client.close()
    assert sent(run) == 0


def test_recipient_cap_rejects_without_metering(policy, run):
    server = policy()
    client = Client(server, "tcp")
    too_many = "action=REJECT 5.5.3 Too many recipients"
    assert client.ask(request(protocol_state="DATA", recipient_count="1001")) == too_many  # before the body
    assert client.ask(request(recipient_count="1001", instance="m1")) == too_many
    assert client.ask(request(recipient_count="1000000000000", instance="m2")) == too_many
    assert client.ask(request(recipient_count="9" * 5000, instance="m3")) == too_many
    for garbage in ("-3", "abc", "1e3", "+5", "٣"):
        assert client.ask(request(recipient_count=garbage, instance=f"g{garbage}")) == MALFORMED, garbage
    assert client.ask(request(recipient_count="1000", instance="m4")) == "action=DUNNO"
    assert sent(run) == 1000
    run("store", "set", "max_recipients_per_message", "5", check_rc=0)  # read live, no restart
    assert client.ask(request(recipient_count="6", instance="m5")) == too_many
    assert client.ask(request(recipient_count="5", instance="m6")) == "action=DUNNO"
    client.close()
    assert sent(run) == 1005
    assert json.loads(run("account", "show", "shop", "--json", check_rc=0).stdout)["blocked"] is False


@pytest.mark.parametrize("state", ["MAIL", "RCPT", "END-OF-MESSAGE"])
def test_sender_alignment(policy, run, state):
    server = policy()
    client = Client(server, "tcp")
    for sender in ("ceo@other.test", "x@paypal.com", "", "not-an-address", "bob@acme.test.evil.example"):
        answer = client.ask(request(protocol_state=state, sender=sender, instance=f"s-{sender}"))
        assert answer.startswith(f"action=REJECT 5.7.1 Sender address <{sender}> not owned by user "
                                 "bob@acme.test"), (sender, answer)
    for sender in ("bob@acme.test", "News@NEWS.acme.test", "anyone@acme.test"):
        assert client.ask(request(protocol_state=state, sender=sender, instance=f"ok-{sender}")) == "action=DUNNO"
    assert sent(run) == (9 if state == "END-OF-MESSAGE" else 0)  # refused ones are not billed
    run("store", "set", "sender_alignment", "off", check_rc=0)
    assert client.ask(request(protocol_state=state, sender="x@paypal.com", instance="off")) == "action=DUNNO"
    client.close()
    assert len(events(server, "policy")) == 9
    assert sum("reason=sender_mismatch" in line for line in events(server, "policy")) == 5


def test_oversized_and_malformed_requests(policy, run, tmp_path):
    server = policy("--listen", f"unix:{tmp_path / 'p.sock'}")
    for hostile in (b"x" * (1024 * 1024),                  # 1 MB, no newline
                    b"name=" + b"y" * (1024 * 1024) + b"\n\n",  # 1 MB line
                    request(protocol_state="RCPT").replace("\n\n", "\n").encode() + b"a=b\n" * 400 + b"\n",
                    b"request=smtpd_access_policy\n"):        # cut short: the client closes mid-request
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(30)
        conn.connect(str(tmp_path / "p.sock"))
        try:
            conn.sendall(hostile)
            if hostile.endswith(b"policy\n"):
                conn.shutdown(socket.SHUT_WR)
            assert conn.recv(100) == b""  # closed, no answer
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while we were still writing
        finally:
            conn.close()
    refused = events(server, "policy_refused")
    assert len(refused) == 4, server.text()
    assert all("peer=unix" in line and f"peer_uid={os.getuid()}" in line for line in refused)
    # Answered, and the connection keeps serving:
    client = Client(server, tmp_path / "p.sock")
    assert client.ask("request=smtpd_access_policy\nno equals sign here\n\n") == MALFORMED
    assert client.ask("protocol_state=RCPT\n\n") == MALFORMED  # no request=smtpd_access_policy
    assert client.ask(request(helo_name="caf\xe9").encode("latin-1")) == "action=DUNNO"  # 8-bit: read, metered
    assert client.ask(request(instance="after")) == "action=DUNNO"
    client.close()
    assert sent(run) == 6
    assert "Traceback" not in server.text()


def test_store_error_defers_with_one_log_line(policy, run, isolated_store):
    server = policy(env={"SMTPCTL_BUSY_TIMEOUT": "0.2"})
    client = Client(server, "tcp")
    # Another writer holds the store's write lock past the busy timeout.
    with Store.open(isolated_store) as holder, holder.write():
        assert client.ask(request()) == "action=DEFER_IF_PERMIT 4.3.0 Policy service error; try again later"
    assert client.ask(request()) == "action=DUNNO"  # Postfix's retry is metered once
    client.close()
    assert sent(run) == 3
    deferred = [line for line in server.text().splitlines() if "DEFER_IF_PERMIT" in line]
    assert len(deferred) == 1 and "error=StoreError" in deferred[0] and "locked" in deferred[0]


def test_unix_socket_mode_group_and_stale_file(policy, run, tmp_path):
    path = tmp_path / "p.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on: what a killed server leaves
    stale.close()
    server = policy("--listen", f"unix:{path}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660 and stat.S_ISSOCK(os.stat(path).st_mode)
    # A live socket is not taken over: the second server refuses to start.
    second = run("policy", "serve", "--listen", f"unix:{path}")
    assert (second.returncode, second.stderr) == (2, f"Error: another server is listening on {path}\n")
    client = Client(server, path)
    assert client.ask(request()) == "action=DUNNO"
    client.close()
    assert server.stop() == 0
    assert not path.exists()  # removed on a clean stop

    server = policy("--listen", f"unix:{path}", "--socket-mode", "0600", "--socket-group", "0", name="p2")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.stat(path).st_gid == 0
    assert "mode=0600 gid=0" in server.text()


def test_socket_group_by_name(policy, tmp_path):
    import grp

    try:
        gid = grp.getgrnam("postfix").gr_gid
    except KeyError:
        pytest.skip("no postfix group on this machine")
    if os.getuid() != 0 and gid not in os.getgroups():
        pytest.skip("not allowed to give a socket to the postfix group")
    policy("--listen", f"unix:{tmp_path / 'p.sock'}", "--socket-group", "postfix")
    assert os.stat(tmp_path / "p.sock").st_gid == gid
    assert stat.S_IMODE(os.stat(tmp_path / "p.sock").st_mode) == 0o660


@pytest.mark.parametrize("args, error", [
    (["--listen", "unix:{tmp}/p.sock", "--socket-mode", "rw"],
     "Error: --socket-mode takes octal permission bits such as 0660, not 'rw'"),
    (["--listen", "unix:{tmp}/p.sock", "--socket-mode", "4770"],
     "Error: --socket-mode 4770: only permission bits (at most 0777), no setuid/setgid/sticky"),
    (["--listen", "unix:{tmp}/p.sock", "--socket-group", "no-such-group"],
     "Error: --socket-group: no group named 'no-such-group'"),
    (["--listen", "127.0.0.1:0", "--socket-mode", "0600"],
     "Error: --socket-mode and --socket-group need --listen unix:PATH"),
    (["--listen", "unix:{tmp}/file"], "Error: {tmp}/file exists and is not a socket; not replacing it"),
    (["--listen", "unix:{tmp}/no/p.sock"], "Error: --listen unix:{tmp}/no/p.sock: the folder {tmp}/no does not exist"),
    (["--listen", "unix:{tmp}/" + "s" * 110],
     "Error: --listen unix:{tmp}/" + "s" * 110 + ": a unix socket path may be at most 107 bytes"),
    (["--listen", "unix:"], "Error: --listen unix:PATH needs a path"),
    (["--listen", "localhost"], "Error: --listen takes HOST:PORT, not 'localhost'"),
])
def test_bad_socket_options(run, tmp_path, args, error):
    (tmp_path / "file").write_text("keep me")
    result = run("policy", "serve", *[a.format(tmp=tmp_path) for a in args])
    assert (result.returncode, result.stdout, result.stderr) == (2, "", error.format(tmp=tmp_path) + "\n")
    assert (tmp_path / "file").read_text() == "keep me" and not (tmp_path / "p.sock").exists()


def race(servers: list[Running], login: str, tag: str, requests: int = 40) -> list[str]:
    """``requests`` END-OF-MESSAGE requests of 10 recipients for ``login``, sent at once (a barrier),
    split between ``servers``: the answers."""
    answers: list[str] = []
    lock, barrier = threading.Lock(), threading.Barrier(requests)

    def one(i: int) -> None:
        client = Client(servers[i % len(servers)], "tcp")
        try:
            barrier.wait()
            answer = client.ask(request(sasl_username=login, sender=login, recipient_count="10",
                                        instance=f"r{tag}-{i}", queue_id=f"Q{tag}x{i}"))
        finally:
            client.close()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def test_two_processes_one_store_hold_the_hard_cap(run, tmp_path, isolated_store):
    logins = [f"app@race{n}.test" for n in range(3)]
    build(isolated_store, {f"race{n}": (100, [f"race{n}.test"], [login]) for n, login in enumerate(logins)})
    servers = [Running(["policy", "serve", "--listen", "127.0.0.1:0"], tmp_path / f"p{i}.log") for i in range(2)]
    try:
        for n, login in enumerate(logins):
            answers = race(servers, login, str(n))
            assert len(answers) == 40
            assert answers.count("action=DUNNO") == 11, (n, answers)  # 10 under the limit + the crossing one
            assert sum(a.startswith("action=REJECT 5.7.1") for a in answers) == 29
            status = json.loads(run("usage", "status", f"race{n}", "--json", check_rc=0).stdout)[0]
            assert (status["sent"], status["blocked"], status["live_credentials"]) == (110, True, 0)
    finally:
        for server in servers:
            assert server.stop() == 0
    for server in servers:
        assert "Traceback" not in server.text()
        assert len(events(server, "policy")) == 60  # 20 requests per round, 3 rounds


def test_real_postfix_asks_over_a_0660_socket_in_private(run, tmp_path, isolated_store):
    """Postfix's smtpd (user postfix) reaches the socket through its group, and
    refuses at RCPT time what the policy service refuses there."""
    import smtplib
    import ssl

    from tests.e2e.postfix_rig import PostfixRig, missing_tools

    missing = missing_tools()
    if missing or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"the Postfix rig needs root and {missing}: .ci/run installs postfix and dovecot-core")
        pytest.skip(f"needs root and {missing}")
    passwords = {"bob@acme.test": "Bob-Password-456", "ann@acme.test": "Ann-Password-789"}
    build(isolated_store, {"shop": (1000, ["acme.test"], []), "other": (None, ["other.test"], [])})
    for login, password in passwords.items():
        run("user", "create", login, "--password-stdin", input=password + "\n", check_rc=0)
    rig = PostfixRig(passwd=tmp_path / "unused", policy="unix:private/smtpctl-policy")
    rig.passwd = rig.root / "smtpctl.passwd"
    run("export", "--format", "dovecot", "--output", str(rig.passwd), "--group", "dovecot", check_rc=0)
    policy = None
    try:
        rig.start()
        socket_path = rig.spool / "private" / "smtpctl-policy"
        policy = Running(["policy", "serve", "--listen", f"unix:{socket_path}", "--socket-group", "postfix"],
                         tmp_path / "policy.log")
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
        service = f"127.0.0.1:{rig.submission_port}"
        rig._postconf("-e", "smtpctl_rcpt_restrictions = check_policy_service unix:private/smtpctl-policy, "
                            "permit_sasl_authenticated, reject")
        rig._postconf("-P", f"{service}/inet/smtpd_recipient_restrictions=$smtpctl_rcpt_restrictions")
        subprocess.run(["postfix", "-c", str(rig.pf_dir), "reload"], check=True, capture_output=True)

        def send(login: str, sender: str, recipients: list[str]) -> dict:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            with smtplib.SMTP("127.0.0.1", rig.submission_port, timeout=60) as client:
                client.starttls(context=context)
                client.login(login, passwords[login])
                return client.sendmail(sender, recipients, f"From: {sender}\r\nSubject: t\r\n\r\nhi\r\n")

        assert send("bob@acme.test", "bob@acme.test", ["a@ext.test", "b@ext.test"]) == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send("bob@acme.test", "ceo@other.test", ["a@ext.test"])
        code, text = refused.value.recipients["a@ext.test"]
        assert (code, text) == (554, b"5.7.1 <a@ext.test>: Recipient address rejected: "
                                     b"Sender address <ceo@other.test> not owned by user bob@acme.test")
        run("store", "set", "max_recipients_per_message", "2", check_rc=0)
        with pytest.raises(smtplib.SMTPDataError) as too_many:
            send("ann@acme.test", "ann@acme.test", ["a@ext.test", "b@ext.test", "c@ext.test"])
        assert (too_many.value.smtp_code, too_many.value.smtp_error) == (
            554, b"5.5.3 <END-OF-MESSAGE>: End-of-data rejected: Too many recipients")
        run("user", "delete", "ann@acme.test", "--yes", check_rc=0)  # Dovecot's passwd-file still has it
        with pytest.raises(smtplib.SMTPRecipientsRefused) as revoked:
            send("ann@acme.test", "ann@acme.test", ["a@ext.test"])
        assert b"SMTP credentials revoked" in revoked.value.recipients["a@ext.test"][1]
        assert sent(run) == 2
    finally:
        rig.stop()
        if policy is not None:
            assert policy.stop() == 0
            assert "Traceback" not in policy.text()
        rig.cleanup()
    log = policy.text()
    assert "state=RCPT" in log and "state=END-OF-MESSAGE" in log


def test_port_in_use_is_one_error_exit_9(world, run):
    """issue 10: a port in use is one Error line naming the address, exit 9 (docs/exit-codes.md), and
    --check tries the bind too."""
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        taken = occupant.getsockname()[1]
        for check in ([], ["--check"]):
            proc = run("policy", "serve", *check, "--listen", f"127.0.0.1:{taken}")
            assert (proc.returncode, proc.stderr) == (
                9, f"Error: cannot listen on 127.0.0.1:{taken}: address already in use\n")
