"""notify's commands and the notices each real command writes, on the real
smtpctl (subprocesses), on both backends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from smtpctl.core.store import Store

ENDPOINT = {"id", "url", "events", "created_at"}


def outbox(where) -> list[dict]:
    with Store.open(where) as store:
        return [{**row, "data": json.loads(row["data"])} for row in store.notices()]


def kinds(where) -> list[str]:
    return [row["kind"] for row in outbox(where)]


def snapshot(where) -> dict[str, list]:
    with Store.open(where) as store:
        return {table: store.query(f"SELECT * FROM {table} ORDER BY {order}")
                for table, order in (("notices", "id"), ("notify_endpoints", "id"),
                                     ("notice_deliveries", "notice_id, endpoint_id"), ("audit", "id"))}


@pytest.fixture
def seeded(run, isolated_store):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    return isolated_store


def test_add_list_remove_and_their_json(run, seeded):
    added = json.loads(run("notify", "add", "https://hooks.example.net/x", "--event", "credential.created",
                           "--event", "limit.crossed", "--json", check_rc=0).stdout)
    assert set(added) == ENDPOINT | {"status", "secret"}
    assert added["events"] == ["credential.created", "limit.crossed"] and added["status"] == "created"
    assert added["secret"].startswith("whsec_")
    listed = json.loads(run("notify", "list", "--json", check_rc=0).stdout)
    assert listed == [{key: added[key] for key in ENDPOINT}]  # no secret
    assert added["secret"] not in run("notify", "list", check_rc=0).stdout
    assert run("notify", "list", "--csv", check_rc=0).stdout == (
        f"id,url,events,created_at\n{added['id']},https://hooks.example.net/x,credential.created limit.crossed,"
        f"{added['created_at']}\n")
    # a generated secret goes to stdout once, as data, without --json too
    plain = run("notify", "add", "http://127.0.0.1:9/hook", check_rc=0)
    assert plain.stdout.startswith("whsec_") and len(plain.stdout.splitlines()) == 1
    assert "shown once" in plain.stderr
    removed = json.loads(run("notify", "remove", str(added["id"]), "--json", check_rc=0).stdout)
    assert removed == {**{key: added[key] for key in ENDPOINT}, "status": "deleted"}
    assert [e["url"] for e in json.loads(run("notify", "list", "--json", check_rc=0).stdout)] == [
        "http://127.0.0.1:9/hook"]
    actions = [row["action"] for row in snapshot(seeded)["audit"] if row["action"].startswith("notify.")]
    assert actions == ["notify.add", "notify.add", "notify.remove"]
    assert all("whsec_" not in row["details"] for row in snapshot(seeded)["audit"])


def test_a_secret_file_is_the_endpoints_secret(run, seeded, tmp_path):
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # 32 bytes
    path = tmp_path / "secret"
    path.write_text(secret + "\n")
    added = json.loads(run("notify", "add", "https://h.example/x", "--secret-file", str(path), "--json",
                           check_rc=0).stdout)
    assert "secret" not in added
    with Store.open(seeded) as store:
        assert store.endpoint(added["id"])["secret"] == secret


@pytest.mark.parametrize("args, content, error", [
    (["ftp://h.example/x"], None, "a webhook URL is https://HOST/PATH (or http:// to a loopback address), not "
                                  "'ftp://h.example/x'"),
    (["h.example/x"], None, "a webhook URL is https://HOST/PATH (or http:// to a loopback address), not "
                            "'h.example/x'"),
    (["https://"], None, "a webhook URL is https://HOST/PATH (or http:// to a loopback address), not 'https://'"),
    (["http://hooks.example.net/x"], None, "http:// sends notices unencrypted; use https://, or http:// to a "
     "loopback address (127.0.0.1, ::1, localhost), or pass --allow-insecure: 'http://hooks.example.net/x'"),
    (["http://10.0.0.1/x"], None, "http:// sends notices unencrypted; use https://, or http:// to a loopback "
     "address (127.0.0.1, ::1, localhost), or pass --allow-insecure: 'http://10.0.0.1/x'"),
    (["https://u:p@h.example/x"], None, "a webhook URL must not carry a user or password: the store and the "
     "audit trail keep it in the clear; notices are signed with the endpoint's secret instead"),
    (["https://h.example/x", "--event", "credential.made"], None, "unknown event kind 'credential.made'; the "
     "kinds are: credential.created, credential.reset, credential.deleted, account.blocked, account.unblocked, "
     "limit.crossed, limit.warning, statement.closed, credits.low, credits.exhausted"),
    (["https://h.example/x"], b"", "--secret-file {path} is empty; it must hold one whsec_... secret"),
    (["https://h.example/x"], b"\n", "--secret-file {path} is empty; it must hold one whsec_... secret"),
    (["https://h.example/x"], b"whsec_" + b"A" * 2000,
     "--secret-file {path} holds more than 1,024 bytes; a password is one short line"),
    (["https://h.example/x"], b"hunter2", "--secret-file {path} does not hold a whsec_... secret (Standard "
     "Webhooks' format)"),
    (["https://h.example/x"], b"whsec_!!notbase64!!", "--secret-file {path}: the part after whsec_ is not base64"),
    (["https://h.example/x"], b"whsec_c2hvcnQ=", "--secret-file {path}: the secret is 5 bytes; it must be 24 to "
     "64 bytes (base64 after whsec_)"),
    (["https://h.example/x"], b"whsec_\xff\xfe", "--secret-file {path} is not UTF-8 text (invalid byte at "
     "offset 6)"),
])
def test_bad_input_is_exit_2_and_changes_nothing(run, seeded, tmp_path, args, content, error):
    before = snapshot(seeded)
    extra = []
    path = tmp_path / "secret"
    if content is not None:
        path.write_bytes(content)
        extra = ["--secret-file", str(path)]
    proc = run("notify", "add", *args, *extra)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"Error: {error.format(path=path)}\n")
    assert snapshot(seeded) == before


def test_http_to_a_remote_host_with_allow_insecure(run, seeded):
    run("notify", "add", "http://hooks.example.net/x", "--allow-insecure", check_rc=0)


def test_missing_endpoint_is_exit_3(run, seeded):
    for command in ("remove", "test"):
        proc = run("notify", command, "7")
        assert (proc.returncode, proc.stderr) == (
            3, "Error: webhook endpoint 7 not found; list them with: smtpctl notify list\n")
    proc = run("notify", "remove", "x")
    assert proc.returncode == 2 and proc.stderr.startswith("Error: the endpoint id must be a whole number")


def test_log_limit_is_checked(run, seeded):
    proc = run("notify", "log", "--limit", "-1")
    assert proc.returncode == 2 and proc.stderr.startswith("Error: ")
    assert json.loads(run("notify", "log", "--json", check_rc=0).stdout) == []
    assert json.loads(run("notify", "log", "--failed", "--json", check_rc=0).stdout) == []


# -- the notices each real command writes ------------------------------------------------------------------

def test_credential_commands_emit_their_notices(run, seeded):
    run("notify", "add", "https://h.example/x", "--event", "credential.deleted", check_rc=0)
    run("user", "create", "a@d.example", "--generate", check_rc=0)
    run("user", "reset", "a@d.example", "--generate", check_rc=0)
    run("user", "delete", "a@d.example", "--yes", check_rc=0)
    notices = outbox(seeded)
    assert [(n["kind"], n["data"]) for n in notices] == [
        (kind, {"login": "a@d.example", "domain": "d.example", "account": "shop", "via": "user"})
        for kind in ("credential.created", "credential.reset", "credential.deleted")]
    assert all(n["msg_id"].startswith("msg_") and len(n["msg_id"]) == 30 for n in notices)
    assert all(len(n["created_at"]) == 20 and n["created_at"].endswith("Z") for n in notices)
    # only the kind the endpoint takes has a delivery
    log = json.loads(run("notify", "log", "--json", check_rc=0).stdout)
    assert [(row["type"], row["status"], row["attempts"]) for row in log] == [("credential.deleted", "pending", 0)]


def test_a_failing_create_leaves_no_notice(run, seeded):
    for n in range(5):
        run("user", "create", f"u{n}@d.example", "--generate", check_rc=0)
    assert kinds(seeded) == ["credential.created"] * 5
    proc = run("user", "create", "u5@d.example", "--generate")
    assert proc.returncode == 5  # the domain's cap: nothing written, no notice
    run("account", "block", "shop", "--reason", "review", check_rc=0)
    assert run("user", "create", "x@d.example", "--generate").returncode == 6
    assert kinds(seeded) == ["credential.created"] * 5 + ["account.blocked"]


def test_block_unblock_and_revoke(run, seeded):
    run("user", "create", "a@d.example", "--generate", check_rc=0)
    run("account", "block", "shop", "--reason", "spam complaints", "--revoke", "--yes", check_rc=0)
    run("account", "unblock", "shop", check_rc=0)
    notices = outbox(seeded)[1:]
    assert [(n["kind"], n["data"]) for n in notices] == [
        ("credential.deleted", {"login": "a@d.example", "domain": "d.example", "account": "shop", "via": "block"}),
        ("account.blocked", {"account": "shop", "block_kind": "manual", "reason": "spam complaints",
                             "revoked_credentials": ["a@d.example"]}),
        ("account.unblocked", {"account": "shop", "was": "manual", "reason": "spam complaints",
                               "blocked_since": notices[2]["data"]["blocked_since"]}),
    ]


def test_crossing_the_daily_limit(run, seeded):
    run("account", "set-limit", "shop", "2", check_rc=0)
    run("user", "create", "a@d.example", "--generate", check_rc=0)
    run("user", "create", "b@d.example", "--generate", check_rc=0)
    run("usage", "record", "--user", "a@d.example", "--to", "x@e.example", "--to", "y@e.example",
        "--to", "z@e.example", check_rc=0)
    notices = outbox(seeded)[2:]
    crossed = [n for n in notices if n["kind"] == "limit.crossed"]
    assert len(crossed) == 1
    day = crossed[0]["data"]["day"]
    assert crossed[0]["data"] == {"scope": "account", "subject": "shop", "window": "day", "period": day,
                                  "account": "shop", "day": day, "emails": 3, "limit": 2,
                                  "enforced": True, "blocked": True,
                                  "revoked_credentials": ["a@d.example", "b@d.example"]}
    # 0 -> 3 of 2: past 80% and 95% in one message (metering/notices.py), then the crossing's own notices
    assert [n["kind"] for n in notices] == ["limit.warning", "limit.warning", "credential.deleted",
                                            "credential.deleted", "account.blocked", "limit.crossed"]
    assert [n["data"]["level"] for n in notices[:2]] == [80, 95]
    assert {n["data"]["via"] for n in notices[2:4]} == {"daily_limit"}
    assert notices[4]["data"]["block_kind"] == "limit"


def test_domain_removal_tells_of_its_credentials(run, seeded):
    run("user", "create", "a@d.example", "--generate", check_rc=0)
    run("domain", "remove", "d.example", "--yes", check_rc=0)
    assert outbox(seeded)[-1]["data"] == {"login": "a@d.example", "domain": "d.example", "account": "shop",
                                          "via": "domain.remove"}


def test_apply_and_import_emit_with_their_via(run, seeded, tmp_path):
    doc = tmp_path / "fleet.toml"
    doc.write_text('[[credentials]]\nlogin = "ci@d.example"\ngenerate = true\n')
    run("apply", str(doc), "--secrets-out", str(tmp_path / "s.toml"), check_rc=0)
    assert [(n["kind"], n["data"]["via"]) for n in outbox(seeded)] == [("credential.created", "apply")]


def test_statement_and_credits(run, seeded):
    last_month = datetime.now(timezone.utc).date().replace(day=1) - timedelta(days=1)
    run("user", "create", "a@d.example", "--generate", check_rc=0)
    run("usage", "record", "--user", "a@d.example", "--to", "x@e.example",
        "--at", f"{last_month.isoformat()}T12:00:00Z", check_rc=0)
    closed = json.loads(run("billing", "close", last_month.strftime("%Y-%m"), "--json", check_rc=0).stdout)
    statement = outbox(seeded)[-1]
    assert statement["kind"] == "statement.closed"
    assert {k: statement["data"][k] for k in ("number", "agency", "month", "total")} == {
        "number": closed[0]["number"], "agency": "acme", "month": last_month.strftime("%Y-%m"),
        "total": closed[0]["total"]}
    run("billing", "close", last_month.strftime("%Y-%m"), check_rc=0)  # unchanged: no second notice
    assert kinds(seeded).count("statement.closed") == 1
    # prepaid with nothing credited: used up; a warning level above the balance: low, once per level
    run("billing", "set-mode", "acme", "prepaid", check_rc=0)
    run("billing", "set-warn", "acme", "5", check_rc=0)
    run("billing", "set-warn", "acme", "5", check_rc=0)
    run("billing", "set-mode", "acme", "postpaid", check_rc=0)
    run("billing", "set-mode", "acme", "prepaid", check_rc=0)
    assert kinds(seeded)[-2:] == ["credits.exhausted", "credits.low"]
    last = outbox(seeded)[-1]["data"]
    assert (last["agency"], last["mode"], last["warn_below"], last["low"]) == ("acme", "prepaid", "5.00", True)
    run("billing", "credit", "acme", "1", check_rc=0)  # a top-up still under the level: a new episode
    run("billing", "set-warn", "acme", "6", check_rc=0)
    assert kinds(seeded)[-3:] == ["credits.exhausted", "credits.low", "credits.low"]
