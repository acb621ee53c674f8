"""serve's MAIL reads (``ReadBatch``): sessions waiting together share one trip to the store thread, each
gets its own answer read from the real store, and one caller's error stays its own."""

import asyncio

from smtpctl.core.metering.live import envelope_check
from smtpctl.core.model.errors import StoreError
from smtpctl.servers.metering import ReadBatch
from smtpctl.servers.runtime import StoreWorker


def check_or_fail(store, login: str, sender: str):
    if login == "broken@d.example":
        raise StoreError("this one read failed")
    return envelope_check(store, login, sender)


def test_waiting_reads_share_one_trip_and_keep_their_own_answers(isolated_store):
    worker = StoreWorker(isolated_store, "tester")
    batch = ReadBatch(worker, check_or_fail)

    async def main():
        logins = [f"u{i}@nowhere.example" for i in range(20)] + ["broken@d.example"]
        return logins, await asyncio.gather(*(batch.read(login, login) for login in logins), return_exceptions=True)

    try:
        logins, answers = asyncio.run(main())
    finally:
        worker.close()
    assert batch.trips < len(logins)  # one trip took the sessions waiting together (two at most)
    assert [a.status for a in answers[:-1]] == ["unknown"] * 20  # read from the store: no such domain
    assert isinstance(answers[-1], StoreError) and answers[-1].message == "this one read failed"


def test_reads_after_a_trip_see_what_changed_in_between(isolated_store, run):
    """No answer is kept: a read after a change (another process's) sees the change."""
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "10", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    run("user", "create", "app@d.example", "--password-stdin", input="Correct-Horse-Battery-Staple-42\n", check_rc=0)
    worker = StoreWorker(isolated_store, "tester")
    batch = ReadBatch(worker, envelope_check)

    async def read():
        return await batch.read("app@d.example", "app@d.example")

    try:
        assert asyncio.run(read()).status == "ok"
        run("account", "block", "shop", "--reason", "abuse", "--revoke", "--yes", check_rc=0)
        assert asyncio.run(read()).status == "revoked"
    finally:
        worker.close()
