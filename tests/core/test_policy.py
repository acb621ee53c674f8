"""The policy decision, from the real request block Postfix sent (tests/fixtures)."""

from pathlib import Path

import pytest

from smtpctl.core import services, usage
from smtpctl.core.store import Store
from smtpctl.servers.policy import decide, parse_request

REQUEST = (Path(__file__).resolve().parents[1] / "fixtures" / "postfix" / "policy-request.txt").read_text()
PW = "a good long password"


def request(**changes):
    attrs = parse_request(REQUEST.splitlines())
    attrs.update(changes)
    return attrs


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "s.db") as s:
        services.add_agency(s, "acme")
        services.add_account(s, "shop", "acme", daily_limit=7)
        services.add_domain(s, "acme.test", account="shop")
        services.create_credential(s, "bob@acme.test", PW)
        yield s


def test_the_real_request_parses():
    attrs = parse_request(REQUEST.splitlines())
    assert (attrs["request"], attrs["protocol_state"], attrs["sasl_username"], attrs["recipient_count"],
            attrs["instance"]) == ("smtpd_access_policy", "END-OF-MESSAGE", "bob@acme.test", "3",
                                   "10b9.6b07becf.1b8d9.0")
    assert attrs["recipient"] == ""  # empty values are kept


def test_meters_once_per_instance(store):
    assert decide(store, request())[0] == "DUNNO"
    assert decide(store, request())[0] == "DUNNO"  # Postfix asking again: not billed twice
    assert usage.usage_status(store, "shop")[0]["sent"] == 3


def test_crossing_message_is_accepted_then_rejects(store):
    assert decide(store, request(instance="a"))[0] == "DUNNO"  # 3
    assert decide(store, request(instance="b"))[0] == "DUNNO"  # 6
    action, info = decide(store, request(instance="c"))  # 9 > 7: accepted, recorded, revoked
    assert action == "DUNNO" and info["metered"]
    action, info = decide(store, request(instance="d"))
    assert action.startswith("REJECT 5.7.1") and info["reason"] == "revoked"
    assert usage.usage_status(store, "shop")[0]["sent"] == 9
    assert store.credentials() == []


def test_unauthenticated_and_unknown_senders_are_not_ours(store):
    assert decide(store, request(sasl_username=""))[0] == "DUNNO"
    assert decide(store, request(sasl_username="someone@elsewhere.test"))[0] == "DUNNO"
    assert usage.usage_status(store, "shop")[0]["sent"] == 0


def test_manual_block_stops_creation_not_sending(store):
    # docs/rules.md: a manual block stops credential creation only; --revoke stops sending.
    usage.block_account(store, "shop", "compliance")
    assert decide(store, request(protocol_state="RCPT"))[0] == "DUNNO"
    assert decide(store, request(instance="m1"))[0] == "DUNNO"
    assert usage.usage_status(store, "shop")[0]["sent"] == 3


def test_revoking_block_is_rejected_at_any_state(store):
    usage.block_account(store, "shop", "compliance", revoke=True)
    for state in ("RCPT", "END-OF-MESSAGE"):
        action, info = decide(store, request(protocol_state=state))
        assert action.startswith("REJECT 5.7.1 SMTP credentials revoked") and info["reason"] == "revoked"
    assert usage.usage_status(store, "shop")[0]["sent"] == 0


def test_other_states_do_not_meter(store):
    assert decide(store, request(protocol_state="RCPT"))[0] == "DUNNO"
    assert usage.usage_status(store, "shop")[0]["sent"] == 0
