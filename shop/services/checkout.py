"""Placing an order: re-price on the server, take stock, count the coupon, write the order, its
snapshot lines, first event and payment, empty the cart: one transaction, idempotent."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Order, OrderEvent, OrderLine, Payment, Variant
from . import addresses, coupons, inventory, jobs, notifications, pricing
from .cart import CartOwner, clear, find_cart, load_lines
from .database import retrying, write_transaction
from .errors import CartChanged, CartEmpty, OutOfStock, ValidationError
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
        shipping = addresses.clean(req.shipping_address)
    except ValidationError as exc:
        errors.update(exc.errors)
    if req.billing_address:
        try:
            billing = addresses.clean(req.billing_address, prefix="billing_")
        except ValidationError as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    return email, shipping, billing


def place_order(owner: CartOwner, req: CheckoutRequest) -> Order:
    """Turn the owner's cart into an order. A repeated request with the same idempotency key
    returns the first order; nothing is taken twice."""
    email, shipping_address, billing_address = validate(req)

    def attempt() -> tuple[int, list[int]]:
        with write_transaction():
            return _place(owner, req, email, shipping_address, billing_address)

    try:
        order_id, low_stock = retrying(attempt)
    except IntegrityError:
        # A simultaneous submission with the same key committed first: answer with its order.
        db.session.rollback()
        existing = _by_key(req.idempotency_key)
        if existing is None:
            raise
        return existing
    order = db.session.get(Order, order_id)
    if low_stock is not None:
        _after_commit(order, low_stock)
    return order


def _by_key(key: str | None) -> Order | None:
    if not key:
        return None
    return db.session.execute(
        select(Order).where(Order.idempotency_key == key)).scalar_one_or_none()


def _place(owner: CartOwner, req: CheckoutRequest, email: str, shipping_address: dict,
           billing_address: dict | None) -> tuple[int, list[int] | None]:
    """Returns the order id and the variants this order took below their low-stock threshold
    (None when the order already existed)."""
    existing = _by_key(req.idempotency_key)
    if existing is not None:
        return existing.id, None
    cart = find_cart(owner)
    if cart is None:
        raise CartEmpty("Your cart is empty.")
    lines = load_lines(cart.id)
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

    order = Order(number=new_number(), user_id=owner.user_id, email=email, status="pending",
                  currency=current_app.config["CURRENCY"], subtotal=quote.subtotal,
                  discount=quote.discount, shipping=quote.shipping, tax=quote.tax,
                  total=quote.total, coupon_code=coupon.code if coupon else None,
                  shipping_method=req.shipping_method, payment_method=req.payment_method,
                  shipping_address=shipping_address,
                  billing_address=billing_address or shipping_address,
                  idempotency_key=req.idempotency_key)
    db.session.add(order)
    # The unique idempotency key is written first: a duplicate waits here, then fails.
    db.session.flush()

    product_ids = dict(db.session.execute(
        select(Variant.id, Variant.product_id).where(
            Variant.id.in_([line.variant_id for line in lines]))).all())
    for line in sorted(lines, key=lambda item: item.variant_id):  # one lock order: no deadlock
        inventory.reserve(line.variant_id, line.quantity)
    if coupon is not None:
        coupons.record_use(coupon, order, owner.user_id, email)
    for line in lines:
        db.session.add(OrderLine(order_id=order.id, variant_id=line.variant_id,
                                 product_id=product_ids.get(line.variant_id), sku=line.sku,
                                 name=line.name, options=line.options,
                                 unit_price=line.unit_price, quantity=line.quantity,
                                 line_total=line.line_total))
    db.session.add(OrderEvent(order_id=order.id, from_status=None, to_status="pending",
                              actor_id=owner.user_id, actor=email, note="Order placed"))
    db.session.add(Payment(order_id=order.id, provider=req.payment_method,
                           amount=quote.total, currency=order.currency, status="pending"))
    clear(cart.id)
    db.session.flush()
    taken = {line.variant_id: line.quantity for line in lines}
    crossed = [row.id for row in db.session.execute(
        select(Variant.id, Variant.stock_quantity, Variant.low_stock_threshold)
        .where(Variant.id.in_(list(taken)))).all()
        if row.stock_quantity <= row.low_stock_threshold
        < row.stock_quantity + taken[row.id]]
    return order.id, crossed


def _after_commit(order: Order, low_stock: list[int]) -> None:
    """Work that follows a new order but must not undo it: mail, alerts, metrics."""
    from . import metrics

    metrics.order_placed()
    jobs.enqueue(notifications.order_confirmation, order.id)
    if low_stock:
        jobs.enqueue(notifications.low_stock_alert, low_stock)

