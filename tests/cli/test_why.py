"""`smtpctl why` (issue 25): can a credential or an account send now, and
every reason it cannot, each with the command that fixes it. Real
processes of the installed smtpctl, on the test backend's store."""

from __future__ import annotations

import json

import pytest

PW = "a good long password"


@pytest.fixture
def shop(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "10", check_rc=0)
    run("domain", "add", "shop.test", "--account", "shop", check_rc=0)
    run("domain", "add", "shared.acme.test", "--agency", "acme", check_rc=0)
    for login in ("app@shop.test", "ops@shop.test"):
        run("user", "create", login, "--password-stdin", input=PW + "\n", check_rc=0)


def why(run, subject: str) -> dict:
    return json.loads(run("why", subject, "--json", check_rc=0).stdout)


def send(run, login: str, n: int, rc: int = 0) -> None:
    run("usage", "record", "--user", login, "--recipients", str(n), check_rc=rc)


def kinds(answer: dict, key: str = "reasons") -> list[str]:
    return [r["kind"] for r in answer[key]]


def test_a_fresh_credential_can_send_and_shows_its_limits(shop, run):
    answer = why(run, "App@Shop.test")
    assert (answer["subject"], answer["account"], answer["can_send"], answer["reasons"]) == (
        "app@shop.test", "shop", True, [])
    assert kinds(answer, "notes") == ["sender_alignment"]
    (day,) = answer["limits"]
    assert {k: day[k] for k in ("scope", "subject", "window", "used", "limit")} == {
        "scope": "account", "subject": "shop", "window": "day", "used": 0, "limit": 10}
    assert day["resets_at"].endswith("T00:00:00Z")


def test_after_the_daily_limit_every_reason_and_its_fix(shop, run):
    send(run, "app@shop.test", 8)
    near = why(run, "shop")
    assert near["can_send"] and kinds(near, "notes") == ["limit_near", "sender_alignment"]
    send(run, "app@shop.test", 5)  # 8 -> 13: crosses, both credentials revoked, creation blocked
    answer = why(run, "app@shop.test")
    assert answer["can_send"] is False
    assert kinds(answer) == ["credential_revoked", "account_blocked", "limit_exceeded"]
    revoked, blocked, limit = answer["reasons"]
    assert "app@shop.test was revoked at " in revoked["detail"]
    assert "crossed its daily limit of 10 emails on " in revoked["detail"] and "(13 sent)" in revoked["detail"]
    assert revoked["fix"] == "smtpctl account unblock shop"  # creation is blocked until then
    assert blocked["detail"].startswith("account shop is blocked since ")
    assert " by tester (crossing its daily limit: daily limit of 10 emails exceeded on " in blocked["detail"]
    assert blocked["fix"] == "smtpctl account unblock shop"
    assert limit["detail"].startswith("account shop is over its daily limit (13 of 10 emails today)")
    assert limit["fix"] == "smtpctl account set-limit shop N"
    assert kinds(why(run, "shop")) == ["no_credentials", "account_blocked", "limit_exceeded"]
    text = run("why", "app@shop.test", check_rc=0).stdout
    assert text.startswith("app@shop.test cannot send now.\nWhy:\n  - app@shop.test was revoked at ")
    assert "    fix: smtpctl account unblock shop\n" in text and "Limits:\n  account shop, day: 13 of 10" in text


def test_a_full_credential_cap_stops_that_credential_alone(shop, run):
    run("user", "set-limit", "app@shop.test", "2", "--window", "hour", check_rc=0)
    send(run, "app@shop.test", 3)  # 0 -> 3: the crossing message
    answer = why(run, "app@shop.test")
    assert answer["can_send"] is False and kinds(answer) == ["limit_reached"]
    reason = answer["reasons"][0]
    assert reason["detail"].startswith("credential app@shop.test has reached its hourly limit (3 of 2 emails): "
                                       "refused until ")
    assert reason["fix"] == "smtpctl user set-limit app@shop.test N --window hour"
    assert [(lim["scope"], lim["window"], lim["used"], lim["limit"]) for lim in answer["limits"]] == [
        ("account", "day", 3, 10), ("credential", "hour", 3, 2)]
    assert why(run, "ops@shop.test")["can_send"] is True
    send(run, "app@shop.test", 1, rc=5)
    send(run, "ops@shop.test", 1)


def test_a_manual_block_with_live_credentials_is_a_note(shop, run):
    run("account", "block", "shop", "--reason", "compliance review", check_rc=0)
    answer = why(run, "app@shop.test")
    assert answer["can_send"] is True and kinds(answer, "notes")[0] == "account_blocked"
    assert "(an operator: compliance review)" in answer["notes"][0]["detail"]


def test_used_up_prepaid_credits(shop, run):
    run("billing", "set-mode", "acme", "prepaid", check_rc=0)
    answer = why(run, "app@shop.test")
    assert answer["can_send"] is False and kinds(answer) == ["out_of_credits"]
    assert answer["reasons"][0]["fix"] == "smtpctl billing credit acme AMOUNT"


def test_a_deleted_and_a_never_created_credential(shop, run):
    run("user", "delete", "ops@shop.test", "--yes", check_rc=0)
    deleted = why(run, "ops@shop.test")
    assert kinds(deleted) == ["credential_deleted"] and deleted["reasons"][0]["detail"].endswith(" by tester")
    assert deleted["reasons"][0]["fix"] == "smtpctl user create ops@shop.test --generate"
    assert kinds(why(run, "nobody@shop.test")) == ["credential_missing"]


@pytest.mark.parametrize("subject,rc,error", [
    ("ghost", 3, "Error: account 'ghost' not found\n"),
    ("a@nowhere.test", 3, "Error: domain nowhere.test is not in the store, so a@nowhere.test is not a credential of "
                          "this service\n"),
    ("a@shared.acme.test", 2, "Error: a@shared.acme.test cannot send: shared.acme.test is agency-assigned and "
                              "holds no SMTP credentials\n"),
    ("not a login@", 2, None),
])
def test_subjects_it_cannot_answer_for(shop, run, subject, rc, error):
    result = run("why", subject, "--json")
    assert (result.returncode, result.stdout) == (rc, "")
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    if error:
        assert result.stderr == error


def test_a_login_out_of_password_guesses_is_a_reason_with_its_clear(shop, run, isolated_store):
    """Failed AUTH guesses written by the throttle's own code (as serve does),
    from several clients: a note while under serve's default per-login cap
    (10), a reason at it, and `auth throttle clear` lifts it."""
    from smtpctl.core.store import Store, throttle

    limits = throttle.Limits(100, 10, 300.0)

    def guesses(n: int) -> None:
        with Store.open(isolated_store) as store:
            for i in range(n):
                verdict = throttle.reserve(store, f"192.0.2.{i + 1}", "app@shop.test", limits)
                throttle.settle(store, verdict.attempt, True)

    guesses(3)
    answer = why(run, "app@shop.test")
    assert answer["can_send"] is True and "auth_failures" in kinds(answer, "notes")
    guesses(7)
    answer = why(run, "app@shop.test")
    assert answer["can_send"] is False and kinds(answer) == ["auth_throttled"]
    assert answer["reasons"][0]["detail"].startswith("app@shop.test has 10 failed password guesses counted (cap 10)")
    assert answer["reasons"][0]["fix"] == "smtpctl auth throttle clear --login app@shop.test"
    run("auth", "throttle", "clear", "--login", "app@shop.test", "--yes", check_rc=0)
    assert why(run, "app@shop.test")["can_send"] is True
