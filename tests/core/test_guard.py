"""The bookkeeping that holds `serve` against hostile clients, without a server."""

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


def test_parallel_attempts_share_one_budget():
    t, _ = throttle()
    started = [t.begin("198.51.100.7", "app@d.example") for _ in range(200)]
    assert sum(a is not None for a in started) == 5  # in flight counts: 5 verifies, 195 refusals
    for attempt in filter(None, started):
        t.failed(attempt)
    assert t.begin("198.51.100.7", "other@d.example") is None


def test_a_success_gives_its_slot_back():
    t, _ = throttle(per_client=2)
    for _ in range(10):
        attempt = t.begin("198.51.100.7", "app@d.example")
        assert attempt is not None
        t.succeeded(attempt, "app@d.example")
        t.failed(attempt)  # the finally after a success: settled already, counts nothing
    assert t.begin("198.51.100.7", "app@d.example") is not None


def test_failures_age_out_of_the_window():
    t, clock = throttle(per_client=2, window=300)
    for _ in range(2):
        t.failed(t.begin("198.51.100.7", None))
    assert t.begin("198.51.100.7", None) is None
    clock.now += 299
    assert t.begin("198.51.100.7", None) is None
    clock.now += 2
    assert t.begin("198.51.100.7", None) is not None


def test_a_login_is_capped_across_clients_unknown_or_not():
    t, _ = throttle(per_client=5, per_login=10)
    for i in range(10):
        t.failed(t.begin(f"198.51.100.{i}", "ghost@d.example"))
    assert t.begin("203.0.113.1", "ghost@d.example") is None  # a fresh client, the same login
    assert t.begin("203.0.113.1", "app@d.example") is not None  # another login is untouched
    assert t.begin("203.0.113.1", None) is not None  # an unparseable login has no login budget


def test_a_client_that_authenticated_passes_its_logins_cap():
    t, clock = throttle(per_client=5, per_login=3)
    t.succeeded(t.begin("192.0.2.10", "app@d.example"), "app@d.example")
    for i in range(3):
        t.failed(t.begin(f"198.51.100.{i}", "app@d.example"))
    assert t.begin("198.51.100.99", "app@d.example") is None  # strangers: locked out
    assert t.begin("192.0.2.10", "app@d.example") is not None  # its own sender: still served
    clock.now += guard.TRUSTED_FOR + 1
    for i in range(3):
        t.failed(t.begin(f"198.51.100.{i}", "app@d.example"))
    assert t.begin("192.0.2.10", "app@d.example") is None  # trust lasts a day


def test_sweep_forgets_what_aged_out():
    t, clock = throttle(window=300)
    for i in range(50):
        t.failed(t.begin(f"198.51.100.{i}", f"u{i}@d.example"))
    clock.now += 301
    t.begin("192.0.2.1", None)
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
    assert guard.default_max_connections(1, 2) == 256 - 64 - 2 * 32 == 128
    assert guard.default_max_connections(2, 2) == 64  # relayed: each session also holds a next-hop socket
    assert guard.default_max_connections(1, 10) == 1
    if nofile.hard >= 1100:
        nofile(1100)
        assert guard.default_max_connections(1, 1) == 1000
        assert guard.checked_max_connections(1000, 1, 1) == 1000
    nofile(256)
    with pytest.raises(InvalidInput) as err:
        guard.checked_max_connections(500, 1, 3)
    assert err.value.message == ("--max-connections 500 needs about 660 open files, and the limit is 256: raise it "
                                 "(ulimit -n, systemd LimitNOFILE=) or lower --max-connections")
    assert guard.checked_max_connections(None, 1, 3) == 96


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
