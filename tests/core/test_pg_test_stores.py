"""The PostgreSQL pass's per-test store (tests/conftest.py, ``_PgStores``):
each test gets back a fresh store, as a new database would be."""

from __future__ import annotations

import psycopg
import pytest

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.settings import set_setting
from smtpctl.core.model.errors import StoreError
from smtpctl.core.store import Store
from smtpctl.core.store.copy import is_empty
from tests.conftest import _pg_base, _PgStores


@pytest.fixture
def stores():
    stores = _PgStores(_pg_base())
    stores.start()
    try:
        yield stores
    finally:
        stores.stop()


def fill(dsn: str) -> None:
    with Store.open(dsn, actor="t") as store:
        add_agency(store, "acme")
        add_account(store, "shop", "acme", daily_limit=5)
        set_setting(store, "timezone", "Europe/Berlin")


def test_a_used_store_comes_back_empty_with_ids_from_one_and_its_guards(stores):
    first = stores.take()
    fill(first)
    holder = psycopg.connect(first, autocommit=True)  # a connection the test left open
    again = stores.take()
    assert again == first and _gone(holder)  # ended, so it cannot write into the next test
    with Store.open(again) as store:
        assert is_empty(store)
        fill(again)
        assert [a.id for a in store.agencies()] == [1]
        with pytest.raises(StoreError, match="append-only"):  # the audit trail still refuses changes
            store.execute("DELETE FROM audit")


def test_a_store_whose_schema_a_test_changed_is_copied_again(stores):
    first = stores.take()
    with psycopg.connect(first, autocommit=True) as conn:
        conn.execute("ALTER TABLE agencies ADD COLUMN colour TEXT")
    second = stores.take()
    assert second != first
    with Store.open(second) as store:
        assert "colour" not in store.columns("agencies") and is_empty(store)


def _gone(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False
