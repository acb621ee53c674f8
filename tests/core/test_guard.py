"""The bookkeeping that holds `serve` against hostile clients, without a server."""

import asyncio
import collections
import resource
import socket

import pytest

from smtpctl.core.errors import CannotListen, ExitCode, InvalidInput
from smtpctl.servers import guard
from smtpctl.servers.guard import AuthThrottle, ConnectionLimits, client_key
from smtpctl.servers.runtime import listen_sockets


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def throttle(per_client=5, per_login=10, window=300.0):
    clock = Clock()
    return AuthThrottle(per_client, per_login, window, clock=clock), clock


def run(coroutine):
    return asyncio.run(coroutine)


def begin_now(t, client, login):
    """begin() when it must answer at once (no attempt in flight to wait for)."""
    return run(asyncio.wait_for(t.begin(client, login), 5))


def test_parallel_guesses_get_the_sequential_budget():
    async def scenario():
        t, _ = throttle()
        verified = []

        async def guess(i):
            attempt = await t.begin("198.51.100.7", "app@d.example")
            if attempt is None:
                return 454
            verified.append(i)
            await asyncio.sleep(0.01)  # the verify
            t.failed(attempt)
            return 535

        codes = await asyncio.gather(*(guess(i) for i in range(200)))
        return collections.Counter(codes), t

    codes, t = run(scenario())
    assert codes == {535: 5, 454: 195}
    assert begin_now(t, "198.51.100.7", "other@d.example") is None


def test_parallel_right_passwords_wait_their_turn_and_all_pass():
    async def scenario():
        t, _ = throttle(per_client=5)
        in_flight, most = 0, 0

        async def login(i):
            nonlocal in_flight, most
            attempt = await t.begin("198.51.100.7", f"u{i % 5}@d.example")
            assert attempt is not None
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            t.succeeded(attempt, attempt.login)
            t.failed(attempt)  # the finally after a success: settled already, counts nothing
            return 235

        codes = await asyncio.gather(*(login(i) for i in range(20)))
        return codes, most

    codes, most = run(scenario())
    assert codes == [235] * 20 and most == 5  # five verifies at a time from one client


def test_a_waiting_guess_is_refused_once_the_failures_fill_the_budget():
    async def scenario():
        t, _ = throttle(per_client=2)
        first, second = await t.begin("c", None), await t.begin("c", None)
        waiting = asyncio.ensure_future(t.begin("c", None))
        await asyncio.sleep(0)
        assert not waiting.done()
        t.failed(first)
        await asyncio.sleep(0)
        assert not waiting.done()  # one failure, one in flight: still full, still waiting
        t.succeeded(second)
        return await asyncio.wait_for(waiting, 5)

    assert run(scenario()) is not None  # the success freed a slot


def test_failures_age_out_of_the_window():
    t, clock = throttle(per_client=2, window=300)
    for _ in range(2):
        t.failed(begin_now(t, "198.51.100.7", None))
    assert begin_now(t, "198.51.100.7", None) is None
    clock.now += 299
    assert begin_now(t, "198.51.100.7", None) is None
    clock.now += 2
    assert begin_now(t, "198.51.100.7", None) is not None


def test_a_login_is_capped_across_clients_unknown_or_not():
    t, _ = throttle(per_client=5, per_login=10)
    for i in range(10):
        t.failed(begin_now(t, f"198.51.100.{i}", "ghost@d.example"))
    assert begin_now(t, "203.0.113.1", "ghost@d.example") is None  # a fresh client, the same login
    assert begin_now(t, "203.0.113.1", "app@d.example") is not None  # another login is untouched
    assert begin_now(t, "203.0.113.2", None) is not None  # an unparseable login has no login budget


def test_a_client_that_authenticated_passes_its_logins_cap():
    t, clock = throttle(per_client=5, per_login=3)
    t.succeeded(begin_now(t, "192.0.2.10", "app@d.example"), "app@d.example")
    for i in range(3):
        t.failed(begin_now(t, f"198.51.100.{i}", "app@d.example"))
    assert begin_now(t, "198.51.100.99", "app@d.example") is None  # strangers: locked out
    assert begin_now(t, "192.0.2.10", "app@d.example") is not None  # its own sender: still served
    clock.now += guard.TRUSTED_FOR + 1
    for i in range(3):
        t.failed(begin_now(t, f"198.51.100.{i}", "app@d.example"))
    assert begin_now(t, "192.0.2.10", "app@d.example") is None  # trust lasts a day


def test_refused_guesses_do_not_grow_the_tables():
    t, _ = throttle(per_client=1)
    t.failed(begin_now(t, "198.51.100.7", "u0@d.example"))
    for i in range(1, 1000):
        assert begin_now(t, "198.51.100.7", f"u{i}@d.example") is None
    assert len(t.clients) == 1 and len(t.logins) == 1


def test_sweep_forgets_what_aged_out():
    t, clock = throttle(window=300)
    for i in range(50):
        t.failed(begin_now(t, f"198.51.100.{i}", f"u{i}@d.example"))
    clock.now += 301
    begin_now(t, "192.0.2.1", None)
    assert set(t.clients) == {"192.0.2.1"} and t.logins == {}


def test_connection_limits_total_and_per_client():
    limits = ConnectionLimits(total=3, per_client=2)
    assert [limits.admit("a"), limits.admit("a"), limits.admit("a")] == [None, None, "client"]
    assert limits.admit("b") is None
    assert limits.admit("c") == "total"
    limits.release("a")
    assert limits.admit("c") is None
    for key in ("a", "b", "c"):
        limits.release(key)
    assert (limits.open, limits.by_client) == (0, {})


@pytest.mark.parametrize("peer, key", [
    (("192.0.2.1", 25), "192.0.2.1"),
    (("2001:db8:1:2:aaaa::1", 25, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2:bbbb::9", 25, 0, 0), "2001:db8:1:2::/64"),
    (("::ffff:192.0.2.1", 25, 0, 0), "192.0.2.1"),
    (("fe80::1%eth0", 25, 0, 2), "fe80::/64"),
    ("/run/sock", "/run/sock"),
])
def test_client_key(peer, key):
    assert client_key(peer) == key


@pytest.fixture
def nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def set_soft(value):
        resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))

    set_soft.hard = hard
    yield set_soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_default_max_connections_follows_the_open_files_limit(nofile):
    nofile(256)
    assert guard.default_max_connections(1) == 256 - 64 == 192
    assert guard.default_max_connections(2) == 96  # relayed: each session also holds a next-hop socket
    nofile(64)
    assert guard.default_max_connections(1) == 1
    if nofile.hard >= 1100:
        nofile(1100)
        assert guard.default_max_connections(1) == 1000
        assert guard.checked_max_connections(1000, 1) == 1000
    nofile(256)
    with pytest.raises(InvalidInput) as err:
        guard.checked_max_connections(500, 1)
    assert err.value.message == ("--max-connections 500 needs about 564 open files, and the limit is 256: raise it "
                                 "(ulimit -n, systemd LimitNOFILE=) or lower --max-connections")
    assert guard.checked_max_connections(None, 1) == 192


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_listen_sockets_all_or_nothing():
    first, taken = free_port(), free_port()
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", taken))
        occupant.listen()
        with pytest.raises(CannotListen) as err:
            listen_sockets([("127.0.0.1", first), ("127.0.0.1", taken)])
        assert err.value.message == f"cannot listen on 127.0.0.1:{taken}: address already in use"
        assert err.value.exit_code == ExitCode.CANNOT_LISTEN == 9
    # The first address was bound, then closed again when the second failed.
    [[again]] = listen_sockets([("127.0.0.1", first)])
    again.close()


def test_listen_sockets_names_the_cause():
    with pytest.raises(CannotListen) as err:
        listen_sockets([("192.0.2.1", 2525)])  # TEST-NET-1: not an address of this host
    assert err.value.message == "cannot listen on 192.0.2.1:2525: this host has no such address"
    with pytest.raises(CannotListen) as err:
        listen_sockets([("no-such-host.invalid", 2525)])
    assert err.value.message.startswith("cannot listen on no-such-host.invalid:2525: ")


def test_listen_sockets_ipv6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        [[sock]] = listen_sockets([("::1", 0)])
    except CannotListen as err:
        pytest.skip(f"no IPv6 loopback here: {err.message}")
    port = sock.getsockname()[1]
    with pytest.raises(CannotListen) as err:
        listen_sockets([("::1", port)])
    sock.close()
    assert err.value.message == f"cannot listen on [::1]:{port}: address already in use"
