"""Placing an order: re-price on the server, take stock, count the coupon, write the order, its
snapshot lines, first event and payment, empty the cart: one transaction, idempotent."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from flask import current_app
from sqlalchemy import Insert, Select, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Order, OrderEvent, OrderLine, Payment, Variant
from . import addresses, coupons, inventory, jobs, notifications, pricing
from .cart import CartOwner, clear, find_cart, load_lines
from .database import retrying, write_transaction
from .errors import CartChanged, CartEmpty, OutOfStock, ShopError, ValidationError
from .money import card_minimum, format_money
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
    idempotency_key: str | None = None
    # How the caller's input names the address fields, for the errors: the checkout form's
    # `postal_code` and `billing_postal_code`, the API body's `shipping_address.postal_code`.
    shipping_prefix: str = ""
    billing_prefix: str = "billing_"


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


def place_order(owner: CartOwner, req: CheckoutRequest) -> Order:
    """Turn the owner's cart into an order. A repeated request with the same idempotency key
    returns the first order; nothing is taken twice."""
    email, shipping_address, billing_address = validate(req)

    def attempt() -> tuple[Order, list[int]]:
        with write_transaction():
            order_id, low_stock = _place(owner, req, email, shipping_address, billing_address)
            # The order and its lines in one query (the answer and the confirmation mail
            # read both), read before the commit: no transaction of its own to begin and end
            # afterwards. Taken out of the session so the commit does not expire it.
            placed = db.session.get(Order, order_id, options=[joinedload(Order.lines)])
            db.session.expunge(placed)
        return placed, low_stock

    try:
        order, low_stock = retrying(attempt)
    except (IntegrityError, ShopError):
        # Either a submission with the same key committed first (the unique key refused this
        # one), or the first order already emptied the cart or took the stock: a repeated
        # request answers with the first order. Anything else is this request's own error.
        db.session.rollback()
        existing = _by_key(req.idempotency_key)
        if existing is None:
            raise
        return existing
    db.session.add(order)  # back in the session as read: the mail job finds it there
    _after_commit(order, low_stock)
    return order


def _by_key(key: str | None) -> Order | None:
    if not key:
        return None
    return db.session.execute(
        select(Order).where(Order.idempotency_key == key)).scalar_one_or_none()


@dataclass(frozen=True)
class _Statements:
    order: Insert
    stock: Select
    lines: Insert
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
        lines=insert(OrderLine.__table__), event=insert(OrderEvent.__table__),
        payment=insert(Payment.__table__))


def _place(owner: CartOwner, req: CheckoutRequest, email: str, shipping_address: dict,
           billing_address: dict | None) -> tuple[int, list[int]]:
    """Returns the order id and the variants this order took below their low-stock threshold.

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
                                                    "available": line.stock_quantity})
    rules = pricing.PricingRules.from_config()
    raw = [(line.unit_price, line.quantity) for line in lines]
    coupon = None
    if cart.coupon_code:
        subtotal = pricing.quote(raw, None, req.shipping_method, rules).subtotal
        coupon = coupons.validate(cart.coupon_code, subtotal, user_id=owner.user_id,
                                  email=email, currency=current_app.config["CURRENCY"])
    quote = pricing.quote(raw, coupons.terms(coupon) if coupon else None, req.shipping_method,
                          rules)
    if req.expected_total is not None and quote.total != req.expected_total:
        raise CartChanged("Your cart or its prices changed since you reviewed it. "
                          "Please check the new total and place the order again.",
                          details={"expected_total": str(req.expected_total),
                                   "total": str(quote.total)})

    currency = current_app.config["CURRENCY"]
    if req.payment_method == "stripe" and quote.total < card_minimum(currency):
        # Stripe refuses to charge less (a coupon covering the whole cart): the order would
        # wait for a payment page that cannot open, then expire.
        raise ValidationError({"payment_method": (
            f"A card payment must be at least {format_money(card_minimum(currency), currency)}"
            f"; this order's total is {format_money(quote.total, currency)}. "
            f"Choose another way to pay.")})
    write = _statements()
    # The unique idempotency key is written first: a duplicate waits here, then fails.
    order_id = db.session.execute(write.order, {
        "number": new_number(), "user_id": owner.user_id, "email": email, "status": "pending",
        "currency": currency, "subtotal": quote.subtotal, "discount": quote.discount,
        "shipping": quote.shipping, "tax": quote.tax, "total": quote.total,
        "coupon_code": coupon.code if coupon else None, "shipping_method": req.shipping_method,
        "payment_method": req.payment_method, "shipping_address": shipping_address,
        "ship_to_name": str(shipping_address.get("name") or "")[:120],
        "billing_address": billing_address or shipping_address,
        "idempotency_key": req.idempotency_key}).inserted_primary_key[0]

    taken: dict[int, int] = {}
    for line in lines:
        taken[line.variant_id] = taken.get(line.variant_id, 0) + line.quantity
    inventory.reserve_all(taken)  # rows locked in key order: no deadlock
    stock = db.session.execute(write.stock, {"ids": list(taken)}).all()
    product_ids = {row.id: row.product_id for row in stock}
    if coupon is not None:
        coupons.record_use(coupon, order_id, owner.user_id, email)
    db.session.execute(write.lines, [
        {"order_id": order_id, "variant_id": line.variant_id,
         "product_id": product_ids.get(line.variant_id), "sku": line.sku, "name": line.name,
         "options": line.options, "unit_price": line.unit_price, "quantity": line.quantity,
         "line_total": line.line_total} for line in lines])
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
    return order_id, crossed


def _after_commit(order: Order, low_stock: list[int]) -> None:
    """Work that follows a new order but must not undo it: mail, alerts, metrics."""
    from . import metrics

    metrics.order_placed()
    jobs.enqueue(notifications.order_confirmation, order.id)
    if low_stock:
        jobs.enqueue(notifications.low_stock_alert, low_stock)

