import json

import pytest

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import (
    create_credential,
    delete_credential,
    reset_credential,
    smtp_settings,
    verify_credential,
)
from smtpctl.core.directory.domains import add_domain, domain_removal_plan, remove_domain
from smtpctl.core.directory.settings import set_setting
from smtpctl.core.model import passwords, rules
from smtpctl.core.model.errors import AlreadyExists, AuthFailed, Blocked, InvalidInput, LimitReached, NotFound
from smtpctl.core.store import Store

PW = "a good long password"


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme")
        add_domain(s, "d.example", account="shop")
        add_domain(s, "shared.example", agency="acme")
        yield s


@pytest.mark.parametrize("login, expected", [
    ("Alice@D.Example", ("alice", "d.example")),
    ("first.last+tag@d.example", ("first.last+tag", "d.example")),
    ("x_y-z@bücher.example", ("x_y-z", "xn--bcher-kva.example")),
])
def test_logins_are_normalised(login, expected):
    assert rules.parse_login(login) == expected


@pytest.mark.parametrize("login", [
    "alice", "@d.example", "a@b@d.example", ".alice@d.example", "alice.@d.example", "a..b@d.example",
    "a b@d.example", "a:b@d.example", "a" * 65 + "@d.example", "alice@localhost", "a\"b@d.example",
])
def test_bad_logins(login):
    with pytest.raises(InvalidInput):
        rules.parse_login(login)


def test_create_and_verify(store):
    outcome = create_credential(store, "Alice@D.example", PW)
    assert (outcome.status, outcome.object.login, outcome.extra) == ("created", "alice@d.example", {})
    assert verify_credential(store, "alice@d.example", PW).login == "alice@d.example"
    with pytest.raises(AuthFailed):
        verify_credential(store, "alice@d.example", PW + "!")


def test_generated_password_is_returned_once_and_works(store):
    outcome = create_credential(store, "bot@d.example", None)
    secret = outcome.extra["password"]
    assert verify_credential(store, "bot@d.example", secret)
    assert "password" not in outcome.object.as_dict()


def test_refusals_write_nothing(store):
    create_credential(store, "a@d.example", PW)
    audit_before = store.scalar("SELECT count(*) FROM audit")
    with pytest.raises(NotFound, match="domain 'nope.example' not found"):
        create_credential(store, "a@nope.example", PW)
    with pytest.raises(InvalidInput, match="agency-assigned domain"):
        create_credential(store, "a@shared.example", PW)
    with pytest.raises(AlreadyExists, match="a@d.example already exists"):
        create_credential(store, "A@d.example", PW)
    with pytest.raises(InvalidInput, match="too short"):
        create_credential(store, "b@d.example", "short")
    assert [c.login for c in store.credentials()] == ["a@d.example"]
    assert store.scalar("SELECT count(*) FROM audit") == audit_before


def test_exist_ok_leaves_the_password(store):
    create_credential(store, "a@d.example", PW)
    again = create_credential(store, "a@d.example", "another password here", exist_ok=True)
    assert again.status == "unchanged" and again.extra == {}
    assert verify_credential(store, "a@d.example", PW)


def test_cap_of_five_per_domain_names_the_five(store):
    for i in range(5):
        create_credential(store, f"u{i}@d.example", PW)
    with pytest.raises(LimitReached) as err:
        create_credential(store, "u5@d.example", PW)
    assert str(err.value) == (
        "d.example already holds 5 SMTP credentials, the most a domain may hold (5): "
        "u0@d.example, u1@d.example, u2@d.example, u3@d.example, u4@d.example; delete one first"
    )
    delete_credential(store, "u0@d.example")
    assert create_credential(store, "u5@d.example", PW).status == "created"


def test_same_name_on_two_domains_is_two_credentials(store):
    add_domain(store, "e.example", account="shop")
    create_credential(store, "alice@d.example", PW)
    create_credential(store, "alice@e.example", "a different password")
    with pytest.raises(AuthFailed):
        verify_credential(store, "alice@e.example", PW)


def test_blocked_account_cannot_create(store):
    with store.write():
        store.execute("UPDATE accounts SET blocked_at = '2026-01-01T00:00:00Z', block_kind = 'manual'")
    with pytest.raises(Blocked) as err:
        create_credential(store, "a@d.example", PW)
    assert str(err.value) == ("SMTP Credential creation is blocked. Please contact support… (account shop is blocked "
                              "by an operator; more: smtpctl account show shop)")


def test_reset_changes_password_and_updated_time(store):
    create_credential(store, "a@d.example", PW)
    with store.write():
        store.execute("UPDATE credentials SET updated_at = '2000-01-01T00:00:00Z'")
    outcome = reset_credential(store, "a@d.example", "the new password 1")
    assert outcome.object.updated_at != "2000-01-01T00:00:00Z"
    with pytest.raises(AuthFailed):
        verify_credential(store, "a@d.example", PW)
    assert verify_credential(store, "a@d.example", "the new password 1")


def test_verify_rehashes_a_deprecated_hash(store):
    from passlib.hash import bcrypt

    create_credential(store, "old@d.example", PW)
    with store.write():
        store.execute("UPDATE credentials SET password_hash = ?", [bcrypt.using(rounds=5).hash(PW)])
    assert store.credential("old@d.example").scheme == "bcrypt"
    assert verify_credential(store, "old@d.example", PW).scheme == "argon2id"
    last = store.query("SELECT action, details FROM audit ORDER BY id DESC LIMIT 1")[0]
    assert (last["action"], json.loads(last["details"])) == ("credential.rehash", {"from": "bcrypt", "to": "argon2id"})


def test_remove_domain_deletes_its_credentials(store):
    create_credential(store, "a@d.example", PW)
    create_credential(store, "b@d.example", PW)
    plan = domain_removal_plan(store, "d.example")
    assert plan == {"domain": "d.example", "credentials": ["a@d.example", "b@d.example"]}
    with pytest.raises(InvalidInput, match="changed while you confirmed"):
        remove_domain(store, "d.example", expected=["a@d.example"])
    outcome = remove_domain(store, "d.example", expected=plan["credentials"])
    assert outcome.extra == {"deleted_credentials": ["a@d.example", "b@d.example"]}
    assert store.credentials() == []


def test_audit_never_holds_a_secret(store):
    create_credential(store, "a@d.example", PW)
    generated = create_credential(store, "b@d.example", None).extra["password"]
    reset_credential(store, "a@d.example", "yet another password")
    verify_credential(store, "a@d.example", "yet another password")
    delete_credential(store, "b@d.example")
    dump = json.dumps(store.query("SELECT * FROM audit"))
    for secret in (PW, generated, "yet another password", "$argon2id$"):
        assert secret not in dump
    actions = [r["action"] for r in store.query("SELECT action FROM audit WHERE object_type = 'credential'")]
    assert actions == ["credential.create", "credential.create", "credential.reset", "credential.delete"]


def test_settings_block(store):
    create_credential(store, "a@d.example", PW)
    data = smtp_settings(store, "A@d.example")
    assert data["host"] == "smtp.mailgun.org" and data["username"] == "a@d.example"
    assert [(p["port"], p["security"]) for p in data["ports"]] == [
        (25, "plain or STARTTLS"), (465, "implicit TLS"), (587, "STARTTLS"), (2525, "STARTTLS")]
    set_setting(store, "smtp_host", "smtp.example.net")
    assert smtp_settings(store)["host"] == "smtp.example.net"
    with pytest.raises(NotFound):
        smtp_settings(store, "ghost@d.example")


def test_hash_parameters_are_what_dovecot_accepts():
    stored = passwords.hash_password(PW)
    assert ",p=1$" in stored
