"""Pricing rules, with property tests: totals add up, nothing is negative, discounts are bounded."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shop.services.money import from_minor_units, parse_money, quantize, to_minor_units
from shop.services.pricing import CouponTerms, PricingRules, quote

RULES = PricingRules(
    tax_rate=Decimal("0.08"),
    standard=Decimal("5.00"),
    express=Decimal("15.00"),
    free_shipping_over=Decimal("50.00"),
)

prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("5000"), places=2)
lines = st.lists(st.tuples(prices, st.integers(min_value=1, max_value=99)), max_size=8)
coupons = st.one_of(
    st.none(),
    st.builds(
        CouponTerms,
        code=st.just("X"),
        kind=st.just("percent"),
        value=st.decimals(min_value=0, max_value=100, places=2),
    ),
    st.builds(
        CouponTerms,
        code=st.just("X"),
        kind=st.just("fixed"),
        value=st.decimals(min_value=0, max_value=100000, places=2),
    ),
    st.builds(
        CouponTerms, code=st.just("X"), kind=st.just("free_shipping"), value=st.just(Decimal(0))
    ),
)
rates = st.decimals(min_value=Decimal("0"), max_value=Decimal("0.30"), places=4)


@settings(max_examples=300, deadline=None)
@given(lines=lines, coupon=coupons, method=st.sampled_from(["standard", "express"]), rate=rates)
def test_total_is_the_sum_of_its_parts(lines, coupon, method, rate):
    rules = PricingRules(rate, RULES.standard, RULES.express, RULES.free_shipping_over)
    q = quote(lines, coupon, method, rules)
    assert q.total == q.subtotal - q.discount + q.shipping + q.tax
    for amount in (q.subtotal, q.discount, q.shipping, q.tax, q.total):
        assert amount >= 0
        assert amount == quantize(amount)  # whole cents
    assert q.discount <= q.subtotal
    assert q.subtotal == sum((quantize(p * n) for p, n in lines), Decimal("0.00"))


@settings(max_examples=300, deadline=None)
@given(lines=lines, coupon=coupons, method=st.sampled_from(["standard", "express"]), rate=rates)
def test_a_zero_decimal_shop_prices_in_whole_units(lines, coupon, method, rate):
    """In JPY every amount is whole yen, even from prices kept with a fraction."""
    rules = PricingRules(rate, Decimal("500"), Decimal("1500"), Decimal("5000"), "JPY")
    q = quote(lines, coupon, method, rules)
    assert q.total == q.subtotal - q.discount + q.shipping + q.tax
    for amount in (q.subtotal, q.discount, q.shipping, q.tax, q.total):
        assert amount >= 0 and amount == amount.to_integral_value()
    assert q.discount <= q.subtotal
    assert q.subtotal == sum((quantize(p, "JPY") * n for p, n in lines), Decimal(0))


def test_the_shops_currency_sets_the_unit_of_every_amount(make_app):
    """¥999 with 10% off, shipping and tax from the shop's settings: whole yen (the discount
    was ¥99.90, the tax ¥111.93 and the total ¥1,511.03, which Stripe charged as ¥1,511)."""
    from shop.services.money import format_money, to_string

    app = make_app(CURRENCY="JPY", TAX_RATE="0.08", SHIPPING_STANDARD="500",
                   FREE_SHIPPING_OVER=None)
    with app.app_context():
        rules = PricingRules.from_config()
        q = quote([(Decimal("999"), 1)], CouponTerms("SAVE10", "percent", Decimal(10)),
                  "standard", rules)
    assert rules.currency == "JPY"
    assert (q.subtotal, q.discount, q.shipping, q.tax, q.total) == (999, 100, 500, 112, 1511)
    assert to_minor_units(q.total, "JPY") == 1511
    assert (format_money(q.total, "JPY"), to_string(q.total, "JPY")) == ("¥1,511", "1511")
    assert (format_money(Decimal("1081.46"), "jpy"), format_money(Decimal("0"), "JPY")) == (
        "¥1,081", "¥0")
    usd = quote([(Decimal("999"), 1)], CouponTerms("SAVE10", "percent", Decimal(10)),
                "standard", RULES)
    assert (usd.discount, usd.tax, usd.total) == (Decimal("99.90"), Decimal("71.93"),
                                                  Decimal("971.03"))
    assert (format_money(usd.total, "USD"), to_string(usd.total, "USD")) == ("$971.03", "971.03")
    assert to_string(Decimal("12.5"), "USD") == "12.50"


@settings(max_examples=200, deadline=None)
@given(lines=lines, value=st.decimals(min_value=0, max_value=100, places=2))
def test_percent_discount_applies_to_the_subtotal_only(lines, value):
    q = quote(lines, CouponTerms("P", "percent", value), "standard", RULES)
    assert q.discount == quantize(q.subtotal * value / 100)


def test_worked_example():
    q = quote(
        [(Decimal("19.99"), 2), (Decimal("5.00"), 1)],
        CouponTerms("WELCOME10", "percent", Decimal("10")),
        "standard",
        RULES,
    )
    assert (q.subtotal, q.discount, q.shipping) == (
        Decimal("44.98"),
        Decimal("4.50"),
        Decimal("5.00"),
    )
    assert q.tax == Decimal("3.64")  # 8% of 45.48, half up
    assert q.total == Decimal("49.12")


def test_free_standard_shipping_over_threshold_but_express_still_paid():
    assert quote([(Decimal("50.00"), 1)], None, "standard", RULES).shipping == 0
    assert quote([(Decimal("49.99"), 1)], None, "standard", RULES).shipping == Decimal("5.00")
    assert quote([(Decimal("50.00"), 1)], None, "express", RULES).shipping == Decimal("15.00")


def test_fixed_discount_never_exceeds_the_subtotal():
    q = quote([(Decimal("3.00"), 1)], CouponTerms("BIG", "fixed", Decimal("25")), "standard", RULES)
    assert q.discount == Decimal("3.00")
    assert q.total == q.shipping + q.tax


def test_free_shipping_coupon():
    q = quote(
        [(Decimal("10.00"), 1)], CouponTerms("SHIP", "free_shipping", Decimal(0)), "express", RULES
    )
    assert q.shipping == 0 and q.discount == 0 and q.free_shipping


def test_empty_cart_costs_nothing():
    q = quote([], None, "express", RULES)
    assert (q.subtotal, q.shipping, q.tax, q.total) == (0, 0, 0, 0)


def test_unknown_shipping_method_is_refused():
    with pytest.raises(ValueError):
        quote([(Decimal("1"), 1)], None, "teleport", RULES)


@pytest.mark.parametrize(
    "text,value",
    [
        ("12.5", Decimal("12.50")),
        (" 3 ", Decimal("3.00")),
        ("0.005", Decimal("0.01")),
        ("abc", None),
        ("-1", None),
        ("NaN", None),
        ("Infinity", None),
        ("", None),
        ("1e400", None),
        ("12.", Decimal("12.00")),
        (".5", Decimal("0.50")),
        # Forms Decimal reads that no one means as an amount: an admin audit saved 1e3 as
        # 1,000.00 and 1_5 as 15.00 without a word (fail on the old code).
        ("1e3", None),
        ("1_5", None),
        ("+5", None),
        ("\u0661\u0660", None),
        ("1 000", None),
    ],
)
def test_parse_money(text, value):
    assert parse_money(text) == value


@given(st.decimals(min_value=0, max_value=10**8, places=2))
def test_minor_units_round_trip(amount):
    assert from_minor_units(to_minor_units(amount, "USD"), "USD") == amount
    assert to_minor_units(Decimal("1234"), "JPY") == 1234


@pytest.mark.parametrize("amount,currency,minor", [
    ("12.50", "USD", 1250), ("0.01", "eur", 1),
    # Zero-decimal: whole units, rounded half up (not to even).
    ("1200.50", "JPY", 1201), ("1200.49", "JPY", 1200), ("2.50", "KRW", 3), ("3.50", "jpy", 4),
    # Three-decimal: thousandths, so 12.50 KWD is 12500 fils, not 1250 (1.25 KWD).
    ("12.50", "KWD", 12500), ("0.01", "BHD", 10), ("7.35", "JOD", 7350), ("1.00", "OMR", 1000),
    ("19.99", "tnd", 19990),
    # ISK: whole krónur, which Stripe counts in hundredths (a multiple of 100).
    ("1995.50", "ISK", 199600), ("1995.49", "isk", 199500),
])
def test_minor_units_follow_the_currencys_exponent(amount, currency, minor):
    assert to_minor_units(Decimal(amount), currency) == minor
    if currency.upper() not in ("JPY", "KRW", "ISK"):  # these rounded to whole units
        assert from_minor_units(minor, currency) == Decimal(amount)


@given(st.decimals(min_value=Decimal("0"), max_value=Decimal("99999999"), places=3),
       st.sampled_from(["USD", "EUR", "usd", "JPY", "CHF"]))
@settings(max_examples=200)
def test_formatted_money_is_the_same_remembered_or_not(amount, currency):
    """format_money remembers its answers: the second answer is the first, and both are what
    the rule gives (symbol or code, cents rounded half up, thousands separated; whole yen)."""
    from shop.services.money import SYMBOLS, format_money

    places = 0 if currency.upper() == "JPY" else 2
    text = f"{quantize(amount, currency):,.{places}f}"
    symbol = SYMBOLS.get(currency.upper())
    expected = f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
    assert format_money(amount, currency) == expected
    assert format_money(amount, currency) == expected
    assert format_money(Decimal(str(amount)) + 0, currency) == expected  # an equal Decimal


def test_sqlite_prices_become_the_same_decimals_remembered_or_not():
    from shop.services.catalog import _money

    for value in (12.5, 12.5, 0.1 + 0.2, 19.99, 19.99, 7, 7.0):
        assert _money(value) == quantize(Decimal(str(value)))
        assert str(_money(value)) == str(quantize(Decimal(str(value))))
    assert _money(None) is None and _money(Decimal("3.10")) == Decimal("3.10")


def _config_value(env: dict[str, str], expression: str):
    """`expression` evaluated on a fresh import of config.py under `env` (config reads the
    environment when imported, as a web process starts)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", f"import config; print(repr({expression}))"], cwd=root,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout.strip(), result.stderr


def test_free_shipping_can_be_switched_off_from_the_environment():
    """An empty SHOP_FREE_SHIPPING_OVER means no free shipping (it crashed the start with a
    bare decimal.InvalidOperation); the pricing rules then charge shipping on any order."""
    code, out, err = _config_value({"SHOP_FREE_SHIPPING_OVER": ""},
                                   "config.Config.FREE_SHIPPING_OVER")
    assert code == 0 and out == "None", err
    rules = PricingRules(tax_rate=Decimal("0.08"), standard=Decimal("5.00"),
                         express=Decimal("15.00"), free_shipping_over=None)
    assert quote([(Decimal("500.00"), 1)], None, "standard", rules).shipping == Decimal("5.00")


@pytest.mark.parametrize("name,value", [("SHOP_TAX_RATE", "eight percent"),
                                        ("SHOP_SHIPPING_STANDARD", "-5"),
                                        ("SHOP_FREE_SHIPPING_OVER", "NaN")])
def test_a_money_setting_that_is_no_amount_stops_the_start_naming_it(name, value):
    code, _, err = _config_value({name: value}, "config.Config.TAX_RATE")
    assert code != 0
    assert f"{name} must be a number" in err and "InvalidOperation" not in err
