"""The outbox: a notice lives and dies with its transaction; once_key; the retry schedule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.notices import delivery, endpoints
from smtpctl.core.notices.outbox import KINDS, emit
from smtpctl.core.store import Store


@pytest.fixture
def store(isolated_store):
    with Store.open(isolated_store) as opened:
        yield opened


def test_emit_writes_a_notice_and_a_delivery_per_subscribed_endpoint(store):
    every = endpoints.add_endpoint(store, "https://a.example/x", []).object
    blocks = endpoints.add_endpoint(store, "https://b.example/x", ["account.blocked"]).object
    with store.write():
        assert emit(store, "credential.created", {"login": "a@d.example"}) is True
        assert emit(store, "account.blocked", {"account": "shop"}) is True
    rows = store.notices()
    assert [row["kind"] for row in rows] == ["credential.created", "account.blocked"]
    assert rows[0]["msg_id"] != rows[1]["msg_id"]
    sent = sorted((r["kind"], int(r["endpoint_id"])) for r in store.deliveries())
    assert sent == sorted([("credential.created", every.id), ("account.blocked", every.id),
                           ("account.blocked", blocks.id)])


def test_a_rolled_back_change_leaves_no_notice(store):
    endpoints.add_endpoint(store, "https://a.example/x", [])
    with pytest.raises(RuntimeError, match="boom"):
        with store.write():
            add_agency(store, "acme")
            emit(store, "credential.created", {"login": "a@d.example"})
            raise RuntimeError("boom")
    assert store.notices() == [] and store.deliveries() == [] and store.agency("acme") is None


def test_once_key_makes_a_notice_at_most_once(store):
    key = "limit.warning:account:1:2026-12-06:80"
    with store.write():
        assert emit(store, "limit.warning", {"percent": 80}, once_key=key) is True
        assert emit(store, "limit.warning", {"percent": 80}, once_key=key) is False
    with store.write():
        assert emit(store, "limit.warning", {"percent": 80}, once_key=key) is False
        assert emit(store, "limit.warning", {"percent": 95}, once_key=key.replace(":80", ":95")) is True
    assert [row["once_key"] for row in store.notices()] == [key, key.replace(":80", ":95")]
    # a rolled-back once_key is free again
    with pytest.raises(KeyError):
        with store.write():
            assert emit(store, "limit.warning", {}, once_key="k") is True
            raise KeyError
    with store.write():
        assert emit(store, "limit.warning", {}, once_key="k") is True


def test_emit_refuses_mistakes(store):
    with pytest.raises(RuntimeError, match="inside store.write"):
        emit(store, "credential.created", {})
    with store.write(), pytest.raises(ValueError, match="unknown notice kind"):
        emit(store, "credential.made", {})
    assert store.notices() == []


def test_the_retry_schedule():
    delays = [delivery.retry_delay(n) for n in range(1, len(delivery.RETRY_DELAYS) + 1)]
    assert delays[0] <= 10  # the first retry within 10 seconds
    assert delays == sorted(delays)  # backing off, never faster
    assert 20 * 3600 <= sum(delays) <= 26 * 3600  # about a day
    assert delivery.retry_delay(len(delivery.RETRY_DELAYS) + 1) is None  # then failed
    assert delivery.LEASE_SECONDS > delivery.TIMEOUT  # a lease outlives any request


def test_every_kind_is_documented():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "notices.md").read_text()
    for kind in (*KINDS, "notify.test"):
        assert f"| `{kind}` |" in text, kind


# -- the parsers of notify add: any text is a value or InvalidInput, never another error ---------------------

URLISH = st.one_of(st.text(max_size=80), st.builds(lambda scheme, rest: scheme + rest,
                                                   st.sampled_from(["http://", "https://", "ftp://", "HTTP://", ""]),
                                                   st.text(max_size=60)))


@settings(max_examples=300, deadline=None)
@given(URLISH, st.booleans())
def test_parse_url_takes_or_refuses_any_text(url, insecure):
    try:
        parsed = endpoints.parse_url(url, allow_insecure=insecure)
    except InvalidInput:
        return
    assert parsed == url and url.lower().startswith(("http://", "https://"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=120), st.builds(lambda b: "whsec_" + b, st.text(max_size=100))))
def test_parse_secret_takes_or_refuses_any_text(text):
    try:
        secret = endpoints.parse_secret(text, "the secret")
    except InvalidInput as exc:
        if len(text.strip()) >= 12:
            assert text.strip() not in str(exc)  # a secret is never in a message
        return
    Webhook(secret)  # whatever parse_secret takes, the reference library takes too
