"""Placing an order: re-price on the server, take stock, count the coupon, write the order, its
snapshot lines, first event and payment, empty the cart: one transaction, idempotent."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from flask import current_app
from sqlalchemy import Insert, Numeric, Select, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import Order, OrderEvent, OrderLine, Payment, Variant, utcnow
from . import addresses, coupons, inventory, jobs, notifications, pricing
from .cart import CartLineView, CartOwner, clear, find_cart, load_lines, size_problem
from .database import retrying, write_transaction
from .errors import (
    CartChanged,
    CartEmpty,
    OrderTooLarge,
    OutOfStock,
    ShopError,
    ValidationError,
)
from .money import card_maximum, card_minimum, fits_unit, format_money, to_string
from .orders import new_number

log = logging.getLogger("shop.checkout")
PAYMENT_METHODS = ("manual", "stripe")
PAYMENT_LABELS = {"manual": "Bank transfer or pay on delivery",
                  "stripe": "Card (secure payment page by Stripe)"}


@dataclass
class CheckoutRequest:
    email: str
    shipping_address: Mapping[str, object]
    shipping_method: str = "standard"
    payment_method: str = "manual"
    billing_address: Mapping[str, object] | None = None
    # What the shopper reviewed: a different total now means the cart or prices changed.
    expected_total: Decimal | None = None
    # The reviewed cart's fingerprint (cart_fingerprint): another one now means the cart
    # changed, even to the same total (a size swapped at the same price in another tab).
    expected_cart: str | None = None
    idempotency_key: str | None = None
    # How the caller's input names the address fields, for the errors: the checkout form's
    # `postal_code` and `billing_postal_code`, the API body's `shipping_address.postal_code`.
    shipping_prefix: str = ""
    billing_prefix: str = "billing_"


def cart_fingerprint(lines: Iterable[CartLineView], coupon_code: str | None,
                     shipping_method: str) -> str:
    """The cart as the shopper reviews it, in 32 characters: each line's variant, quantity
    and unit price, the coupon and the shipping method. The review's "Place order" carries
    it, and place() refuses a cart that no longer matches it, as it refuses another total."""
    parts = sorted(f"{line.variant_id}x{line.quantity}@{line.unit_price}" for line in lines)
    text = "|".join([*parts, f"coupon={(coupon_code or '').upper()}",
                     f"shipping={shipping_method}"])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def payment_methods() -> tuple[str, ...]:
    """Stripe is offered only when its keys are configured."""
    if current_app.config.get("STRIPE_SECRET_KEY"):
        return PAYMENT_METHODS
    return ("manual",)


def validate(req: CheckoutRequest) -> tuple[str, dict[str, str], dict[str, str] | None]:
    """Check the shopper's details; raise ValidationError with every bad field at once."""
    from .accounts import normalise_email, valid_email

    errors: dict[str, str] = {}
    email = normalise_email(req.email if isinstance(req.email, str) else "")
    if not valid_email(email):
        errors["email"] = "Enter a valid email address."
    if req.shipping_method not in pricing.SHIPPING_METHODS:
        errors["shipping_method"] = "Choose standard or express shipping."
    if req.payment_method not in payment_methods():
        errors["payment_method"] = "Choose an available payment method."
    shipping = billing = None
    try:
        shipping = addresses.clean(req.shipping_address, prefix=req.shipping_prefix)
    except ValidationError as exc:
        errors.update(exc.errors)
    if req.billing_address:
        try:
            billing = addresses.clean(req.billing_address, prefix=req.billing_prefix)
        except ValidationError as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    return email, shipping, billing


@dataclass(frozen=True)
class Placement:
    """What a checkout came to: the order, and whether this request placed it (False: a
    repeated request answered with the order its idempotency key placed first). Only a new
    order counts towards the orders rate limit (blueprints/limits.py)."""
    order: Order
    new: bool


def place_order(owner: CartOwner, req: CheckoutRequest) -> Order:
    """Turn the owner's cart into an order. A repeated request with the same idempotency key
    returns the first order; nothing is taken twice."""
    return place(owner, req).order


def place(owner: CartOwner, req: CheckoutRequest) -> Placement:
    """place_order, telling a new order from the first one a repeated request finds."""
    email, shipping_address, billing_address = validate(req)

    def attempt() -> _Placed:
        with write_transaction():
            placed = _place(owner, req, email, shipping_address, billing_address)
            # The lines' ids, read before the commit: no transaction of its own afterwards.
            placed.line_ids = list(db.session.execute(
                _statements().line_ids, {"order_id": placed.order["id"]}).scalars())
        return placed

    try:
        placed = retrying(attempt)
    except (IntegrityError, ShopError):
        # Either a submission with the same key committed first (the unique key refused this
        # one), or the first order already emptied the cart or took the stock: a repeated
        # request answers with the first order. Anything else is this request's own error.
        db.session.rollback()
        existing = _by_key(req.idempotency_key)
        if existing is None:
            raise
        return Placement(existing, new=False)
    # The answer and the confirmation mail read the order and its lines: made from what was
    # written, as a query would load them, and put in the session as loaded (the mail job
    # finds them there). Reading them back cost about a sixth of placing an order.
    order = _as_loaded(placed)
    db.session.add(order)
    _after_commit(order, placed.low_stock)
    return Placement(order, new=True)


def placed_with_key(key: str) -> bool:
    """An order carries this idempotency key (a repeat of it places nothing)."""
    return db.session.execute(
        select(Order.id).where(Order.idempotency_key == key)).first() is not None


def _by_key(key: str | None) -> Order | None:
    if not key:
        return None
    return db.session.execute(
        select(Order).where(Order.idempotency_key == key)).scalar_one_or_none()


@dataclass
class _Placed:
    """What _place wrote: the order's row (its id included) and its lines' rows, in the order
    they were inserted; and the variants the order took below their low-stock threshold."""
    order: dict[str, Any]
    lines: list[dict[str, Any]]
    low_stock: list[int]
    line_ids: list[int] | None = None


@dataclass(frozen=True)
class _Statements:
    order: Insert
    stock: Select
    lines: Insert
    line_ids: Select
    event: Insert
    payment: Insert


@cache
def _statements() -> _Statements:
    """The statements of _place, built once: on the tables (no ORM unit of work), with their
    column defaults (created_at, updated_at, stock_released) filled in by SQLAlchemy."""
    variants = Variant.__table__
    return _Statements(
        order=insert(Order.__table__),
        stock=select(variants.c.id, variants.c.product_id, variants.c.stock_quantity,
                     variants.c.low_stock_threshold)
        .where(variants.c.id.in_(bindparam("ids", expanding=True))),
        lines=insert(OrderLine.__table__),
        line_ids=select(OrderLine.__table__.c.id)
        .where(OrderLine.__table__.c.order_id == bindparam("order_id"))
        .order_by(OrderLine.__table__.c.id),
        event=insert(OrderEvent.__table__), payment=insert(Payment.__table__))


def _now_as_stored() -> datetime:
    """Now, as a DATETIME column keeps it: MySQL's and MariaDB's keep whole seconds (one
    rounds, the other cuts), so the order is written with whole seconds there."""
    now = utcnow()
    return now if db.session.get_bind().dialect.name == "sqlite" else now.replace(microsecond=0)


def _as_stored(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """A row's values as a query would load them: amounts with their column's decimals
    (10 yen is 10.00), and None for a column left to nothing."""
    row = {}
    for column in table.columns:
        if column.key not in values:
            if column.server_default is not None:
                continue  # the database's default: left expired, loaded when first read
            row[column.key] = None
            continue
        value = values[column.key]
        if isinstance(column.type, Numeric) and column.type.scale is not None \
                and value is not None:
            value = Decimal(value).quantize(Decimal(1).scaleb(-column.type.scale))
        row[column.key] = value
    return row


def _as_loaded(placed: _Placed) -> Order:
    """The order and its lines as if loaded by a query (persistent once added to a session;
    no SQL): tests/services/test_checkout.py compares them with what a query loads."""
    order = Order(**_as_stored(Order.__table__, placed.order))
    lines = [OrderLine(**_as_stored(OrderLine.__table__, {**values, "id": line_id}))
             for values, line_id in zip(placed.lines, placed.line_ids or [], strict=True)]
    for obj in (order, *lines):
        make_transient_to_detached(obj)
    set_committed_value(order, "lines", lines)
    for line in lines:
        set_committed_value(line, "order", order)
    return order


def _place(owner: CartOwner, req: CheckoutRequest, email: str, shipping_address: dict,
           billing_address: dict | None) -> _Placed:
    """Returns what it wrote, and the variants this order took below their low-stock threshold.

    A busy shop places many orders a second on two cores, so every statement counts: the rows
    are written with plain INSERTs (the ORM's unit of work costs more than the statements),
    and the one SELECT after taking the stock gives both the lines' products and the stock
    left. An order already placed with this key is found by place_order when this fails.
    The cart is locked first, as adding to it locks it: an add in another tab waits for the
    order and then goes into the emptied cart, instead of changing or adding a line that the
    order does not hold and then deletes."""
    cart = find_cart(owner, lock=True)
    lines = load_lines(cart.id) if cart is not None else []
    if not lines:
        raise CartEmpty("Your cart is empty.")
    for line in lines:
        if line.problem:
            raise OutOfStock(line.problem, details={"sku": line.sku,
                                                    "available": line.available})
    rules = pricing.PricingRules.from_config()
    raw = [(line.unit_price, line.quantity) for line in lines]
    coupon = None
    if cart.coupon_code:
        subtotal = pricing.quote(raw, None, req.shipping_method, rules).subtotal
        coupon = coupons.validate(cart.coupon_code, subtotal, user_id=owner.user_id,
                                  email=email, currency=current_app.config["CURRENCY"])
    quote = pricing.quote(raw, coupons.terms(coupon) if coupon else None, req.shipping_method,
                          rules)
    if (req.expected_total is not None and quote.total != req.expected_total) or (
            req.expected_cart is not None
            and cart_fingerprint(lines, cart.coupon_code, req.shipping_method)
            != req.expected_cart):
        # Written as the API writes amounts ("65.00", "1511"); a total sent with more
        # decimals than the currency has is said as sent, not rounded into another one.
        expected = req.expected_total
        raise CartChanged("Your cart or its prices changed since you reviewed it. "
                          "Please check the new total and place the order again.",
                          details={"expected_total": to_string(expected, rules.currency)
                                   if expected is None or fits_unit(expected, rules.currency)
                                   else str(expected),
                                   "total": to_string(quote.total, rules.currency)})

    currency = current_app.config["CURRENCY"]
    if problem := size_problem(lines, quote, currency):
        raise OrderTooLarge(problem)
    if req.payment_method == "stripe" and quote.total < card_minimum(currency):
        # Stripe refuses to charge less (a coupon covering the whole cart): the order would
        # wait for a payment page that cannot open, then expire.
        raise ValidationError({"payment_method": (
            f"A card payment must be at least {format_money(card_minimum(currency), currency)}"
            f"; this order's total is {format_money(quote.total, currency)}. "
            f"Choose another way to pay.")})
    if req.payment_method == "stripe" and quote.total > card_maximum(currency):
        # Nor more: the order would hold its stock for a payment page Stripe refuses to open
        # (reported as Stripe out of reach at every "Pay now"), until it expired.
        raise ValidationError({"payment_method": (
            f"A card payment can be at most {format_money(card_maximum(currency), currency)}"
            f"; this order's total is {format_money(quote.total, currency)}. "
            f"Choose another way to pay.")})
    write = _statements()
    # The unique idempotency key is written first: a duplicate waits here, then fails.
    now = _now_as_stored()
    result = db.session.execute(write.order, {
        "number": new_number(), "user_id": owner.user_id, "email": email, "status": "pending",
        "currency": currency, "subtotal": quote.subtotal, "discount": quote.discount,
        "shipping": quote.shipping, "tax": quote.tax, "total": quote.total,
        "coupon_code": coupon.code if coupon else None, "shipping_method": req.shipping_method,
        "payment_method": req.payment_method, "shipping_address": shipping_address,
        "ship_to_name": str(shipping_address.get("name") or "")[:120],
        "billing_address": billing_address or shipping_address,
        "idempotency_key": req.idempotency_key, "created_at": now, "updated_at": now})
    order_id = result.inserted_primary_key[0]
    # With the columns' own defaults (stock_released) as SQLAlchemy filled them in.
    order_row = {**result.last_inserted_params(), "id": order_id}

    taken: dict[int, int] = {}
    for line in lines:
        taken[line.variant_id] = taken.get(line.variant_id, 0) + line.quantity
    inventory.reserve_all(taken)  # rows locked in key order: no deadlock
    stock = db.session.execute(write.stock, {"ids": list(taken)}).all()
    product_ids = {row.id: row.product_id for row in stock}
    if coupon is not None:
        coupons.record_use(coupon, order_id, owner.user_id, email)
    line_rows = [
        {"order_id": order_id, "variant_id": line.variant_id,
         "product_id": product_ids.get(line.variant_id), "sku": line.sku, "name": line.name,
         "options": line.options, "unit_price": line.unit_price, "quantity": line.quantity,
         "line_total": line.line_total} for line in lines]
    db.session.execute(write.lines, line_rows)
    db.session.execute(write.event, {
        "order_id": order_id, "from_status": None, "to_status": "pending",
        "actor_id": owner.user_id, "actor": email, "note": "Order placed"})
    db.session.execute(write.payment, {
        "order_id": order_id, "provider": req.payment_method, "amount": quote.total,
        "currency": currency, "status": "pending"})
    clear(cart.id)
    crossed = [row.id for row in stock
               if row.stock_quantity <= row.low_stock_threshold
               < row.stock_quantity + taken[row.id]]
    return _Placed(order=order_row, lines=line_rows, low_stock=crossed)


def _after_commit(order: Order, low_stock: list[int]) -> None:
    """Work that follows a new order but must not undo it: mail, alerts, metrics."""
    from . import metrics

    metrics.order_placed()
    jobs.enqueue(notifications.order_confirmation, order.id)
    if low_stock:
        jobs.enqueue(notifications.low_stock_alert, low_stock)

