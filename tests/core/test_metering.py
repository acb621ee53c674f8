"""Group commit's metering batch (``usage.run_steps`` with ``logins``), on
both backends: a batch answers exactly as its messages one by one would,
whatever it keeps in memory for the transaction, and a step that fails
takes nothing else with it."""

from functools import partial

import pytest

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.settings import set_setting, today
from smtpctl.core.metering.live import Admission, admit_message, run_steps
from smtpctl.core.store import Store

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


def admit(login: str, recipients: int, sid: str):
    return partial(admit_message, login=login, recipients=recipients, source_id=sid)


def boom(store: Store):
    admit_message(store, "x@o.example", 7, "boom")  # written, then undone with the step
    raise RuntimeError("this step fails")


def events(store: Store) -> list[str]:
    return [r["source_id"] for r in store.query("SELECT source_id FROM usage_events ORDER BY source_id")]


def statuses(answers):
    return [a.status if isinstance(a, Admission) else type(a).__name__ for a in answers]


def test_a_batch_crosses_once_revokes_and_refuses_the_rest(store):
    steps = [admit("a@d.example", 2, "m1"), admit("x@o.example", 1, "o1"), admit("b@d.example", 2, "m2"),
             admit("a@d.example", 2, "m3"), admit("a@d.example", 2, "m4"), admit("b@d.example", 2, "m1"),
             admit("x@o.example", 1, "o2")]
    logins = ["a@d.example", "x@o.example", "b@d.example", "a@d.example", "a@d.example", "b@d.example",
              "x@o.example"]
    answers = run_steps(store, steps, logins=logins)
    # 2, 4, then 6 > 5 crosses (recorded, revokes both logins of shop); the next
    # is refused as revoked, and m1 again (a stored id of a login revoked since) is
    # the message already billed, asked about again: not refused, not billed twice (issue 23).
    assert statuses(answers) == ["accepted", "accepted", "accepted", "accepted", "revoked", "duplicate", "accepted"]
    assert answers[3].crossings[0].revoked_credentials == ("a@d.example", "b@d.example")
    assert events(store) == ["m1", "m2", "m3", "o1", "o2"]
    day = today(store)
    shop, other = store.account("shop"), store.account("other")
    assert store.outbound_totals([(shop.id, day), (other.id, day)]) == {(shop.id, day): 6, (other.id, day): 2}
    assert shop.blocked and store.account_logins(shop.id) == []
    assert store.scalar("SELECT count(*) FROM audit WHERE action = 'account.limit_exceeded'") == 1
    # The next batch reads the totals afresh: over the limit, and still revoked.
    again = run_steps(store, [admit("a@d.example", 1, "m9")], logins=["a@d.example"])
    assert statuses(again) == ["revoked"]


def test_a_failing_step_takes_nothing_else_with_it(store):
    steps = [admit("a@d.example", 2, "m1"), boom, admit("a@d.example", 2, "m2"), admit("x@o.example", 1, "o1"),
             admit("a@d.example", 2, "m3"), admit("a@d.example", 1, "m4")]
    logins = ["a@d.example", "x@o.example", "a@d.example", "x@o.example", "a@d.example", "a@d.example"]
    answers = run_steps(store, steps, logins=logins)
    assert statuses(answers) == ["accepted", "RuntimeError", "accepted", "accepted", "accepted", "revoked"]
    assert events(store) == ["m1", "m2", "m3", "o1"]  # not "boom": its step was undone
    day = today(store)
    other = store.account("other")
    assert store.outbound_totals([(other.id, day)]) == {(other.id, day): 1}
    assert store.usage_totals()["daily_emails"] == 7
    assert store.scalar("SELECT count(*) FROM audit WHERE action = 'account.limit_exceeded'") == 1


def test_too_many_recipients_and_duplicates_answer_as_one_by_one(store):
    set_setting(store, "max_recipients_per_message", "3")
    first = run_steps(store, [admit("x@o.example", 3, "o1"), admit("x@o.example", 4, "o2"),
                                    admit("x@o.example", 3, "o1"), admit("nobody@nowhere.example", 1, "n1")],
                            logins=["x@o.example"] * 3 + ["nobody@nowhere.example"])
    assert statuses(first) == ["accepted", "too_many_recipients", "duplicate", "unknown"]
    assert first[1].reason == ("4 recipients in one message: more than the 3 allowed "
                               "(store setting max_recipients_per_message); not recorded")
    assert (first[0].emails, first[2].emails) == (3, 0)
    one_by_one = admit_message(store, "x@o.example", 3, "o1")
    assert (one_by_one.status, one_by_one.accepted) == ("duplicate", True)
    assert events(store) == ["o1"]
