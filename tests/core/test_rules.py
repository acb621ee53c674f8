from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpctl.core.model import rules
from smtpctl.core.model.errors import InvalidInput


@pytest.mark.parametrize("raw, stored", [
    ("Example.COM", "example.com"),
    ("mail.example.com.", "mail.example.com"),
    ("Bücher.Example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("  shop.example  ", "shop.example"),
    ("a-b.c-d.example", "a-b.c-d.example"),
])
def test_domains_are_normalised(raw, stored):
    assert rules.normalise_domain(raw) == stored


@pytest.mark.parametrize("raw", [
    "", "   ", "localhost", "-bad.example", "bad-.example", "a_b.example", "ex ample.com",
    "1.2.3.4", "a..b.example", "x" * 64 + ".example", ("a" * 60 + ".") * 5 + "example", "user@example.com",
])
def test_invalid_domains_are_refused(raw):
    with pytest.raises(InvalidInput):
        rules.normalise_domain(raw)


def test_unicode_form_is_shown_back():
    assert rules.domain_unicode("xn--bcher-kva.example") == "bücher.example"
    assert rules.domain_unicode("plain.example") == "plain.example"


# An LDH label; "--" in the 3rd and 4th places is IDNA 2008's reserved form (xn--...), refused below.
label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True).filter(lambda s: s[2:4] != "--")


def test_hyphens_in_the_third_and_fourth_places_are_refused():
    with pytest.raises(InvalidInput, match="disallowed hyphens in 3rd and 4th position"):
        rules.normalise_domain("00--0.example")


@given(st.lists(label, min_size=1, max_size=4), st.from_regex(r"[a-z]{2,10}", fullmatch=True))
def test_normalising_is_idempotent_and_yields_ldh(labels, tld):
    name = ".".join([*labels, tld])
    stored = rules.normalise_domain(name.upper())
    assert stored == rules.normalise_domain(stored)
    assert stored == stored.lower()
    assert all(c.isalnum() or c in ".-" for c in stored)


@pytest.mark.parametrize("name", ["Acme", "Acme Agency", "o'brien & sons", "shop-1", "a.b_c"])
def test_valid_names(name):
    assert rules.normalise_name("agency", name) == name


@pytest.mark.parametrize("name", ["", " ", "-acme", "acme ", "a" * 65, "tab\tname", "new\nline", "semi;colon"])
def test_invalid_names(name):
    with pytest.raises(InvalidInput):
        rules.normalise_name("agency", name)


@pytest.mark.parametrize("value, expected", [("1500", 1500), (1, 1), ("10_000", 10000), ("2,500", 2500)])
def test_daily_limit(value, expected):
    assert rules.validate_daily_limit(value) == expected


@pytest.mark.parametrize("value", ["0", "-5", "abc", "1.5", str(rules.MAX_DAILY_LIMIT + 1)])
def test_bad_daily_limit(value):
    with pytest.raises(InvalidInput):
        rules.validate_daily_limit(value)


def test_settings_defaults_follow_the_rules():
    defaults = {k: s.default for k, s in rules.SETTINGS.items()}
    assert defaults == {
        "smtp_host": "smtp.mailgun.org",
        "timezone": "UTC",
        "default_daily_limit": 1500,
        "credentials_per_domain": 5,
        "price_per_1000": Decimal("0.675"),
        "compare_name": "Mailgun",
        "compare_price_per_1000": Decimal("0.80"),
        "max_recipients_per_message": 1000,
        "sender_alignment": "on",
    }


@pytest.mark.parametrize("key, value, parsed", [
    ("price_per_1000", "0.675", Decimal("0.675")),
    ("price_per_1000", "$1.10", Decimal("1.10")),
    ("timezone", "Europe/Berlin", "Europe/Berlin"),
    ("smtp_host", "SMTP.Example.COM", "smtp.example.com"),
    ("credentials_per_domain", "3", 3),
])
def test_parse_setting(key, value, parsed):
    assert rules.parse_setting(key, value) == parsed


@pytest.mark.parametrize("key, value", [
    ("price_per_1000", "-1"), ("price_per_1000", "NaN"), ("price_per_1000", "0.1234567"),
    ("price_per_1000", "cheap"), ("timezone", "Mars/Base"), ("smtp_host", "not a host"),
    ("credentials_per_domain", "0"), ("no_such_key", "1"),
])
def test_bad_settings(key, value):
    with pytest.raises(InvalidInput):
        rules.parse_setting(key, value)
