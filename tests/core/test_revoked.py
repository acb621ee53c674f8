"""The short-lived record of revoked credentials (core/store/revoked.py), on
both backends: written in the transaction that revokes, read only while it
lasts, pruned by serve's housekeeping, left behind by `store copy`."""

from functools import partial

import pytest

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential, delete_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.settings import today
from smtpctl.core.metering.enforcement import block_account
from smtpctl.core.metering.live import admit_message, run_steps
from smtpctl.core.model import passwords
from smtpctl.core.store import Store, revoked, throttle
from smtpctl.core.store.copy import copy_into

PW = "a good long password"


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme", daily_limit=5)
        add_account(s, "other", "acme", daily_limit=100)
        add_domain(s, "d.example", account="shop")
        add_domain(s, "o.example", account="other")
        for login in ("a@d.example", "b@d.example", "x@o.example"):
            create_credential(s, login, PW)
        yield s


def cross(store):
    hashes = {c.login: c.password_hash for c in store.credentials(account="shop")}
    run_steps(store, [partial(admit_message, login="a@d.example", recipients=6, source_id="m1")],
              logins=["a@d.example"])
    return hashes


def test_crossing_the_limit_records_each_revoked_credential_with_its_day(store):
    hashes = cross(store)
    day = today(store)
    assert store.credentials(account="shop") == []
    for login in ("a@d.example", "b@d.example"):
        record = store.revoked_credential(login)
        assert (record.login, record.reason, record.day) == (login, "daily_limit", day)
        assert record.password_hash == hashes[login]  # the stored hash it had, never a password
        assert passwords.verify_password(PW, record.password_hash)[0]
    assert store.revoked_credential("x@o.example") is None  # another account's, live
    assert PW not in str(store.query("SELECT * FROM revoked_credentials"))


def test_a_revoking_block_records_operator_block_and_a_delete_records_nothing(store):
    delete_credential(store, "x@o.example")
    assert store.revoked_credential("x@o.example") is None
    block_account(store, "shop", "compliance review", revoke=True)
    record = store.revoked_credential("a@d.example")
    assert (record.reason, record.day) == ("operator_block", None)


def test_the_record_is_written_in_the_revoking_transaction(store):
    with pytest.raises(RuntimeError):
        with store.write():
            block_account(store, "shop", "compliance review", revoke=True)
            raise RuntimeError("undone")
    assert store.revoked_credential("a@d.example") is None
    assert len(store.credentials(account="shop")) == 2


def test_a_login_revoked_again_keeps_the_latest_revocation(store):
    block_account(store, "shop", "compliance review", revoke=True)
    store.execute("UPDATE accounts SET blocked_at = NULL, block_kind = NULL, block_reason = NULL")
    create_credential(store, "a@d.example", "another long password")
    cross(store)
    record = store.revoked_credential("a@d.example")
    assert record.reason == "daily_limit"
    assert passwords.verify_password("another long password", record.password_hash)[0]
    assert store.scalar("SELECT count(*) FROM revoked_credentials WHERE login = 'a@d.example'") == 1


def test_an_expired_record_is_never_read_and_serves_housekeeping_prunes_it(store):
    cross(store)
    with store.write():
        store.execute("UPDATE revoked_credentials SET expires = expires - ? WHERE login = 'a@d.example'",
                      [revoked.KEPT_FOR + 1])
    assert store.revoked_credential("a@d.example") is None
    assert store.revoked_credential("b@d.example") is not None
    throttle.reserve(store, "192.0.2.1", None, throttle.Limits(5, 10, 300.0), prune=True)
    assert [r["login"] for r in store.query("SELECT login FROM revoked_credentials")] == ["b@d.example"]


def test_store_copy_leaves_the_record_behind(store, tmp_path):
    cross(store)
    with Store.open(tmp_path / "copy.db") as dest:
        copy_into(store, dest)
        assert dest.query("SELECT * FROM revoked_credentials") == []
        assert dest.account("shop").blocked
