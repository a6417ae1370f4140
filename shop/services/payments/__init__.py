"""Payments behind one interface: `manual` (the embedded default) and `stripe`.

Every path that finishes a payment (staff marking it paid, the shopper's return from Stripe,
Stripe's webhook) ends in `orders.transition(..., "paid")`, whose conditional UPDATE lets
exactly one of them through.
"""
from __future__ import annotations

from ...extensions import db
from ...models import Order
from .. import orders
from ..errors import NotFound
from ..orders import Actor


def checkout_url(order: Order) -> str | None:
    """Where the shopper pays: Stripe's hosted page, or None (manual: nothing to do now)."""
    if order.payment_method == "stripe":
        from . import stripe_provider

        return stripe_provider.checkout_url(order)
    return None


def refund(order_id: int, actor: Actor, note: str = "") -> Order:
    """Refund an order: through Stripe for Stripe payments, recorded otherwise; the state
    machine then releases its stock once."""
    order = db.session.get(Order, order_id)
    if order is None:
        raise NotFound("That order does not exist.")
    if order.payment_method == "stripe":
        from . import stripe_provider

        return stripe_provider.refund(order, actor, note)
    return orders.transition(order_id, "refunded", actor, note or "Refund recorded")


def change_status(order_id: int, to_status: str, actor: Actor, note: str = "", *,
                  carrier: str | None = None, tracking_number: str | None = None) -> Order:
    """The one entry point for staff (admin and API) status changes: refunds go through the
    payment provider, everything else straight to the state machine."""
    if to_status == "refunded":
        return refund(order_id, actor, note)
    return orders.transition(order_id, to_status, actor, note, carrier=carrier,
                             tracking_number=tracking_number)
