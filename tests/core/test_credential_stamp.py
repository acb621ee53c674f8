"""What a serve session checks at each MAIL (issue 23): is the credential it
authenticated with still the same one? A reset in the very second of the
AUTH must count (``updated_at`` has whole seconds: such a reset went unseen)."""

from __future__ import annotations

import pytest

from smtpctl.core.directory import credentials
from smtpctl.core.metering.live import credential_stamp, envelope_check
from smtpctl.core.store import Store
from smtpctl.core.store import directory as store_directory

PW = "Correct-Horse-Battery-Staple-42"


@pytest.fixture
def frozen_second(monkeypatch):
    """Every write in one second, as a fast reset after an AUTH is."""
    monkeypatch.setattr(store_directory, "now_iso", lambda: "2026-12-06T07:00:00Z")


def test_a_reset_in_the_same_second_changes_the_stamp(isolated_store, run, frozen_second):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    with Store.open(isolated_store) as store:
        created = credentials.create_credential(store, "app@d.example", PW).object
        before = envelope_check(store, "app@d.example", "app@d.example").stamp
        assert before == credential_stamp(created)
        reset = credentials.reset_credential(store, "app@d.example", None).object
        assert reset.updated_at == created.updated_at  # the same second: updated_at cannot tell them apart
        assert envelope_check(store, "app@d.example", "app@d.example").stamp != before
        credentials.delete_credential(store, "app@d.example")
        again = credentials.create_credential(store, "app@d.example", PW).object
        assert credential_stamp(again) not in (before, credential_stamp(reset))


def test_a_rehash_changes_the_stamp_and_only_a_reset_in_between_stops_it(isolated_store, run):
    """The session that rehashes takes the new hash as its stamp (handler); store_rehash replaces only
    the hash it checked, so a reset in between still shows at the next MAIL."""
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    with Store.open(isolated_store) as store:
        checked = credentials.create_credential(store, "app@d.example", PW).object
        credentials.store_rehash(store, checked, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA")
        followed = checked._replace(password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA")
        assert envelope_check(store, "app@d.example", "app@d.example").stamp == credential_stamp(followed)
        credentials.reset_credential(store, "app@d.example", None)
        assert envelope_check(store, "app@d.example", "app@d.example").stamp != credential_stamp(followed)
