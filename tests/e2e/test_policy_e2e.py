"""smtpctl policy serve as a real process, spoken to the way Postfix does."""

import json
import socket
from pathlib import Path

import pytest

from tests.e2e.servers import Running

pytestmark = pytest.mark.e2e

REQUEST = (Path(__file__).resolve().parents[1] / "fixtures" / "postfix" / "policy-request.txt").read_text()


@pytest.fixture
def world(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "7", check_rc=0)
    run("domain", "add", "acme.test", "--account", "shop", check_rc=0)
    run("user", "create", "bob@acme.test", "--generate", check_rc=0)


def ask(stream, text):
    stream.write(text.encode())
    stream.flush()
    answer = stream.readline().decode()
    assert stream.readline() == b"\n"  # the empty line that ends every answer
    return answer.rstrip("\n")


@pytest.mark.parametrize("over", ["tcp", "unix"])
def test_one_connection_many_requests(world, run, tmp_path, over):
    listen = "127.0.0.1:0" if over == "tcp" else f"unix:{tmp_path / 'policy.sock'}"
    server = Running(["policy", "serve", "--listen", listen], tmp_path / "policy.log")
    try:
        if over == "tcp":
            conn = socket.create_connection(server.addresses["policy"], timeout=10)
        else:
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(str(tmp_path / "policy.sock"))
        stream = conn.makefile("rwb")
        answers = [ask(stream, REQUEST.replace("instance=10b9.6b07becf.1b8d9.0", f"instance=i{n}"))
                   for n in range(4)]
        assert answers[:3] == ["action=DUNNO"] * 3  # 3, 6, then 9 > 7: the crossing message passes
        assert answers[3].startswith("action=REJECT 5.7.1")
        assert ask(stream, REQUEST.replace("sasl_username=bob@acme.test", "sasl_username=")) == "action=DUNNO"
        conn.close()
    finally:
        assert server.stop() == 0
    status = json.loads(run("usage", "status", "shop", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"], status["live_credentials"]) == (9, True, 0)
    log = server.text()
    assert "event=limit_exceeded account=shop" in log and "event=stopped" in log
