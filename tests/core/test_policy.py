"""The policy decision, from the real request block Postfix sent (tests/fixtures)."""

import asyncio
import os
import socket
import stat
from functools import partial
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpctl.core.directory.accounts import add_account, set_account_limit
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.settings import set_setting
from smtpctl.core.metering.enforcement import block_account
from smtpctl.core.metering.live import run_steps
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.reporting.status import usage_status
from smtpctl.core.store import Store
from smtpctl.servers.metrics import NOOP
from smtpctl.servers.policy.decision import check, check_and_admit, login_of, metered, parse_count, settle
from smtpctl.servers.policy.protocol import MalformedRequest, parse_request
from smtpctl.servers.policy.socket import UnixListen, bind_unix, parse_socket_group, parse_socket_mode

REQUEST = (Path(__file__).resolve().parents[1] / "fixtures" / "postfix" / "policy-request.txt").read_text()
PW = "a good long password"


def answer(store, attrs):
    """What the server answers a request (PolicyServer.ask): END-OF-MESSAGE as a step of group commit
    (``check_and_admit`` in ``run_steps``), any other state as a read (``check``); then ``settle``."""
    if metered(attrs):
        [result] = run_steps(store, [partial(check_and_admit, attrs=attrs)], logins=[login_of(attrs)])
        if isinstance(result, Exception):
            raise result
    else:
        result = check(store, attrs)
    return settle(result)


def request(**changes):
    attrs = parse_request(REQUEST.splitlines())
    attrs.update(changes)
    return attrs


@pytest.fixture
def store(store_at):
    with Store.open(store_at) as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme", daily_limit=7)
        add_domain(s, "acme.test", account="shop")
        create_credential(s, "bob@acme.test", PW)
        yield s


def test_the_real_request_parses():
    attrs = parse_request(REQUEST.splitlines())
    assert (attrs["request"], attrs["protocol_state"], attrs["sasl_username"], attrs["recipient_count"],
            attrs["instance"]) == ("smtpd_access_policy", "END-OF-MESSAGE", "bob@acme.test", "3",
                                   "10b9.6b07becf.1b8d9.0")
    assert attrs["recipient"] == ""  # empty values are kept


def test_meters_once_per_instance(store):
    assert answer(store, request())[0] == "DUNNO"
    assert answer(store, request())[0] == "DUNNO"  # Postfix asking again: not billed twice
    assert usage_status(store, "shop")[0]["sent"] == 3


def test_crossing_message_is_accepted_then_rejects(store):
    assert answer(store, request(instance="a"))[0] == "DUNNO"  # 3
    assert answer(store, request(instance="b"))[0] == "DUNNO"  # 6
    action, info = answer(store, request(instance="c"))  # 9 > 7: accepted, recorded, revoked
    assert action == "DUNNO" and info["metered"]
    action, info = answer(store, request(instance="d"))
    assert action.startswith("REJECT 5.7.1") and info["reason"] == "revoked"
    assert usage_status(store, "shop")[0]["sent"] == 9
    assert store.credentials() == []


def test_a_repeated_request_for_a_billed_message_is_not_bounced_after_the_crossing(store):
    # issue 23: Postfix asks again about a message whose answer it lost (a node died after billing it); the
    # account crossed its limit in between. The message was sent and billed: DUNNO, not "credentials revoked".
    for instance in ("a", "b", "c"):  # 3, 6, then 9 > 7 crosses and revokes
        assert answer(store, request(instance=instance))[0] == "DUNNO"
    assert store.credentials() == []
    for instance in ("a", "c"):  # an earlier message of the day, and the crossing one
        action, info = answer(store, request(instance=instance))
        assert (action, info["reason"], info["metered"]) == ("DUNNO", "already recorded", False)
    assert answer(store, request(instance="new"))[0].startswith("REJECT 5.7.1")  # a new message still bounces
    assert usage_status(store, "shop")[0]["sent"] == 9


def test_unauthenticated_and_unknown_senders_are_not_ours(store):
    assert answer(store, request(sasl_username=""))[0] == "DUNNO"
    assert answer(store, request(sasl_username="someone@elsewhere.test"))[0] == "DUNNO"
    assert usage_status(store, "shop")[0]["sent"] == 0


def test_manual_block_stops_creation_not_sending(store):
    # docs/rules.md: a manual block stops credential creation only; --revoke stops sending.
    block_account(store, "shop", "compliance")
    assert answer(store, request(protocol_state="RCPT"))[0] == "DUNNO"
    assert answer(store, request(instance="m1"))[0] == "DUNNO"
    assert usage_status(store, "shop")[0]["sent"] == 3


def test_revoking_block_is_rejected_at_any_state(store):
    block_account(store, "shop", "compliance", revoke=True)
    for state in ("RCPT", "END-OF-MESSAGE"):
        action, info = answer(store, request(protocol_state=state))
        assert action.startswith("REJECT 5.7.1 SMTP credentials revoked") and info["reason"] == "revoked"
    assert usage_status(store, "shop")[0]["sent"] == 0


def test_other_states_do_not_meter(store):
    assert answer(store, request(protocol_state="RCPT"))[0] == "DUNNO"
    assert usage_status(store, "shop")[0]["sent"] == 0


STATES = ["CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"]


def test_every_state_has_an_answer_and_a_state_in_its_log_fields(store):
    for state in STATES:
        action, info = answer(store, request(protocol_state=state))
        assert (action, info["state"], info["login"]) == ("DUNNO", state, "bob@acme.test")
    assert usage_status(store, "shop")[0]["sent"] == 3  # END-OF-MESSAGE only


def test_sender_alignment_from_mail_on(store):
    add_account(store, "other", "acme")
    add_domain(store, "other.test", account="other")
    for state in ("MAIL", "RCPT", "DATA", "END-OF-MESSAGE"):
        for sender in ("ceo@other.test", "", "x@paypal.com"):
            action, info = answer(store, request(protocol_state=state, sender=sender, instance=f"{state}{sender}"))
            assert action == f"REJECT 5.7.1 Sender address <{sender}> not owned by user bob@acme.test"
            assert info["reason"] == "sender_mismatch" and info["sender"] == (sender or "<>")
    # Before MAIL, Postfix's sender= is empty because there is none yet: not a null sender.
    assert answer(store, request(protocol_state="EHLO", sender=""))[0] == "DUNNO"
    # A request that does not carry sender= at all (not Postfix) says nothing to align.
    attrs = request(instance="no-sender")
    del attrs["sender"]
    assert answer(store, attrs)[0] == "DUNNO"
    assert usage_status(store, "shop")[0]["sent"] == 3  # that one only: refused ones are not billed
    set_setting(store, "sender_alignment", "off")
    assert answer(store, request(protocol_state="RCPT", sender="ceo@other.test"))[0] == "DUNNO"


@pytest.mark.parametrize("count, action", [
    ("1001", "REJECT 5.5.3 Too many recipients"),
    ("1000000000000", "REJECT 5.5.3 Too many recipients"),
    ("9" * 10_000, "REJECT 5.5.3 Too many recipients"),
    ("-3", "DEFER_IF_PERMIT 4.5.0 Malformed policy request"),
    ("three", "DEFER_IF_PERMIT 4.5.0 Malformed policy request"),
    ("+3", "DEFER_IF_PERMIT 4.5.0 Malformed policy request"),
    ("3_0", "DEFER_IF_PERMIT 4.5.0 Malformed policy request"),
])
def test_absurd_or_garbage_counts_are_never_metered(store, count, action):
    set_account_limit(store, "shop", 10_000_000)
    for state in ("DATA", "END-OF-MESSAGE"):
        assert answer(store, request(protocol_state=state, recipient_count=count))[0] == action
    assert usage_status(store, "shop")[0]["sent"] == 0
    assert store.credentials() != []


def test_recipient_cap_follows_the_setting(store):
    set_setting(store, "max_recipients_per_message", "2")
    action, info = answer(store, request())
    assert (action, info["reason"], info["metered"]) == ("REJECT 5.5.3 Too many recipients", "too_many_recipients",
                                                         False)
    assert answer(store, request(recipient_count="2"))[0] == "DUNNO"
    assert usage_status(store, "shop")[0]["sent"] == 2


@pytest.mark.parametrize("missing", ["instance", "recipient_count", "both"])
def test_an_end_of_message_request_it_cannot_meter_is_deferred_not_let_through(store, missing):
    # issue 23: answered DUNNO unmetered, such a request let a message through uncapped and unbilled
    attrs = request()
    for name in (("instance", "recipient_count") if missing == "both" else (missing,)):
        attrs.pop(name)
    attrs.pop("queue_id", None)
    action, info = answer(store, attrs)
    assert (action, info["metered"]) == ("DEFER_IF_PERMIT 4.5.0 Malformed policy request", False)
    assert info["reason"] == ("no recipient_count to meter by" if missing != "instance" else "no instance to meter by")
    assert usage_status(store, "shop")[0]["sent"] == 0
    # DATA has no message yet: a missing count there is no refusal
    assert answer(store, {**attrs, "protocol_state": "DATA"})[0] == "DUNNO"


def test_a_count_of_zero_at_end_of_message_meters_nothing(store):
    action, info = answer(store, request(recipient_count="0"))
    assert (action, info["reason"], info["metered"]) == ("DUNNO", "nothing to meter", False)


def test_not_a_policy_request_is_malformed(store):
    assert answer(store, request(request="junk"))[0] == "DEFER_IF_PERMIT 4.5.0 Malformed policy request"


def test_parse_request_refuses_lines_without_a_name():
    with pytest.raises(MalformedRequest):
        parse_request(["request=smtpd_access_policy", "no equals sign"])
    with pytest.raises(MalformedRequest):
        parse_request(["=value"])
    assert parse_request(["a=b=c", "", "d=", "e=tab\tok"]) == {"a": "b=c", "d": "", "e": "tab\tok"}
    for control in ("\r", "\x00", "\x1b", "\x7f"):
        with pytest.raises(MalformedRequest, match="a control character in 'sasl_username'"):
            parse_request([f"sasl_username=bob@acme.test{control}event=limit_exceeded"])


def test_an_overlong_instance_is_malformed_not_stored(store):
    assert answer(store, request(instance="i" * 129))[0] == "DEFER_IF_PERMIT 4.5.0 Malformed policy request"
    assert answer(store, request(instance="i" * 128))[0] == "DUNNO"
    assert usage_status(store, "shop")[0]["sent"] == 3


def parse_line_by_line(block):
    """parse_request before it searched the whole request for a control character at once:
    the reference its answers (and its errors) must match."""
    import re

    attrs = {}
    for line in block:
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise MalformedRequest("a line without name=value")
        if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line):
            raise MalformedRequest(f"a control character in {name.strip()[:40]!r}")
        attrs[name.strip()] = value
    return attrs


@settings(max_examples=300)
@given(st.lists(st.one_of(st.sampled_from(["a=b", "=", " x =1", "", "no equals", "c=\x1b", "d\x00=e", "f=\t"]),
                          st.text(alphabet=st.characters(max_codepoint=0x80), max_size=12)), max_size=8))
def test_parse_request_answers_as_line_by_line(block):
    def outcome(parse):
        try:
            return parse(block)
        except MalformedRequest as exc:
            return f"malformed: {exc}"

    assert outcome(parse_request) == outcome(parse_line_by_line)


@pytest.mark.parametrize("text, count", [("0", 0), ("", 0), (" 12 ", 12), ("000", 0), ("9" * 30, 10**18),
                                         ("-1", None), ("1.5", None), ("١٢", None), ("0x10", None)])
def test_parse_count(text, count):
    assert parse_count(text) == count


@given(st.one_of(st.none(), st.text(alphabet=st.sampled_from("0129 -+.x\u0662\u00b2\uff11"), max_size=22)))
def test_parse_count_takes_ascii_digits_only(text):
    import re

    stripped = (text or "").strip() or "0"
    expected = (int(stripped) if len(stripped) <= 18 else 10**18) if re.fullmatch(r"[0-9]+", stripped) else None
    assert parse_count(text) == expected


@pytest.mark.parametrize("text, mode", [("0660", 0o660), ("660", 0o660), ("0o600", 0o600), ("0777", 0o777),
                                        ("0", 0)])
def test_socket_mode(text, mode):
    assert parse_socket_mode(text) == mode


@pytest.mark.parametrize("text", ["", "rw-rw----", "0x1ff", "1777", "4660", "0888", "-660", "77777"])
def test_bad_socket_mode(text):
    with pytest.raises(InvalidInput):
        parse_socket_mode(text)


def test_socket_group():
    import grp

    assert parse_socket_group("0") == 0
    assert parse_socket_group(grp.getgrgid(os.getgid()).gr_name) == os.getgid()
    with pytest.raises(InvalidInput, match="no group named 'no-such-group'"):
        parse_socket_group("no-such-group")


def test_bind_unix_sets_the_mode_before_the_socket_is_in_place(tmp_path):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "p.sock"
    sock = bind_unix(UnixListen(path, 0o640))
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        assert [p.name for p in path.parent.iterdir()] == ["p.sock"]  # the staging name is gone
        with pytest.raises(InvalidInput, match="another server is listening"):
            bind_unix(UnixListen(path))
    finally:
        sock.close()
    again = bind_unix(UnixListen(path))  # now stale: replaced
    again.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


ATTRIBUTE_NAMES = ["request", "protocol_state", "sasl_username", "sender", "recipient_count", "instance",
                   "queue_id", "x"]
ACTIONS = ("DUNNO", "REJECT 5.7.1 ", "REJECT 5.5.3 Too many recipients", "DEFER_IF_PERMIT 4.5.0 ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(ATTRIBUTE_NAMES),
                       st.one_of(st.sampled_from(["smtpd_access_policy", "END-of-message", "DATA", "RCPT", "MAIL",
                                                  "bob@acme.test", "BOB@ACME.TEST", "<>", "3", "1001", "-1",
                                                  "10" * 30, "", "i1"]),
                                 st.text(max_size=40))))
def test_fuzz_any_request_gets_a_known_action_and_never_bills_past_the_caps(store, attrs):
    before = usage_status(store, "shop")[0]["sent"]
    action, info = answer(store, attrs)
    assert action.startswith(ACTIONS) and "state" in info
    billed = usage_status(store, "shop")[0]["sent"] - before
    assert billed == 0 or (action == "DUNNO" and info["metered"] and 0 < billed == info["recipients"] <= 1000)


class Asked:
    """The side of PolicyServer a connection calls: records each request; answers each at once
    (``answer``) or when the test calls ``answers.pop(0)(...)``."""

    def __init__(self, answer: bool = False):
        self.connections, self.metrics, self.asked, self.answers, self.answer = set(), NOOP, [], [], answer

    def ask(self, block, done):
        self.asked.append(block)
        if self.answer:
            done("DUNNO", {"state": "test"})
        else:
            self.answers.append(done)

    def count(self, *args):
        pass

    def send(self, connection, line, reply):
        connection.replied(reply)


async def connect(server):
    """A PolicyConnection serving ``server`` on one end of a socket pair; the client's end (non-blocking)."""
    from smtpctl.servers.policy.protocol import PolicyConnection

    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    _, connection = await asyncio.get_running_loop().connect_accepted_socket(lambda: PolicyConnection(server), ours)
    return connection, theirs


async def until(condition, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.01)


def feed(data: bytes, eof: bool = True):
    """What a policy connection makes of these bytes from a client over a real socket: the first
    request's lines, None (closed between requests), or the refusal it logged and closed for."""
    refusals = []

    async def go():
        server = Asked()
        connection, client = await connect(server)
        try:
            await asyncio.get_running_loop().sock_sendall(client, data)
            if eof:
                client.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still writing
        await until(lambda: server.asked or connection.closed)
        client.close()
        return server.asked[0] if server.asked else (f"refused: {refusals[0]}" if refusals else None)

    with mock.patch("smtpctl.servers.policy.protocol.log_event",
                    lambda event, error="", **fields: refusals.append(error) if event == "policy_refused" else None):
        return asyncio.run(go())


def test_read_request_bounds():
    assert feed(b"a=b\nc=d\n\n") == ["a=b", "c=d"]
    assert feed(b"") is None  # closed between requests
    assert feed(b"a=b\r\n\r\n") == ["a=b"]
    assert feed(b"helo_name=caf\xe9\n\n") == ["helo_name=caf\ufffd"]
    assert feed(b"x" * (1024 * 1024)) == "refused: request line longer than 65536 bytes"
    assert feed(b"a=" + b"y" * (1024 * 1024) + b"\n\n") == "refused: request line longer than 65536 bytes"
    assert feed(b"a=" + b"y" * 40_000 + b"\n" + b"b=" + b"y" * 40_000 + b"\n\n") == \
        "refused: request larger than 65536 bytes"
    assert feed(b"a=b\n" * 257 + b"\n") == "refused: request with more than 256 attributes"
    assert feed(b"a=b\n") == "refused: request cut short by the client"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_read_request_returns_lines_or_refuses(data):
    result = feed(data)
    assert result is None or isinstance(result, list) or result.startswith("refused: ")


def read_line_by_line(data: bytes):
    """The requests in ``data`` and how the stream ends (None: closed between requests, or the
    refusal), as the reader before the policy connection became a protocol read them: a
    StreamReader(limit=MAX_REQUEST_BYTES), one readuntil(b"\\n") per line. The reference for
    RequestSplitter, whose whole-block path must answer the same."""
    from smtpctl.servers.policy.protocol import MAX_ATTRIBUTES, MAX_REQUEST_BYTES

    requests, pos = [], 0
    while True:
        lines, size, first = [], 0, True
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                if len(data) - pos > MAX_REQUEST_BYTES:
                    return requests, f"request line longer than {MAX_REQUEST_BYTES} bytes"
                return requests, None if first and pos == len(data) else "request cut short by the client"
            if newline - pos > MAX_REQUEST_BYTES:
                return requests, f"request line longer than {MAX_REQUEST_BYTES} bytes"
            size += newline + 1 - pos
            if size > MAX_REQUEST_BYTES:
                return requests, f"request larger than {MAX_REQUEST_BYTES} bytes"
            text, pos, first = data[pos:newline].rstrip(b"\r\n"), newline + 1, False
            if not text:
                requests.append(lines)
                break
            if len(lines) >= MAX_ATTRIBUTES:
                return requests, f"request with more than {MAX_ATTRIBUTES} attributes"
            lines.append(text.decode("utf-8", errors="replace"))


def split_as_they_come(chunks: list[bytes]):
    from smtpctl.servers.policy.protocol import RequestSplitter, _Refused

    splitter, requests = RequestSplitter(), []
    try:
        for chunk in chunks:
            splitter.feed(chunk)
            while (block := splitter.take()) is not None:
                requests.append(block)
    except _Refused as exc:
        return requests, str(exc)
    return requests, "request cut short by the client" if splitter.started else None


LINE = st.one_of(st.sampled_from([b"request=smtpd_access_policy", b"protocol_state=RCPT", b"a=b", b"", b"\r",
                                  b"helo_name=caf\xe9", b"x" * 300, b"=", b"\n"]), st.binary(max_size=40))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(LINE, st.sampled_from([b"\n", b"\r\n", b"\n\n", b""])), max_size=40),
       st.lists(st.integers(min_value=0, max_value=4000), max_size=6), st.sampled_from([1, 300, 65_000]))
def test_requests_are_split_as_the_line_by_line_reader_split_them(parts, cuts, big):
    data = b"".join(line + end for line, end in parts) + b"y" * big * (big > 300)
    pieces = [data[i:j] for i, j in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)])]
    assert split_as_they_come(pieces) == split_as_they_come([data]) == read_line_by_line(data)
    assert split_as_they_come(list(data[i:i + 1] for i in range(min(len(data), 600)))) == \
        read_line_by_line(data[:600])


def test_a_stalled_request_is_refused_but_an_idle_connection_is_not(monkeypatch):
    import smtpctl.servers.policy.protocol as protocol

    monkeypatch.setattr(protocol, "REQUEST_TIMEOUT", 0.2)
    assert feed(b"request=smtpd_access_policy\n", eof=False) == "refused: request not finished within 0.2 seconds"

    async def idle():  # Postfix keeps a connection open between requests: no timeout before the first line
        server = Asked()
        connection, client = await connect(server)
        client.send(b"request=smtpd_")  # nor while the first line is not whole
        await asyncio.sleep(0.5)
        assert not server.asked and not connection.closed
        client.send(b"access_policy\n\n")
        await until(lambda: server.asked)
        client.close()
        return server.asked

    assert asyncio.run(idle()) == [["request=smtpd_access_policy"]]


def test_requests_sent_together_are_answered_in_order_one_at_a_time():
    async def go():
        server = Asked()
        connection, client = await connect(server)
        client.send(b"n=1\n\nn=2\n\nn=3\n\n")
        await until(lambda: server.asked)
        await asyncio.sleep(0.1)
        assert server.asked == [["n=1"]]  # the next waits for this one's answer
        for n in (1, 2, 3):
            await until(lambda: len(server.answers) == 1)
            server.answers.pop(0)(f"DUNNO {n}", {"state": "test"})
        await until(lambda: len(server.asked) == 3)
        client.shutdown(socket.SHUT_WR)
        await until(lambda: connection.closed)
        replies = b""
        while chunk := await asyncio.get_running_loop().sock_recv(client, 1000):
            replies += chunk
        client.close()
        return server.asked, replies

    assert asyncio.run(go()) == ([["n=1"], ["n=2"], ["n=3"]], b"action=DUNNO 1\n\naction=DUNNO 2\n\naction=DUNNO 3\n\n")


def test_a_flood_of_requests_answered_at_once_waits_for_a_client_that_does_not_read():
    """Malformed requests are answered without the store, in _next's loop: 30,000 of them in one
    go neither recurse nor fill the server's memory; the server stops reading and answering
    while the client does not read, and answers every one, in order, when it does."""
    from smtpctl.servers.policy.protocol import PolicyServer
    from smtpctl.servers.replies import DEFER_MALFORMED

    async def go():
        server = PolicyServer(None)
        connection, client = await connect(server)
        loop = asyncio.get_running_loop()
        flood = b"no equals sign\n\n" * 30_000
        sending = asyncio.ensure_future(loop.sock_sendall(client, flood))
        await asyncio.sleep(0.5)
        assert connection.full and not sending.done()  # the answers fill the socket: nothing more is read
        replies = bytearray()
        while len(replies) < 30_000 * len(f"action={DEFER_MALFORMED}\n\n"):
            replies += await loop.sock_recv(client, 65536)
        await sending
        client.close()
        return bytes(replies)

    with mock.patch("smtpctl.servers.policy.protocol.log_event"):
        assert asyncio.run(go()) == f"action={DEFER_MALFORMED}\n\n".encode() * 30_000


def test_ids_are_unique_across_postfix_hosts(store):
    """Two Postfix hosts of a fleet may hand out the same instance: the id names the host (server_address)
    and the queue id, so both messages are metered, and each only once."""
    first = request(instance="a.b.c", queue_id="Q1", server_address="192.0.2.10")
    other_host = request(instance="a.b.c", queue_id="Q1", server_address="192.0.2.11")
    for attrs in (first, other_host, first, other_host):
        assert answer(store, attrs)[0] == "DUNNO"
    assert usage_status(store, "shop")[0]["sent"] == 6
    assert store.existing_source_ids(["policy:192.0.2.10/Q1/a.b.c", "policy:192.0.2.11/Q1/a.b.c"]) == {
        "policy:192.0.2.10/Q1/a.b.c", "policy:192.0.2.11/Q1/a.b.c"}


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["login", "reason", "sender", "state", "recipients"]),
                       st.one_of(st.none(), st.integers(), st.booleans(),
                                 st.text(alphabet=st.sampled_from('ab =" \\\t\ufffd'), max_size=8))))
def test_log_lines_quote_exactly_the_values_they_always_quoted(fields):
    """log_event finds the values to quote with one regex search, no longer a generator per value."""
    import contextlib
    import io

    from smtpctl.servers.runtime import log_event

    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        log_event("policy", **fields)
    expected = []
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        expected.append(f"{key}={text}")
    line = out.getvalue()
    assert line.startswith("ts=") and line == f"{line.split(' ', 1)[0]} event=policy{''.join(' ' + e for e in expected)}\n"


def test_a_prepaid_agency_at_zero_is_deferred_not_rejected_and_resumes_on_top_up(store):
    """Out of credits is temporary (docs/billing.md): the policy service answers DEFER_IF_PERMIT 4.7.1
    and serve 451 4.7.1 (the reply its handler gives for the admission's status), the credential is kept,
    and a top-up lets the retry through."""
    from smtpctl.core.billing.credits import add_credit, set_mode
    from smtpctl.core.metering.live import admit_message
    from smtpctl.servers.replies import refusal

    set_account_limit(store, "shop", 1000)  # the daily limit out of the way
    set_mode(store, "acme", "prepaid")
    add_credit(store, "acme", "0.01")  # 14.8 emails at 0.675 per 1,000
    for n in range(5):  # 3 emails each: the 5th takes the balance below zero and is the one crossing
        assert answer(store, request(instance=f"i{n}"))[0] == "DUNNO"
    action, info = answer(store, request(instance="over"))
    assert (action, info["reason"], info["metered"]) == (
        "DEFER_IF_PERMIT 4.7.1 Agency's prepaid credits are used up; sending resumes once it is topped up",
        "out_of_credits", False)
    served = admit_message(store, "bob@acme.test", 1, "serve-1")
    assert (served.accepted, served.status) == (False, "out_of_credits")
    assert refusal(served.status) == ("451 4.7.1 Your agency's prepaid credits are used up; sending resumes once it "
                                      "is topped up; try again later")
    assert usage_status(store, "shop")[0]["sent"] == 15
    assert [c.login for c in store.credentials()] == ["bob@acme.test"] and not store.account("shop").blocked
    add_credit(store, "acme", "1")
    assert answer(store, request(instance="over"))[0] == "DUNNO"  # Postfix's retry, after the top-up
    assert admit_message(store, "bob@acme.test", 1, "serve-1").status == "accepted"
