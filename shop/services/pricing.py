"""Prices a cart: subtotal, coupon discount, shipping, tax, total. All Decimal, rounded once each,
here and nowhere else."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app

from .money import ZERO, quantize

SHIPPING_METHODS = ("standard", "express")
SHIPPING_LABELS = {"standard": "Standard (3-5 business days)",
                   "express": "Express (1-2 business days)"}


def known_shipping_method(value: str | None) -> str:
    """The method a link or form names (the cart's estimate, the checkout's first choice):
    one the shop has, else standard. A choice to start from, never a reason to refuse a page."""
    return value if value in SHIPPING_METHODS else "standard"


@dataclass(frozen=True)
class PricingRules:
    """The shop's configured rates; tests pass their own."""

    tax_rate: Decimal
    standard: Decimal
    express: Decimal
    free_shipping_over: Decimal | None
    # The shop's currency: every amount is rounded to its unit (whole yen in JPY).
    currency: str = "USD"

    @classmethod
    def from_config(cls) -> PricingRules:
        c = current_app.config
        return cls(tax_rate=Decimal(c["TAX_RATE"]), standard=Decimal(c["SHIPPING_STANDARD"]),
                   express=Decimal(c["SHIPPING_EXPRESS"]),
                   free_shipping_over=Decimal(c["FREE_SHIPPING_OVER"])
                   if c.get("FREE_SHIPPING_OVER") not in (None, "") else None,
                   currency=str(c["CURRENCY"]).upper())


@dataclass(frozen=True)
class CouponTerms:
    """What pricing needs of a coupon that was already found valid."""

    code: str
    kind: str  # percent | fixed | free_shipping
    value: Decimal


@dataclass(frozen=True)
class Quote:
    subtotal: Decimal
    discount: Decimal
    shipping: Decimal
    tax: Decimal
    total: Decimal
    shipping_method: str
    free_shipping: bool
    coupon_code: str | None


def unit_price(price: Decimal, currency: str = "USD") -> Decimal:
    """A price as the shop charges it: in the currency's unit (a price kept with a fraction of
    a yen is charged, shown and sent to Stripe as whole yen)."""
    return quantize(price, currency)


def line_total(price: Decimal, quantity: int, currency: str = "USD") -> Decimal:
    """Unit price times quantity: what Stripe's itemised line charges too."""
    return quantize(unit_price(price, currency) * quantity, currency)


def shipping_cost(method: str, subtotal: Decimal, rules: PricingRules) -> Decimal:
    """Standard is free over the configured subtotal; express always costs its rate."""
    if method not in SHIPPING_METHODS:
        raise ValueError(f"unknown shipping method {method!r}")
    if method == "standard":
        if rules.free_shipping_over is not None and subtotal >= rules.free_shipping_over:
            return ZERO
        return quantize(rules.standard, rules.currency)
    return quantize(rules.express, rules.currency)


def quote(lines: Iterable[tuple[Decimal, int]], coupon: CouponTerms | None = None,
          shipping_method: str = "standard", rules: PricingRules | None = None) -> Quote:
    """Price lines of (unit price, quantity). The total is subtotal - discount + shipping + tax;
    the discount never exceeds the subtotal; nothing is negative. An empty cart costs nothing.
    Each amount is rounded to the unit of the rules' currency (cents; whole yen in JPY)."""
    rules = rules or PricingRules.from_config()
    currency = rules.currency
    items = [(Decimal(p), int(q)) for p, q in lines]
    subtotal = quantize(sum((line_total(p, q, currency) for p, q in items), ZERO), currency)
    discount = ZERO
    free_shipping = False
    if coupon is not None:
        if coupon.kind == "percent":
            pct = min(max(Decimal(coupon.value), ZERO), Decimal(100))
            discount = quantize(subtotal * pct / 100, currency)
        elif coupon.kind == "fixed":
            discount = quantize(min(max(Decimal(coupon.value), ZERO), subtotal), currency)
        elif coupon.kind == "free_shipping":
            free_shipping = True
    discount = min(discount, subtotal)
    if not items:
        shipping = ZERO
    elif free_shipping:
        shipping = ZERO
    else:
        shipping = shipping_cost(shipping_method, subtotal, rules)
    taxable = subtotal - discount + shipping
    tax = quantize(taxable * rules.tax_rate, currency) if taxable > 0 else ZERO
    total = subtotal - discount + shipping + tax
    return Quote(subtotal=subtotal, discount=discount, shipping=shipping, tax=tax,
                 total=quantize(total, currency), shipping_method=shipping_method,
                 free_shipping=free_shipping, coupon_code=coupon.code if coupon else None)
