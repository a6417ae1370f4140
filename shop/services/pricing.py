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


@dataclass(frozen=True)
class PricingRules:
    """The shop's configured rates; tests pass their own."""

    tax_rate: Decimal
    standard: Decimal
    express: Decimal
    free_shipping_over: Decimal | None

    @classmethod
    def from_config(cls) -> PricingRules:
        c = current_app.config
        return cls(tax_rate=Decimal(c["TAX_RATE"]), standard=Decimal(c["SHIPPING_STANDARD"]),
                   express=Decimal(c["SHIPPING_EXPRESS"]),
                   free_shipping_over=Decimal(c["FREE_SHIPPING_OVER"])
                   if c.get("FREE_SHIPPING_OVER") not in (None, "") else None)


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


def line_total(unit_price: Decimal, quantity: int) -> Decimal:
    return quantize(Decimal(unit_price) * quantity)


def shipping_cost(method: str, subtotal: Decimal, rules: PricingRules) -> Decimal:
    """Standard is free over the configured subtotal; express always costs its rate."""
    if method not in SHIPPING_METHODS:
        raise ValueError(f"unknown shipping method {method!r}")
    if method == "standard":
        if rules.free_shipping_over is not None and subtotal >= rules.free_shipping_over:
            return ZERO
        return quantize(rules.standard)
    return quantize(rules.express)


def quote(lines: Iterable[tuple[Decimal, int]], coupon: CouponTerms | None = None,
          shipping_method: str = "standard", rules: PricingRules | None = None) -> Quote:
    """Price lines of (unit price, quantity). The total is subtotal - discount + shipping + tax;
    the discount never exceeds the subtotal; nothing is negative. An empty cart costs nothing."""
    rules = rules or PricingRules.from_config()
    items = [(Decimal(p), int(q)) for p, q in lines]
    subtotal = quantize(sum((line_total(p, q) for p, q in items), ZERO))
    discount = ZERO
    free_shipping = False
    if coupon is not None:
        if coupon.kind == "percent":
            pct = min(max(Decimal(coupon.value), ZERO), Decimal(100))
            discount = quantize(subtotal * pct / 100)
        elif coupon.kind == "fixed":
            discount = quantize(min(max(Decimal(coupon.value), ZERO), subtotal))
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
    tax = quantize(taxable * rules.tax_rate) if taxable > 0 else ZERO
    total = subtotal - discount + shipping + tax
    return Quote(subtotal=subtotal, discount=discount, shipping=shipping, tax=tax,
                 total=quantize(total), shipping_method=shipping_method,
                 free_shipping=free_shipping, coupon_code=coupon.code if coupon else None)
