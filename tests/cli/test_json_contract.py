"""Pins the --json key sets scripts depend on (docs/json-output.md)."""

import json

AGENCY = {"name", "created_at"}
ACCOUNT = {"name", "agency", "daily_limit", "blocked", "blocked_at", "block_kind", "block_reason",
           "created_at", "updated_at"}
DOMAIN = {"name", "unicode_name", "kind", "account", "agency", "created_at"}


def j(cli, *args):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_contract(cli):
    assert set(j(cli, "agency", "add", "acme")) == AGENCY | {"status"}
    assert set(j(cli, "account", "add", "shop", "--agency", "acme")) == ACCOUNT | {"status"}
    assert set(j(cli, "domain", "add", "d.example", "--account", "shop")) == DOMAIN | {"status"}
    assert set(j(cli, "agency", "list")[0]) == AGENCY | {"accounts", "domains"}
    assert set(j(cli, "agency", "show", "acme")) == AGENCY | {"accounts", "domains", "credits", "billing", "statements"}
    assert set(j(cli, "account", "list")[0]) == ACCOUNT | {"effective_daily_limit", "domains"}
    assert set(j(cli, "account", "show", "shop")) == ACCOUNT | {"effective_daily_limit", "domains"}
    assert set(j(cli, "account", "set-limit", "shop", "10")) == ACCOUNT | {
        "status", "previous_daily_limit", "effective_daily_limit", "sent_today", "warnings"}
    assert set(j(cli, "domain", "list")[0]) == DOMAIN | {"credentials"}
    assert set(j(cli, "domain", "show", "d.example")) == DOMAIN | {"credentials"}
    assert set(j(cli, "store", "set", "timezone", "UTC")) == {"key", "value", "status", "warnings"}
    assert set(j(cli, "store", "unset", "timezone")) == {"key", "value", "status", "source", "warnings"}
    assert set(j(cli, "store", "info")) == {"path", "schema_version", "schema_step", "counts", "size_bytes"}
    assert set(j(cli, "domain", "remove", "d.example")) == DOMAIN | {"status", "deleted_credentials"}
    assert set(j(cli, "account", "rename", "shop", "store")) == ACCOUNT | {"status", "old_name"}
    assert set(j(cli, "account", "remove", "store", "--yes")) == ACCOUNT | {"status"}
    assert set(j(cli, "agency", "rename", "acme", "Acme Agency")) == AGENCY | {"status", "old_name"}
    assert set(j(cli, "agency", "remove", "Acme Agency", "--yes")) == AGENCY | {"status"}
    assert j(cli, "user", "delete", "gone@d.example", "--missing-ok") == {"login": "gone@d.example", "status": "missing"}
    assert j(cli, "user", "delete", "gone@d.example", "gone2@d.example", "--missing-ok") == [
        {"login": "gone@d.example", "status": "missing"}, {"login": "gone2@d.example", "status": "missing"}]


def test_timestamps_are_utc_z(cli):
    data = j(cli, "agency", "add", "acme")
    assert len(data["created_at"]) == 20 and data["created_at"].endswith("Z")


THROTTLED = {"scope", "key", "failures", "pending", "limit", "blocking", "unblocks_at", "clears_at"}


def test_auth_throttle_contract(cli, isolated_store):
    from smtpctl.core.store import Store, throttle

    with Store.open(isolated_store) as store:
        verdict = throttle.reserve(store, "203.0.113.7", "app@d.example", throttle.Limits(5, 10, 300.0))
        throttle.settle(store, verdict.attempt, True)
    listed = j(cli, "auth", "throttle", "list")
    assert [set(e) for e in listed] == [THROTTLED, THROTTLED]
    cleared = j(cli, "auth", "throttle", "clear", "--client", "203.0.113.7", "--yes")
    assert set(cleared) == {"client", "login", "removed", "before"} and set(cleared["before"][0]) == THROTTLED
