"""Large bodies go to disk, not RAM (issue 23: 20 bodies of 24 MB at once
took 579 MB of serve's memory): a real ``serve`` process, clients holding
several large bodies in DATA at once, its memory read from /proc."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from tests.e2e.servers import Running, sink_server
from tests.e2e.test_serve_e2e import PW, submission

pytestmark = pytest.mark.e2e

LINE = b"y" * 998 + b"\r\n"


@pytest.fixture
def world(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "1000", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    run("user", "create", "app@d.example", "--password-stdin", input=PW + "\n", check_rc=0)


def a_body(size: int, tag: str) -> bytes:
    """Headers, then ~size bytes of lines, some starting with a dot (which SMTP stuffs on the wire)."""
    lines = [f"From: App <app@d.example>\r\nSubject: {tag}\r\n\r\n".encode()]
    for i in range(size // len(LINE)):
        lines.append(b"." + LINE[1:] if i % 7 == 0 else LINE)
    lines.append(b"..two dots at the start\r\n")
    return b"".join(lines)


def kib(pid: int, field: str) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M)[1])


def spool_files(pid: int, spool: str) -> int:
    """Files serve holds open in the spool folder (unnamed: /proc shows them as 'DIR/#N (deleted)')."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(spool + "/"):
                count += 1
        except OSError:
            pass
    return count


def in_flight(port: int) -> int:
    """Bytes queued on the loopback TCP sockets of this port, sent and not yet read (/proc/net/tcp)."""
    total = 0
    for row in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = row.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == port or int(remote.split(":")[1], 16) == port:
            tx, rx = (int(q, 16) for q in queues.split(":"))
            total += tx + rx
    return total


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def serve(tmp_path, above: int, *extra: str) -> Running:
    return Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--spool-above", str(above),
                    "--spool-dir", str(tmp_path / "spool"), *extra], tmp_path / f"serve-{above}.log")


def in_data(running: Running):
    """A client of ``running``, authenticated, in DATA (its 354 read)."""
    client = submission(running)
    client.login("app@d.example", PW)
    client.mail("app@d.example")
    client.rcpt("a@x.test")
    client.putcmd("data")
    assert client.getreply()[0] == 354
    return client


def held_at_once(running: Running, bodies: list[bytes]) -> tuple[int, int]:
    """Send every body up to its last line on its own connection, all before
    any is ended, so serve holds them at once; then end each. Returns the
    growth of serve's peak memory (KiB) over a warmed-up server, and how many
    spool files it held open while the bodies were in DATA."""
    pid = running.proc.pid
    warm = submission(running)
    warm.login("app@d.example", PW)
    assert warm.sendmail("app@d.example", ["a@x.test"], b"From: app@d.example\r\nSubject: warm-up\r\n\r\n" + LINE) == {}
    warm.quit()
    with open(f"/proc/{pid}/clear_refs", "w") as reset:  # the peak so far (start-up's) forgotten: VmHWM = VmRSS
        reset.write("5")
    before = kib(pid, "VmHWM")
    clients = []
    for body in bodies:
        client = in_data(running)
        client.send(re.sub(rb"(?m)^\.", b"..", body))  # dot-stuffed, as smtplib's data() sends it
        clients.append(client)
    # Every body but its terminating dot is sent: they are all in DATA now, and read once the kernel holds no
    # byte of them in flight (else a body partly in socket buffers would not be in serve's memory yet).
    assert wait_for(lambda: in_flight(running.addresses["submission"][1]) == 0, 30)
    open_files = spool_files(pid, str(running.log.parent / "spool"))
    for client in clients:
        client.send(b".\r\n")
        code, reply = client.getreply()
        assert code == 250, reply
        client.quit()
    return kib(pid, "VmHWM") - before, open_files


def delivered(maildir) -> list[bytes]:
    return [p.read_bytes() for p in sorted((maildir / "new").iterdir())]


def test_large_bodies_wait_on_disk_and_are_delivered_byte_for_byte(world, tmp_path, run):
    bodies = [a_body(6 * 1024 * 1024, f"big {i}") for i in range(6)]  # 36 MiB in DATA at once
    maildir = tmp_path / "maildir"
    running = serve(tmp_path, 64 * 1024, "--maildir", str(maildir))
    try:
        growth, open_files = held_at_once(running, bodies)
        assert spool_files(running.proc.pid, str(tmp_path / "spool")) == 0  # each closed (and so gone)
    finally:
        assert running.stop() == 0, running.text()
    assert open_files >= len(bodies) - 1  # (the last may not have passed the threshold yet when looked at)
    print(f"spooled: peak memory +{growth} KiB")
    assert growth < 16 * 1024, f"serve's peak memory grew {growth} KiB for 36 MiB of bodies"
    assert os.listdir(tmp_path / "spool") == []
    got = sorted(m for m in delivered(maildir) if b"Subject: big" in m)
    assert len(got) == len(bodies) and len(delivered(maildir)) == len(bodies) + 1  # and the warm-up
    for message, body in zip(got, sorted(bodies)):
        head, _, rest = message.partition(b"\r\n")
        assert head == b"Return-Path: <app@d.example>"
        received, _, content = rest.partition(b"\r\n")
        assert received.startswith(b"Received: from ") and content == body  # the dots unstuffed, nothing lost
    emails = json.loads(run("usage", "report", "--json", check_rc=0).stdout)["total"]["emails"]
    assert emails == len(bodies) + 1  # the warm-up too


def test_the_same_bodies_held_in_memory_do_grow_it(world, tmp_path):
    """The measurement above can fail: with the threshold above every body
    (kept in memory, as before issue 23) the same load grows serve's memory
    by at least the bodies' size."""
    bodies = [a_body(6 * 1024 * 1024, f"big {i}") for i in range(6)]
    running = serve(tmp_path, 25 * 1024 * 1024, "--maildir", str(tmp_path / "maildir"))
    try:
        growth, open_files = held_at_once(running, bodies)
    finally:
        assert running.stop() == 0, running.text()
    print(f"in memory: peak memory +{growth} KiB")
    assert open_files == 0
    assert growth > 30 * 1024, growth


def test_a_spooled_body_is_relayed_whole_with_its_dots(world, tmp_path, run):
    class Collect:
        def __init__(self):
            self.contents = []

        async def handle_DATA(self, server, session, envelope):
            self.contents.append(envelope.original_content)
            return "250 OK"

    body = a_body(300 * 1024, "relayed")
    with sink_server(Collect()) as sink:
        running = serve(tmp_path, 1024, "--relay", f"127.0.0.1:{sink.port}")
        try:
            client = submission(running)
            client.login("app@d.example", PW)
            assert client.sendmail("app@d.example", ["a@x.test", "b@x.test"], body) == {}
            small = b"From: app@d.example\r\n\r\n.one dot\r\n"  # below the threshold: in memory
            assert client.sendmail("app@d.example", ["a@x.test"], small) == {}
            client.quit()
        finally:
            assert running.stop() == 0, running.text()
    assert [c.partition(b"\r\n")[2] for c in sink.contents] == [body, small]
    assert all(c.startswith(b"Received: from ") for c in sink.contents)
    assert json.loads(run("usage", "report", "--json", check_rc=0).stdout)["total"]["emails"] == 3


def test_a_client_gone_in_the_middle_of_a_spooled_body_leaves_nothing(world, tmp_path, run):
    running = serve(tmp_path, 1024, "--maildir", str(tmp_path / "maildir"))
    try:
        client = in_data(running)
        client.send(LINE * 200)
        assert wait_for(lambda: spool_files(running.proc.pid, str(tmp_path / "spool")) == 1)
        client.sock.shutdown(socket.SHUT_RDWR)
        client.close()
        after = submission(running)  # serve goes on
        after.login("app@d.example", PW)
        assert after.sendmail("app@d.example", ["a@x.test"], b"From: app@d.example\r\n\r\nok\r\n") == {}
        after.quit()
        assert wait_for(lambda: spool_files(running.proc.pid, str(tmp_path / "spool")) == 0)
    finally:
        assert running.stop() == 0, running.text()
    assert "Traceback" not in running.text()
    assert json.loads(run("usage", "report", "--json", check_rc=0).stdout)["total"]["emails"] == 1
    assert len(os.listdir(tmp_path / "maildir" / "new")) == 1


def test_a_spool_folder_serve_cannot_write_is_refused_at_start(world, tmp_path):
    (tmp_path / "not-a-folder").write_text("x")
    with pytest.raises(AssertionError, match="exited 2"):
        Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                 "--spool-dir", str(tmp_path / "not-a-folder" / "spool")], tmp_path / "bad.log")
    assert "cannot use the spool folder" in (tmp_path / "bad.log").read_text()


def test_check_says_where_bodies_go(world, tmp_path, run):
    done = run("serve", "--check", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--spool-above", "1000",
               "--spool-dir", str(tmp_path / "sp"), check_rc=0)
    assert done.stderr.splitlines()[-1].endswith(f"bodies over 1000 bytes spooled to {tmp_path / 'sp'}.")


def test_the_data_replies_are_aiosmtpds(world, tmp_path):
    """DATA's own replies are aiosmtpd's: 503 without RCPT, 501 with an argument, 500 for a long line."""
    running = serve(tmp_path, 1024, "--maildir", str(tmp_path / "maildir"))
    try:
        client = submission(running)
        client.login("app@d.example", PW)
        assert client.docmd("DATA") == (503, b"Error: need RCPT command")
        client.mail("app@d.example")
        client.rcpt("a@x.test")
        assert client.docmd("DATA", "x") == (501, b"Syntax: DATA")
        assert client.data(b"From: app@d.example\r\n\r\n" + LINE * 5 + b"z" * 5000 + b"\r\n" + LINE * 5) == (
            500, b"Line too long (see RFC5321 4.5.3.1.6)")
        client.mail("app@d.example")
        client.rcpt("a@x.test")
        assert client.data(b"From: app@d.example\r\n\r\n" + LINE * 5)[0] == 250  # the session goes on
        client.quit()
    finally:
        assert running.stop() == 0, running.text()


def test_a_from_hidden_after_a_bare_lf_is_refused_spooled_or_not(world, tmp_path, run):
    """A bare LF ends a header line for mail readers: another tenant's From
    there is refused, whether the body is held in memory or on disk."""
    running = serve(tmp_path, 4096, "--maildir", str(tmp_path / "maildir"))
    try:
        client = submission(running)
        client.login("app@d.example", PW)
        for padding in (b"", LINE * 10):  # in memory; past --spool-above
            hidden = b"From: app@d.example\r\nX-Note: hi\nFrom: ceo@rival.example\r\n" + padding + b"\r\nbody\r\n"
            client.mail("app@d.example")
            client.rcpt("a@x.test")
            assert client.data(hidden) == (
                550, b"5.7.1 <ceo@rival.example>: header From address not owned by user app@d.example")
        client.quit()
    finally:
        assert running.stop() == 0, running.text()
    assert json.loads(run("usage", "report", "--json", check_rc=0).stdout)["total"]["emails"] == 0


def test_a_line_that_never_ends_is_refused_and_not_kept(world, tmp_path):
    """aiosmtpd keeps the pieces of an over-long data line until its CRLF: a
    client sending 30 MiB with no line end held 30 MiB of serve's memory.
    Here it is refused (500, once the data ends) and nothing of it is kept."""
    running = serve(tmp_path, 64 * 1024, "--maildir", str(tmp_path / "maildir"))
    pid = running.proc.pid
    try:
        warm = submission(running)
        warm.login("app@d.example", PW)
        assert warm.sendmail("app@d.example", ["a@x.test"], b"From: app@d.example\r\n\r\nwarm\r\n") == {}
        warm.quit()
        with open(f"/proc/{pid}/clear_refs", "w") as reset:
            reset.write("5")
        before = kib(pid, "VmHWM")
        client = in_data(running)
        for _ in range(30):
            client.send(b"z" * (1024 * 1024))  # 30 MiB, no line end
        client.send(b"\r\n.\r\n")
        assert client.getreply() == (500, b"Line too long (see RFC5321 4.5.3.1.6)")
        growth = kib(pid, "VmHWM") - before
        client.quit()
    finally:
        assert running.stop() == 0, running.text()
    assert growth < 16 * 1024, f"serve's peak memory grew {growth} KiB for one 30 MiB line"
