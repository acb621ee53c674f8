import json

import pytest

from smtpctl.core import services
from smtpctl.core.errors import AlreadyExists, InvalidInput, NotFound
from smtpctl.core.store import Store


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        yield s


def audit_rows(store):
    return [(r["action"], r["object_name"], json.loads(r["details"]))
            for r in store.query("SELECT * FROM audit ORDER BY id")]


def test_agency_names_are_unique_ignoring_case(store):
    assert services.add_agency(store, "Acme").status == "created"
    with pytest.raises(AlreadyExists, match="agency 'Acme' already exists"):
        services.add_agency(store, "ACME")
    again = services.add_agency(store, "acme", exist_ok=True)
    assert (again.status, again.object.name) == ("unchanged", "Acme")
    assert len(store.agencies()) == 1


def test_account_needs_an_existing_agency(store):
    with pytest.raises(NotFound, match="agency 'nope' not found"):
        services.add_account(store, "shop", "nope")
    assert store.accounts() == []


def test_account_exist_ok_only_for_a_matching_account(store):
    services.add_agency(store, "a1")
    services.add_agency(store, "a2")
    services.add_account(store, "shop", "a1", daily_limit=2000)
    assert services.add_account(store, "shop", "a1", exist_ok=True).status == "unchanged"
    assert services.add_account(store, "shop", "a1", daily_limit=2000, exist_ok=True).status == "unchanged"
    with pytest.raises(AlreadyExists, match="different settings"):
        services.add_account(store, "shop", "a2", exist_ok=True)
    with pytest.raises(AlreadyExists, match="different settings"):
        services.add_account(store, "shop", "a1", daily_limit=10, exist_ok=True)


def test_effective_limit_follows_the_store_default(store):
    services.add_agency(store, "a")
    services.add_account(store, "shop", "a")
    assert services.account_detail(store, "shop")["effective_daily_limit"] == 1500
    services.set_setting(store, "default_daily_limit", "3000")
    assert services.account_detail(store, "shop")["effective_daily_limit"] == 3000
    services.set_account_limit(store, "shop", "100")
    assert services.account_detail(store, "shop")["effective_daily_limit"] == 100
    assert services.set_account_limit(store, "shop", "100").status == "unchanged"
    services.set_account_limit(store, "shop", "default")
    assert services.account_detail(store, "shop")["daily_limit"] is None


def test_domain_owner_is_exactly_one(store):
    services.add_agency(store, "a")
    services.add_account(store, "shop", "a")
    with pytest.raises(InvalidInput, match="exactly one"):
        services.add_domain(store, "x.example")
    with pytest.raises(InvalidInput, match="exactly one"):
        services.add_domain(store, "x.example", account="shop", agency="a")


def test_domain_kinds_and_exist_ok(store):
    services.add_agency(store, "a")
    services.add_account(store, "shop", "a")
    dedicated = services.add_domain(store, "Bücher.example", account="shop").object
    assert (dedicated.name, dedicated.unicode_name, dedicated.kind, dedicated.agency) == (
        "xn--bcher-kva.example", "bücher.example", "dedicated", "a")
    shared = services.add_domain(store, "shared.example", agency="a").object
    assert (shared.kind, shared.account) == ("agency-assigned", None)
    assert services.add_domain(store, "BÜCHER.example.", account="shop", exist_ok=True).status == "unchanged"
    with pytest.raises(AlreadyExists, match="agency-assigned"):
        services.add_domain(store, "shared.example", account="shop", exist_ok=True)


def test_every_change_is_audited_without_noise(store):
    services.add_agency(store, "a")
    services.add_account(store, "shop", "a", daily_limit=10)
    services.add_domain(store, "d.example", account="shop")
    services.set_account_limit(store, "shop", "20")
    services.set_setting(store, "price_per_1000", "0.7")
    services.remove_domain(store, "d.example")
    services.add_agency(store, "a", exist_ok=True)  # unchanged: no row
    assert audit_rows(store) == [
        ("agency.create", "a", {}),
        ("account.create", "shop", {"agency": "a", "daily_limit": 10}),
        ("domain.create", "d.example", {"agency": "a", "kind": "dedicated"}),
        ("account.set_limit", "shop", {"old": 10, "new": 20}),
        ("setting.set", "price_per_1000", {"old": "0.675", "new": "0.7"}),
        ("domain.delete", "d.example", {"kind": "dedicated", "deleted_credentials": []}),
    ]


def test_failed_write_leaves_no_audit_row(store):
    with pytest.raises(NotFound):
        services.add_domain(store, "d.example", account="ghost")
    assert audit_rows(store) == []
