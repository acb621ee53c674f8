import contextlib
import json

import pytest

from smtpctl.core.billing.prices import set_price
from smtpctl.core.directory.accounts import account_detail, add_account, list_accounts, set_account_limit
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.domains import add_domain, remove_domain
from smtpctl.core.directory.settings import effective_setting, effective_settings, set_setting
from smtpctl.core.model.errors import AlreadyExists, InvalidInput, NotFound
from smtpctl.core.store import Store


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        yield s


def audit_rows(store):
    return [(r["action"], r["object_name"], json.loads(r["details"]))
            for r in store.query("SELECT * FROM audit ORDER BY id")]


def test_agency_names_are_unique_ignoring_case(store):
    assert add_agency(store, "Acme").status == "created"
    with pytest.raises(AlreadyExists, match="agency 'Acme' already exists"):
        add_agency(store, "ACME")
    again = add_agency(store, "acme", exist_ok=True)
    assert (again.status, again.object.name) == ("unchanged", "Acme")
    assert len(store.agencies()) == 1


def test_account_needs_an_existing_agency(store):
    with pytest.raises(NotFound, match="agency 'nope' not found"):
        add_account(store, "shop", "nope")
    assert store.accounts() == []


def test_account_exist_ok_only_for_a_matching_account(store):
    add_agency(store, "a1")
    add_agency(store, "a2")
    add_account(store, "shop", "a1", daily_limit=2000)
    assert add_account(store, "shop", "a1", exist_ok=True).status == "unchanged"
    assert add_account(store, "shop", "a1", daily_limit=2000, exist_ok=True).status == "unchanged"
    with pytest.raises(AlreadyExists, match="different settings"):
        add_account(store, "shop", "a2", exist_ok=True)
    with pytest.raises(AlreadyExists, match="different settings"):
        add_account(store, "shop", "a1", daily_limit=10, exist_ok=True)


def test_effective_limit_follows_the_store_default(store):
    add_agency(store, "a")
    add_account(store, "shop", "a")
    assert account_detail(store, "shop")["effective_daily_limit"] == 1500
    set_setting(store, "default_daily_limit", "3000")
    assert account_detail(store, "shop")["effective_daily_limit"] == 3000
    set_account_limit(store, "shop", "100")
    assert account_detail(store, "shop")["effective_daily_limit"] == 100
    assert set_account_limit(store, "shop", "100").status == "unchanged"
    set_account_limit(store, "shop", "default")
    assert account_detail(store, "shop")["daily_limit"] is None


def test_domain_owner_is_exactly_one(store):
    add_agency(store, "a")
    add_account(store, "shop", "a")
    with pytest.raises(InvalidInput, match="exactly one"):
        add_domain(store, "x.example")
    with pytest.raises(InvalidInput, match="exactly one"):
        add_domain(store, "x.example", account="shop", agency="a")


def test_domain_kinds_and_exist_ok(store):
    add_agency(store, "a")
    add_account(store, "shop", "a")
    dedicated = add_domain(store, "Bücher.example", account="shop").object
    assert (dedicated.name, dedicated.unicode_name, dedicated.kind, dedicated.agency) == (
        "xn--bcher-kva.example", "bücher.example", "dedicated", "a")
    shared = add_domain(store, "shared.example", agency="a").object
    assert (shared.kind, shared.account) == ("agency-assigned", None)
    assert add_domain(store, "BÜCHER.example.", account="shop", exist_ok=True).status == "unchanged"
    with pytest.raises(AlreadyExists, match="agency-assigned"):
        add_domain(store, "shared.example", account="shop", exist_ok=True)


def test_every_change_is_audited_without_noise(store):
    add_agency(store, "a")
    add_account(store, "shop", "a", daily_limit=10)
    add_domain(store, "d.example", account="shop")
    set_account_limit(store, "shop", "20")
    set_price(store, "0.7", "2099-01-01")
    set_price(store, "0.7", "2099-01-01")  # unchanged: no row
    set_setting(store, "smtp_host", "smtp.example.net")
    remove_domain(store, "d.example")
    add_agency(store, "a", exist_ok=True)  # unchanged: no row
    assert audit_rows(store) == [
        ("agency.create", "a", {}),
        ("account.create", "shop", {"agency": "a", "daily_limit": 10}),
        ("domain.create", "d.example", {"agency": "a", "kind": "dedicated"}),
        ("account.set_limit", "shop", {"old": 10, "new": 20}),
        ("billing.set_price", "service", {"from": "2099-01-01", "kind": "service", "price_per_1000": "0.7",
                                          "was": "0.675"}),
        ("setting.set", "smtp_host", {"old": "smtp.mailgun.org", "new": "smtp.example.net"}),
        ("domain.delete", "d.example", {"kind": "dedicated", "deleted_credentials": []}),
    ]


def test_failed_write_leaves_no_audit_row(store):
    with pytest.raises(NotFound):
        add_domain(store, "d.example", account="ghost")
    assert audit_rows(store) == []


# Stored values each setting's rule accepts and refuses (a store written by an
# older smtpctl, or edited by hand).
SETTING_VALUES = {
    "smtp_host": ("smtp.example.com", "not a host"), "timezone": ("Europe/Berlin", "Mars/Olympus"),
    "default_daily_limit": ("250", "-1"), "credentials_per_domain": ("3", "0"),
    "compare_name": ("SES", ""), "compare_price_per_1000": ("0.1", "x"), "max_recipients_per_message": ("50", "0"),
    "sender_alignment": ("off", "maybe"),
}


@pytest.mark.parametrize("stored", ["nothing", "good", "bad", "all bad"])
def test_one_setting_reads_as_the_effective_settings_read_it(store, stored):
    """``effective_setting`` (what account list reads, without checking the
    other settings) answers each key as ``effective_settings(store)[key]``:
    the default, the stored value, or the same StoreError."""
    from smtpctl.core.model.errors import StoreError
    from smtpctl.core.model.rules import SETTINGS

    # price_per_1000 is no stored setting but the price in force (billing's prices): a row of it is ignored
    assert set(SETTING_VALUES) == set(SETTINGS) - {"price_per_1000"}
    for key in SETTING_VALUES:
        with store.write():
            store.execute("DELETE FROM settings")
            if stored != "nothing":
                for other, (good, bad) in SETTING_VALUES.items():
                    value = bad if stored == "all bad" or (stored == "bad" and other == key) else good
                    store.execute("INSERT INTO settings (key, value, updated_at) VALUES (?, ?, 'x')", [other, value])
        with pytest.raises(StoreError) if stored in ("bad", "all bad") else contextlib.nullcontext() as expected:
            value = effective_settings(store)[key]
        if expected is None:
            assert effective_setting(store, key) == value
            continue
        with pytest.raises(StoreError) as raised:
            effective_setting(store, key)
        assert raised.value.message == expected.value.message
        # raised as EffectiveSettings raises it: no exception chained to it
        assert (raised.value.__cause__, raised.value.__context__) == (expected.value.__cause__, None)
        assert expected.value.__context__ is None


def test_account_list_reads_only_the_default_limit(store):
    """A bad stored value of another setting does not stop account list (it
    never did: only a read of that key raises); a bad default limit does."""
    from smtpctl.core.model.errors import StoreError

    add_agency(store, "acme")
    add_account(store, "shop", "acme")
    with store.write():
        store.execute("INSERT INTO settings (key, value, updated_at) VALUES ('timezone', 'Mars/Olympus', 'x')")
    assert [a["effective_daily_limit"] for a in list_accounts(store)] == [1500]
    with store.write():
        store.execute("INSERT INTO settings (key, value, updated_at) VALUES ('default_daily_limit', '0', 'x')")
    with pytest.raises(StoreError, match="invalid value for setting default_daily_limit: '0'"):
        list_accounts(store)
