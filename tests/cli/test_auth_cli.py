"""smtpctl auth throttle list/clear as real processes, on the test backend
(SMTPCTL_TEST_BACKEND): the throttle's rows are written by the throttle's own
functions, as serve writes them."""

import json
from pathlib import Path

import pytest

from smtpctl.core.store import Store, throttle

LIMITS = throttle.Limits(5, 10, 300.0)


def guess(store, client, login, failed=True):
    verdict = throttle.reserve(store, client, login, LIMITS)
    assert verdict.status == "ok"
    if failed:
        throttle.settle(store, verdict.attempt, True)


@pytest.fixture
def throttled_store(isolated_store):
    with Store.open(isolated_store) as store:
        for i in range(5):
            guess(store, "203.0.113.7", f"u{i % 2}@d.example")
        guess(store, "198.51.100.1", "u0@d.example", failed=False)  # being verified
        guess(store, "2001:db8:1:2::/64", "v6@d.example")
    return isolated_store


def rows(store_at):
    with Store.open(store_at) as store:
        return store.query("SELECT client, login, state FROM auth_attempts ORDER BY id")


def audit(store_at):
    with Store.open(store_at) as store:
        return store.query("SELECT actor, action, object_type, object_name, details FROM audit "
                           "WHERE action LIKE 'auth.%' ORDER BY id")


def listing(run, *args):
    return json.loads(run("auth", "throttle", "list", *args, "--json", check_rc=0).stdout)


def shape(entries):
    return [(e["scope"], e["key"], e["failures"], e["pending"], e["limit"], e["blocking"],
             e["unblocks_at"] is not None, e["clears_at"] is not None) for e in entries]


def test_list_shows_every_budget_in_use_and_whether_it_refuses(throttled_store, run):
    entries = listing(run)
    assert shape(entries) == [
        ("client", "198.51.100.1", 0, 1, 5, False, False, False),
        ("client", "2001:db8:1:2::/64", 1, 0, 5, False, False, True),
        ("client", "203.0.113.7", 5, 0, 5, True, True, True),
        ("login", "u0@d.example", 3, 1, 10, False, False, True),
        ("login", "u1@d.example", 2, 0, 10, False, False, True),
        ("login", "v6@d.example", 1, 0, 10, False, False, True),
    ]
    blocking = entries[2]
    assert blocking["unblocks_at"].endswith("Z") and len(blocking["unblocks_at"]) == 20
    assert set(entries[0]) == {"scope", "key", "failures", "pending", "limit", "blocking", "unblocks_at",
                               "clears_at"}
    # the caps serve runs with decide what refuses
    assert [e["blocking"] for e in listing(run, "--max-auth-failures", "6", "--max-auth-failures-per-login", "3")] \
        == [False, False, False, True, False, False]


def test_list_filters_by_client_and_login_as_serve_counts_them(throttled_store, run):
    assert shape(listing(run, "--client", "203.0.113.7")) == [("client", "203.0.113.7", 5, 0, 5, True, True, True)]
    assert [e["key"] for e in listing(run, "--client", "2001:db8:1:2:ffff::9")] == ["2001:db8:1:2::/64"]
    assert [e["key"] for e in listing(run, "--login", "U1@D.Example")] == ["u1@d.example"]
    assert [(e["scope"], e["key"]) for e in listing(run, "--client", "203.0.113.7", "--login", "v6@d.example")] \
        == [("client", "203.0.113.7"), ("login", "v6@d.example")]
    assert listing(run, "--client", "192.0.2.200") == []
    result = run("auth", "throttle", "list", "--client", "192.0.2.200", check_rc=0)
    assert (result.stdout, result.stderr) == ("", "Nothing is throttled.\n")
    table = run("auth", "throttle", "list", "--client", "203.0.113.7", check_rc=0).stdout
    assert "203.0.113.7" in table and "yes" in table


def test_clear_removes_the_clients_guesses_in_one_audited_step(throttled_store, run):
    before = rows(throttled_store)
    result = json.loads(run("auth", "throttle", "clear", "--client", "203.0.113.7", "--yes", "--json",
                            check_rc=0).stdout)
    assert (result["client"], result["login"], result["removed"]) == ("203.0.113.7", None, 5)
    assert shape(result["before"]) == [("client", "203.0.113.7", 5, 0, 5, True, True, True)]
    assert rows(throttled_store) == [r for r in before if r["client"] != "203.0.113.7"]
    assert listing(run, "--client", "203.0.113.7") == []
    assert shape(listing(run, "--login", "u0@d.example")) == [("login", "u0@d.example", 0, 1, 10, False, False, False)]
    [entry] = audit(throttled_store)
    assert (entry["actor"], entry["action"], entry["object_type"], entry["object_name"]) == (
        "tester", "auth.throttle_clear", "throttle", "203.0.113.7")
    assert json.loads(entry["details"]) == {"client": "203.0.113.7", "login": None, "removed": 5,
                                            "failures": {"client:203.0.113.7": 5},
                                            "blocking": ["client:203.0.113.7"]}
    shown = run("auth", "throttle", "list", check_rc=0)
    assert "203.0.113.7" not in shown.stdout


def test_clear_a_login_and_a_client_together_for_people(throttled_store, run):
    result = run("auth", "throttle", "clear", "--login", "U0@d.example", "--client", "2001:db8:1:2::1", "--yes",
                 check_rc=0)
    assert result.stdout == ""
    assert result.stderr == "Cleared 5 guesses of client 2001:db8:1:2::/64 and login u0@d.example.\n"
    assert {(r["client"], r["login"]) for r in rows(throttled_store)} == {("203.0.113.7", "u1@d.example")}
    assert json.loads(audit(throttled_store)[0]["details"])["removed"] == 5


@pytest.mark.parametrize("args, error", [
    ((), "Error: say whose guesses to clear: --client IP, --login LOGIN, or both\n"),
    (("--client", "203.0.113.999"), "Error: --client takes an IP address (an IPv6 client is counted as its /64), "
                                    "not '203.0.113.999'\n"),
    (("--client", "10.0.0.0/8"), "Error: --client takes an IP address (an IPv6 client is counted as its /64), "
                                 "not '10.0.0.0/8'\n"),
    (("--login", "not-a-login"), None),
])
def test_clear_refuses_bad_input_with_exit_2_and_changes_nothing(throttled_store, run, args, error):
    before = rows(throttled_store)
    result = run("auth", "throttle", "clear", *args, "--yes")
    assert result.returncode == 2 and result.stdout == ""
    if error is not None:
        assert result.stderr == error
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert rows(throttled_store) == before and audit(throttled_store) == []
    listed = run("auth", "throttle", "list", *[a for a in args if a != "--yes"])
    if args and args[0] == "--client":
        assert (listed.returncode, listed.stderr) == (2, error)


def test_clear_without_a_terminal_needs_yes(throttled_store, run):
    before = rows(throttled_store)
    result = run("auth", "throttle", "clear", "--client", "203.0.113.7")
    assert result.returncode == 2
    assert result.stderr == ("Error: Clear the AUTH throttle's guesses of client 203.0.113.7? Refusing without --yes "
                             "(no terminal to confirm on); nothing was changed\n")
    assert rows(throttled_store) == before and audit(throttled_store) == []


def test_list_on_a_fresh_install_is_empty_and_creates_nothing(run, isolated_store):
    assert listing(run) == []
    if isinstance(isolated_store, Path):
        assert not isolated_store.exists()
