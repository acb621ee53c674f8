"""The bookkeeping that holds `serve` against hostile clients, without a server (the AUTH throttle
with the real store, on both backends, one or two "nodes" on it)."""

import asyncio
import collections
import resource
import socket
import time

import pytest

from smtpctl.core.model.errors import CannotListen, ExitCode, InvalidInput
from smtpctl.core.store import Store, throttle
from smtpctl.servers import guard
from smtpctl.core.model.clients import client_key
from smtpctl.servers.guard import AuthThrottle, ConnectionLimits
from smtpctl.servers.runtime import StoreWorker, listen_sockets


class Nodes:
    """Throttles of N "nodes" on one store (each its own store thread and
    connection, as ``serve`` has), closed at the end."""

    def __init__(self, store_at, count=1, per_client=5, per_login=10, window=300.0):
        Store.open(store_at).close()
        self.store_at = store_at
        self.calls = 0
        self.throttles = []
        for _ in range(count):
            worker = StoreWorker(store_at, "tester")
            real = worker.call

            async def counted(fn, *args, real=real):
                self.calls += 1
                return await real(fn, *args)

            worker.call = counted  # the real store thread, counted: the first gate must not reach it
            self.throttles.append(AuthThrottle(worker, per_client, per_login, window))

    def __getitem__(self, i):
        return self.throttles[i % len(self.throttles)]

    def rows(self, where="1 = 1"):
        with Store.open(self.store_at) as store:
            return store.query(f"SELECT client, login, state FROM auth_attempts WHERE {where}")

    def close(self):
        for t in self.throttles:
            t.worker.close()


@pytest.fixture
def nodes(store_at):
    made = []

    def make(**kwargs):
        made.append(Nodes(store_at, **kwargs))
        return made[-1]

    yield make
    for n in made:
        n.close()


def run(coroutine):
    return asyncio.run(coroutine)


async def settled_failure(t, client, login):
    attempt = await asyncio.wait_for(t.begin(client, login), 30)
    assert attempt is not None
    await t.failed(attempt)


@pytest.mark.parametrize("count", [1, 2])
def test_parallel_guesses_get_the_sequential_budget(nodes, count):
    """200 parallel wrong passwords from one client, spread over `count` nodes on one store: 5 verifies."""
    n = nodes(count=count)

    async def scenario():
        async def guess(i):
            attempt = await n[i].begin("198.51.100.7", "app@d.example")
            if attempt is None:
                return 454
            await asyncio.sleep(0.01)  # the verify
            await n[i].failed(attempt)
            return 535

        return collections.Counter(await asyncio.gather(*(guess(i) for i in range(200))))

    assert run(scenario()) == {535: 5, 454: 195}
    assert [r["state"] for r in n.rows()] == ["failed"] * 5
    for t in n.throttles:  # every node refuses the client now, whatever the login
        assert run(t.begin("198.51.100.7", "other@d.example")) is None


def test_parallel_right_passwords_wait_their_turn_and_all_pass(nodes):
    n = nodes(count=2)

    async def scenario():
        in_flight, most = 0, 0

        async def login(i):
            nonlocal in_flight, most
            attempt = await n[i].begin("198.51.100.7", f"u{i % 5}@d.example")
            assert attempt is not None
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.05)  # the verify
            in_flight -= 1
            await n[i].succeeded(attempt, f"u{i % 5}@d.example")
            n[i].abandoned(attempt)  # the finally after a success: settled already, counts nothing
            return 235

        codes = await asyncio.gather(*(login(i) for i in range(20)))
        return codes, most

    codes, most = run(scenario())
    assert codes == [235] * 20 and 1 < most <= 5  # five verifies at a time at most, on both nodes together
    assert n.rows() == []


def test_a_waiting_guess_is_refused_once_the_failures_fill_the_budget(nodes):
    n = nodes(count=2, per_client=2)

    async def scenario():
        first, second = await n[0].begin("c", None), await n[1].begin("c", None)
        waiting = asyncio.ensure_future(n[0].begin("c", None))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await n[1].failed(first)  # settled on the other node: seen by polling
        await asyncio.sleep(0.6)
        assert not waiting.done()  # one failure, one in flight: still full, still waiting
        await n[1].succeeded(second)
        return await asyncio.wait_for(waiting, 5)

    assert run(scenario()) is not None  # the success freed a slot


def test_a_guess_waiting_for_a_slot_is_let_through_when_proven_meanwhile(nodes):
    n = nodes(per_client=1)

    async def scenario():
        holder = await n[0].begin("c", "app@d.example")
        proven = False
        waiting = asyncio.ensure_future(n[0].begin("c", "app@d.example", proven=lambda: proven))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        proven = True  # e.g. the AUTH cache now verifies the password
        await n[0].succeeded(holder, "app@d.example")
        return await asyncio.wait_for(waiting, 5)

    assert run(scenario()) is guard.PROVEN
    assert n.rows() == []  # the proven guess took no slot


def test_failures_age_out_of_the_window(nodes):
    n = nodes(per_client=2, window=1.5)
    for _ in range(2):
        run(settled_failure(n[0], "198.51.100.7", None))
    assert run(n[0].begin("198.51.100.7", None)) is None
    assert n[0].blocked_here("198.51.100.7")  # known here: refused without asking the store
    time.sleep(1.6)
    assert not n[0].blocked_here("198.51.100.7")
    assert run(n[0].begin("198.51.100.7", None)) is not None


def test_the_first_gate_refuses_a_known_client_without_the_store(nodes):
    n = nodes(count=2, per_client=3)
    for i in range(3):
        run(settled_failure(n[i], "198.51.100.7", "app@d.example"))
    calls = n.calls
    assert run(n[0].begin("198.51.100.7", "app@d.example")) is None  # learnt from the store ...
    assert n.calls == calls + 1
    for _ in range(100):
        assert run(n[0].begin("198.51.100.7", "app@d.example")) is None
    assert n.calls == calls + 1  # ... then refused here, without a store call
    assert run(n[1].begin("198.51.100.7", "app@d.example")) is None  # the other node asks the store itself
    assert n.calls == calls + 2
    assert run(n[0].begin("198.51.100.8", "app@d.example")) is not None  # another client is not blocked


def test_a_login_is_capped_across_clients_and_nodes_unknown_or_not(nodes):
    n = nodes(count=2, per_client=5, per_login=10)
    for i in range(10):
        run(settled_failure(n[i], f"198.51.100.{i}", "ghost@d.example"))
    assert run(n[0].begin("203.0.113.1", "ghost@d.example")) is None  # a fresh client, the same login
    assert run(n[1].begin("203.0.113.1", "ghost@d.example")) is None
    assert run(n[0].begin("203.0.113.1", "app@d.example")) is not None  # another login is untouched
    assert run(n[1].begin("203.0.113.2", None)) is not None  # an unparseable login has no login budget


def test_a_client_that_authenticated_passes_its_logins_cap_on_every_node(nodes):
    n = nodes(count=2, per_client=5, per_login=3)

    async def authenticated():
        attempt = await n[0].begin("192.0.2.10", "app@d.example")
        await n[0].succeeded(attempt, "app@d.example")

    run(authenticated())
    for i in range(3):
        run(settled_failure(n[i], f"198.51.100.{i}", "app@d.example"))
    assert run(n[1].begin("198.51.100.99", "app@d.example")) is None  # strangers: locked out
    assert run(n[1].begin("192.0.2.10", "app@d.example")) is not None  # its own sender: still served
    with Store.open(n.store_at) as store, store.write():  # a day later
        store.execute("UPDATE auth_trusted SET expires = expires - ?", [throttle.TRUSTED_FOR + 1])
    assert run(n[1].begin("192.0.2.10", "app@d.example")) is None  # trust lasts a day


def test_trust_is_renewed_once_an_hour_at_most(nodes):
    n = nodes()
    run(n[0].renew_trust("192.0.2.10", "app@d.example", 0.0))
    calls = n.calls
    run(n[0].renew_trust("192.0.2.10", "app@d.example", throttle.TRUSTED_FOR - 60))
    assert n.calls == calls  # renewed a minute ago: no write
    run(n[0].renew_trust("192.0.2.10", "app@d.example", throttle.TRUSTED_FOR - guard.TRUST_RENEW - 1))
    assert n.calls == calls + 1


def test_an_abandoned_guess_counts_as_failed(nodes):
    n = nodes()

    async def scenario():
        attempt = await n[0].begin("198.51.100.7", "app@d.example")
        n[0].abandoned(attempt)  # the client went away mid-verify
        await asyncio.gather(*n[0].settling)

    run(scenario())
    assert [r["state"] for r in n.rows()] == ["failed"]


def test_refused_guesses_do_not_grow_the_tables(nodes):
    n = nodes(per_client=1)
    run(settled_failure(n[0], "198.51.100.7", "u0@d.example"))
    for i in range(1, 300):
        assert run(n[i].begin("198.51.100.7", f"u{i}@d.example")) is None
    assert len(n.rows()) == 1 and len(n[0].blocked) == 1


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
