"""A PostgreSQL DSN's password never reaches a message (issue 23): not when
psycopg cannot parse the DSN and quotes it back, not when it cannot connect;
and a database that does not exist says how to create it (exit 7)."""

from __future__ import annotations

import pytest

from smtpctl.core.model.errors import ExitCode, StoreError
from smtpctl.core.store import Store
from tests.conftest import _pg_base, _with_database


@pytest.mark.parametrize("dsn, secret", [
    ("postgresql://app:50%off@localhost/db", "50%off"),  # psycopg: invalid percent-encoded token: "50%off"
    ("postgresql://app:s3cret-pw@[::1/db", "s3cret-pw"),  # a bad IPv6 host: psycopg quotes the whole URI
    ("postgresql://app@/db?host=/nonexistent&password=t0psecret", "t0psecret"),
])
def test_an_error_never_echoes_the_password(dsn, secret):
    with pytest.raises(StoreError) as err:
        Store.open(dsn)
    assert secret not in err.value.message
    assert err.value.exit_code == ExitCode.STORE
    assert "postgresql://" in err.value.message  # still says which store, as far as it can be read


def test_a_database_that_does_not_exist_says_how_to_create_it():
    dsn = _with_database(_pg_base(), "smtpctl_no_such_db")
    with pytest.raises(StoreError) as err:
        Store.open(dsn)
    assert err.value.message.startswith("the PostgreSQL database 'smtpctl_no_such_db' does not exist on postgresql://")
    assert err.value.message.endswith("create it first (as a role that may: createdb smtpctl_no_such_db, with the "
                                      "same host and user), then run the command again")
