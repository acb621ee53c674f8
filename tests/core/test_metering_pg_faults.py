"""Group commit's metering batch on PostgreSQL when things go wrong inside
it: a connection lost, a step rolled back after it took an account's lock,
a login spelled another way than it is stored, a table locked by an
operator under MAIL's read. Each answer must still be the truth about what
was written, and each cap must still be held under its lock."""

import psycopg
import pytest

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.settings import today
from smtpctl.core.metering.live import admit_message, envelope_check, run_steps
from smtpctl.core.model.errors import StoreError
from smtpctl.core.store import Store
from smtpctl.core.store.postgresql import ACCOUNT_LOCKS
from tests.core.test_metering import PW, admit, events, statuses


@pytest.fixture
def store(pg_dsn):
    with Store.open(pg_dsn, actor="ops") as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme", daily_limit=100)
        add_account(s, "other", "acme", daily_limit=100)
        add_domain(s, "d.example", account="shop")
        add_domain(s, "o.example", account="other")
        for login in ("a@d.example", "x@o.example"):
            create_credential(s, login, PW)
        yield s


def kill_connection(pg_dsn: str, store: Store) -> None:
    """What a server restart or a failover does to the store's session."""
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [store.conn.info.backend_pid]).fetchone()[0]


def other_node_can_lock(pg_dsn: str, account_id: int) -> bool:
    with psycopg.connect(pg_dsn) as other:
        got = other.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [ACCOUNT_LOCKS, account_id]).fetchone()[0]
        other.rollback()
        return got


def test_a_connection_lost_in_the_savepoint_rerun_fails_the_whole_batch(pg_dsn, store):
    calls = 0

    def flaky(s: Store):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the first run fails: the batch runs again, each step in its savepoint")
        kill_connection(pg_dsn, s)
        s.now()  # meets the lost connection

    steps = [admit("a@d.example", 3, "m1"), flaky, admit("a@d.example", 3, "m2")]
    # m1 ran on the lost session: no answer may say it was recorded (it would be delivered unbilled).
    with pytest.raises(StoreError):
        run_steps(store, steps, logins=["a@d.example"] * 3)
    assert events(store) == []  # the store reconnects for the next statement
    again = run_steps(store, [admit("a@d.example", 3, "m1")], logins=["a@d.example"])
    assert statuses(again) == ["accepted"] and events(store) == ["m1"]


def test_a_connection_lost_in_the_first_run_is_run_again_on_a_new_one(pg_dsn, store):
    calls = 0

    def flaky(s: Store):
        nonlocal calls
        calls += 1
        if calls == 1:
            kill_connection(pg_dsn, s)
            s.now()
        return "ok"

    answers = run_steps(store, [admit("a@d.example", 3, "m1"), flaky, admit("a@d.example", 3, "m2")],
                              logins=["a@d.example"] * 3)
    assert statuses(answers) == ["accepted", "str", "accepted"]
    assert events(store) == ["m1", "m2"]
    day = today(store)
    shop = store.account("shop").id
    assert store.outbound_totals([(shop, day)]) == {(shop, day): 6}


def test_a_step_rolled_back_gives_back_the_account_lock_it_took(pg_dsn, store):
    shop = store.account("shop").id
    seen: dict[str, bool] = {}

    def late_lock_then_fail(s: Store):
        admit_message(s, "a@d.example", 1, "p1")  # not announced: takes shop's lock inside its savepoint
        seen["held in the step"] = s.holds_account(shop)
        raise RuntimeError("a statement timeout, say, after the lock")

    def probe(s: Store):
        seen["held after its rollback"] = s.holds_account(shop)
        seen["free for another node then"] = other_node_can_lock(pg_dsn, shop)
        return "probe"

    def probe_after(s: Store):
        seen["free for another node after p2"] = other_node_can_lock(pg_dsn, shop)
        return "probe"

    steps = [late_lock_then_fail, probe, admit("a@d.example", 1, "p2"), probe_after]
    answers = run_steps(store, steps, logins=["x@o.example"] * 4)  # shop not announced
    assert statuses(answers) == ["RuntimeError", "str", "accepted", "str"]
    # The rollback to the savepoint gave the lock back: the store must know, and
    # p2 must take it again before it reads and writes shop's total.
    assert seen == {"held in the step": True, "held after its rollback": False, "free for another node then": True,
                    "free for another node after p2": False}
    assert events(store) == ["p2"]


def test_a_login_is_locked_up_front_as_it_is_stored(pg_dsn, store):
    """The policy service announces ``sasl_username`` as Postfix sends it: a
    trailing dot or capitals name the same stored domain, and its account is
    locked with the others, in ascending order, before any step runs."""
    shop, other = store.account("shop").id, store.account("other").id
    seen: dict[str, bool] = {}

    def probe(s: Store):
        seen["shop"], seen["other"] = s.holds_account(shop), s.holds_account(other)
        return "probe"

    answers = run_steps(store, [probe, admit("A@D.Example.", 1, "q1")], logins=["A@D.Example.", "x@o.example"])
    assert seen == {"shop": True, "other": True}
    assert statuses(answers) == ["str", "accepted"]


def test_a_table_locked_under_mails_read_is_a_store_error(pg_dsn, store):
    """serve's MAIL maps a StoreError to 451 4.3.0; anything else would reach
    the client as aiosmtpd's 500 with the database's words in it."""
    reader = Store.open(pg_dsn, actor="ops", busy_timeout=0.3)  # as a reader thread of serve opens it
    try:
        assert envelope_check(reader, "a@d.example", "a@d.example").status == "ok"
        with psycopg.connect(pg_dsn) as operator:
            operator.execute("LOCK TABLE domains IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreError):
                envelope_check(reader, "a@d.example", "a@d.example")
            operator.rollback()
        assert envelope_check(reader, "a@d.example", "a@d.example").status == "ok"
    finally:
        reader.close()
