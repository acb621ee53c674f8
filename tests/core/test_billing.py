from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpctl.core.model import money as billing

RATE = Decimal("0.675")


@pytest.mark.parametrize("emails, exact, rounded", [
    (0, "0.00", "0.00"),
    (1, "0.000675", "0.00"),
    (45, "0.030375", "0.03"),
    (1000, "0.675", "0.68"),
    (45_000, "30.375", "30.38"),
    (1500 * 30, "30.375", "30.38"),
    (1_000_000, "675.00", "675.00"),
])
def test_costs(emails, exact, rounded):
    amount = billing.cost(emails, RATE)
    assert billing.plain(amount) == exact
    assert format(billing.to_cents(amount), "f") == rounded


def test_half_up_not_bankers():
    assert billing.to_cents(Decimal("0.125")) == Decimal("0.13")
    assert billing.to_cents(Decimal("0.135")) == Decimal("0.14")


def test_floats_are_refused():
    with pytest.raises(TypeError):
        billing.cost(10, 0.675)
    with pytest.raises(TypeError):
        billing.to_cents(0.5)


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=50))
def test_sum_then_round(counts):
    exact = billing.total(billing.cost(n, RATE) for n in counts)
    assert exact == Decimal(sum(counts)) * RATE / 1000
    assert billing.to_cents(exact) == (Decimal(sum(counts)) * RATE / 1000).quantize(Decimal("0.01"), "ROUND_HALF_UP")
    rounded_each = sum((billing.to_cents(billing.cost(n, RATE)) for n in counts), Decimal(0))
    # Rounding each line first can drift by up to half a cent per line; we never do that.
    assert abs(rounded_each - exact) <= Decimal("0.005") * len(counts)


@given(st.integers(min_value=0, max_value=10**12), st.decimals(min_value=0, max_value=100, places=6))
def test_cost_is_exact_and_never_float(emails, rate):
    amount = billing.cost(emails, rate)
    assert isinstance(amount, Decimal)
    assert amount * 1000 == Decimal(emails) * rate
