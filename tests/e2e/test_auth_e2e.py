"""AUTH as a sender meets it, with real `smtpctl serve` processes and smtplib:
a revoked credential is told why (and is no guess), `auth throttle clear`
lets a locked-out client in again, `--trusted-network` lifts the per-client
cap only, and EHLO offers exactly the mechanisms there are."""

import base64
import json
import smtplib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.servers import Running

pytestmark = pytest.mark.e2e

PW = "Correct-Horse-Battery-Staple-42"
WRONG = PW + "x"
INVALID = b"5.7.8 Authentication credentials invalid"
TOO_MANY_AUTH = b"4.7.0 Too many failed authentications; try again later"
TLS = ssl.create_default_context()
TLS.check_hostname, TLS.verify_mode = False, ssl.CERT_NONE  # the server's self-signed certificate


@pytest.fixture
def world(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "10", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    run("account", "add", "keep", "--agency", "acme", check_rc=0)
    run("domain", "add", "k.example", "--account", "keep", check_rc=0)
    for login in ("app@d.example", "other@d.example", "live@k.example"):
        run("user", "create", login, "--password-stdin", input=PW + "\n", check_rc=0)


@pytest.fixture
def serve(world, tmp_path):
    """``serve(*options)``: a running `smtpctl serve` on free ports, stopped (exit 0) at the end."""
    started = []

    def start(*options):
        log = tmp_path / f"serve{len(started)}.log"
        started.append(Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--auth-delay",
                                "0.05", "--maildir", str(tmp_path / "maildir"), *options], log))
        return started[-1]

    yield start
    for server in started:
        assert server.stop() == 0, server.text()
        assert PW not in server.text()


def session(server, source="127.0.0.1"):
    client = smtplib.SMTP(*server.addresses["submission"], timeout=60, source_address=(source, 0))
    client.ehlo()
    client.starttls(context=TLS)
    client.ehlo()
    return client


def auth(server, login, password, source="127.0.0.1"):
    """One AUTH PLAIN on a new session: (code, text) as the client reads it."""
    client = session(server, source)
    try:
        return client.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{login}\0{password}".encode()).decode())
    finally:
        client.close()


def events(server, event):
    return [line for line in server.text().splitlines() if f" event={event} " in line + " "]


def throttle_list(run, *args):
    return json.loads(run("auth", "throttle", "list", *args, "--json", check_rc=0).stdout)


def cross_the_limit(run):
    """Send 11 emails on a limit of 10 with `usage record`: the crossing revokes shop's credentials."""
    result = json.loads(run("usage", "record", "--user", "app@d.example", "--recipients", "11", "--json",
                            check_rc=0).stdout)
    [crossing] = result["crossings"]
    assert crossing["revoked_credentials"] == ["app@d.example", "other@d.example"]
    return crossing["day"]


def test_a_revoked_credential_is_told_why_and_a_wrong_password_stays_a_guess(serve, run):
    server = serve()
    day = cross_the_limit(run)
    revoked = f"5.7.8 Authentication credentials revoked: daily sending limit exceeded on {day}; contact support"
    assert auth(server, "App@D.Example", PW) == (535, revoked.encode())
    assert auth(server, "app@d.example", WRONG) == (535, INVALID)
    [line] = events(server, "auth_revoked")
    assert "mechanism=PLAIN login=app@d.example reason=daily_limit" in line and f"day={day}" in line
    assert len(events(server, "auth_failed")) == 1
    # only the wrong password was counted as a guess, for the client and for the login
    assert [(e["scope"], e["key"], e["failures"]) for e in throttle_list(run)] == [
        ("client", "127.0.0.1", 1), ("login", "app@d.example", 1)]


@pytest.mark.parametrize("cache", ["0", "10000"])
def test_retrying_a_revoked_credential_never_trips_the_throttle(serve, run, cache):
    server = serve("--max-auth-failures", "2", "--max-auth-failures-per-login", "2", "--auth-cache-size", cache)
    day = cross_the_limit(run)
    for _ in range(6):  # three times either cap
        code, text = auth(server, "app@d.example", PW)
        assert (code, text) == (535, f"5.7.8 Authentication credentials revoked: daily sending limit exceeded on "
                                     f"{day}; contact support".encode())
    assert auth(server, "live@k.example", PW)[0] == 235  # the same address, another account's credential
    assert throttle_list(run) == []
    lines = events(server, "auth_revoked")
    assert len(lines) == 6 and not events(server, "auth_throttled") and not events(server, "auth_failed")
    verified = [line.rsplit("verified=", 1)[1] for line in lines]
    assert verified == (["hash"] * 6 if cache == "0" else ["hash"] + ["cache"] * 5)


def test_parallel_retries_of_a_revoked_credential_are_all_told_why_and_lock_nobody_out(serve, run):
    """20 connections at once with the revoked login's right password, on a per-client cap of 2: each
    holds a slot only while it is verified, so each waits its turn and hears why; none gets 454."""
    server = serve("--max-auth-failures", "2", "--auth-cache-size", "0")
    day = cross_the_limit(run)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: auth(server, "other@d.example", PW), range(20)))
    assert set(answers) == {(535, f"5.7.8 Authentication credentials revoked: daily sending limit exceeded on "
                                  f"{day}; contact support".encode())}
    assert len(events(server, "auth_revoked")) == 20 and not events(server, "auth_throttled")
    assert auth(server, "live@k.example", PW)[0] == 235
    assert throttle_list(run) == []


def test_an_operators_revoking_block_is_told_as_such_and_a_delete_is_not(serve, run):
    server = serve()
    run("user", "delete", "live@k.example", "--yes", check_rc=0)
    run("account", "block", "shop", "--reason", "internal: chargeback 4242", "--revoke", "--yes", check_rc=0)
    assert auth(server, "other@d.example", PW) == (
        535, b"5.7.8 Authentication credentials revoked by an operator; contact support")
    assert auth(server, "live@k.example", PW) == (535, INVALID)  # deleted by hand: nothing to explain
    [line] = events(server, "auth_revoked")
    assert "login=other@d.example reason=operator_block" in line
    assert "chargeback" not in server.text()  # the operator's reason is not told


def test_clear_lets_a_locked_out_client_in_again(serve, run):
    server = serve("--max-auth-failures", "2")
    for _ in range(2):
        assert auth(server, "app@d.example", WRONG) == (535, INVALID)
    assert auth(server, "app@d.example", PW) == (454, TOO_MANY_AUTH)
    [entry] = throttle_list(run, "--client", "127.0.0.1", "--max-auth-failures", "2")  # as serve runs
    assert (entry["failures"], entry["blocking"]) == (2, True)
    cleared = json.loads(run("auth", "throttle", "clear", "--client", "127.0.0.1", "--yes", "--json",
                             check_rc=0).stdout)
    assert (cleared["client"], cleared["removed"]) == ("127.0.0.1", 2)
    # The node remembers the refusal for a few seconds at most, then asks the store again.
    answers = []
    for _ in range(100):
        answers.append(auth(server, "app@d.example", PW)[0])
        if answers[-1] != 454:
            break
        time.sleep(0.2)
    assert answers[-1] == 235 and set(answers[:-1]) <= {454}
    audit = json.loads(run("audit", "--json", check_rc=0).stdout)
    assert [e["action"] for e in audit if e["action"].startswith("auth.")] == ["auth.throttle_clear"]


def test_a_trusted_network_lifts_the_per_client_cap_not_the_per_login_one(serve, run):
    server = serve("--max-auth-failures", "2", "--max-auth-failures-per-login", "3",
                   "--trusted-network", "127.0.0.0/24", "--trusted-network", "2001:db8::/32")
    for i in range(5):  # more than the per-client cap, on logins of nobody's
        assert auth(server, f"nobody{i}@d.example", WRONG) == (535, INVALID)
    assert auth(server, "app@d.example", PW)[0] == 235
    for _ in range(3):
        assert auth(server, "other@d.example", WRONG) == (535, INVALID)
    assert auth(server, "other@d.example", PW) == (454, TOO_MANY_AUTH)  # the login's cap holds
    # outside the trusted network the per-client cap holds as ever
    for i in range(2):
        assert auth(server, f"stranger{i}@d.example", WRONG, source="127.0.1.1") == (535, INVALID)
    assert auth(server, "app@d.example", PW, source="127.0.1.1") == (454, TOO_MANY_AUTH)
    listed = {(e["scope"], e["key"]): (e["failures"], e["blocking"]) for e in throttle_list(
        run, "--max-auth-failures", "2", "--max-auth-failures-per-login", "3")}
    assert listed[("client", "127.0.0.1")] == (8, True)  # counted and listed, not applied to it
    assert listed[("login", "other@d.example")] == (3, True)
    assert listed[("client", "127.0.1.1")] == (2, True)


@pytest.mark.parametrize("network", ["10.0.0.1/8", "nonsense", "10.0.0.0/33"])
def test_a_bad_trusted_network_is_exit_2_in_one_line(world, run, network):
    result = run("serve", "--trusted-network", network, "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                 "--check")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"Error: --trusted-network takes a network in CIDR notation such as "
                                    f"10.0.0.0/8 or 2001:db8::/32, not {network!r} (")
    assert result.stderr.count("\n") == 1


def test_check_names_the_trusted_networks(world, run):
    result = run("serve", "--trusted-network", "10.0.0.0/8", "--submission", "127.0.0.1:0", "--smtps",
                 "127.0.0.1:0", "--check", check_rc=0)
    assert "(no per-client cap for 10.0.0.0/8)" in result.stderr


EHLO_AFTER_TLS = b"localhost\nSIZE 26214400\n8BITMIME\nAUTH LOGIN PLAIN\nHELP"
EHLO_BEFORE_TLS = b"localhost\nSIZE 26214400\n8BITMIME\nSTARTTLS\nHELP"


def test_ehlo_after_starttls_offers_exactly_login_and_plain(serve):
    server = serve()
    client = smtplib.SMTP(*server.addresses["submission"], timeout=60)
    assert client.ehlo("client.example") == (250, EHLO_BEFORE_TLS)  # no AUTH before TLS
    client.starttls(context=TLS)
    assert client.ehlo("client.example") == (250, EHLO_AFTER_TLS)
    client.quit()


def test_ehlo_on_implicit_tls_offers_exactly_login_and_plain(serve):
    server = serve()
    client = smtplib.SMTP_SSL(*server.addresses["smtps"], context=TLS, timeout=60)
    assert client.ehlo("client.example") == (250, EHLO_AFTER_TLS)
    client.quit()
