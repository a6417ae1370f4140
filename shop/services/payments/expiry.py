"""Unpaid Stripe orders give their stock back after UNPAID_ORDER_TIMEOUT_MINUTES.

Two ways in, one rule: a job scheduled for each Stripe order at its deadline (the RQ worker's
scheduler runs it), and `expire_unpaid_orders`, the sweep behind `flask --app wsgi
expire-orders` for cron (and for shops without Redis). Both are safe to run any number of
times: the state machine cancels an order once.
"""
from __future__ import annotations

import logging

import stripe
from sqlalchemy import select

from ...extensions import db
from ...models import Order, utcnow
from .. import jobs, notifications, orders
from ..errors import InvalidTransition
from ..orders import Actor
from . import stripe_provider

log = logging.getLogger("shop.payments.expiry")
ACTOR = Actor(label="expiry")


def expire_order(order_id: int) -> bool:
    """Cancel one unpaid Stripe order whose deadline has passed (releasing its stock), after
    closing its Checkout Session so it can no longer be paid. A session that turns out to be
    paid finishes the payment instead, and one whose delayed payment (a bank debit) is still
    processing keeps the order until Stripe's async_payment_succeeded or _failed event.
    Returns True when this call cancelled the order."""
    order = db.session.get(Order, order_id)
    if order is None or order.status != "pending" or order.payment_method != "stripe":
        return False
    if stripe_provider.deadline(order) > utcnow():
        return False
    try:
        outcome = stripe_provider.close_checkout(order)
    except (stripe.StripeError, stripe_provider.StripeUnavailable) as exc:
        # Cancel anyway: stock must come back; a payment that still arrives on the old
        # session is refunded by finish_payment.
        log.warning("could not close the stripe session of order %s: %s", order.number, exc)
        outcome = "closed"
    if outcome in stripe_provider.SETTLED_OUTCOMES:
        if outcome == "unpaid":
            log.info("order %s has a payment still processing at its deadline; it waits for "
                     "Stripe's verdict", order.number)
        return False
    minutes = int(stripe_provider.payment_timeout().total_seconds() // 60)
    try:
        orders.transition(order_id, "cancelled", ACTOR,
                          f"Not paid within {minutes} minute{'' if minutes == 1 else 's'}; "
                          "stock released")
    except InvalidTransition:
        return False
    log.info("unpaid order %s cancelled after its payment deadline", order.number)
    jobs.enqueue(notifications.order_status_changed, order_id, "cancelled", None, None,
                 notifications.UNPAID)
    return True


def unpaid_past_deadline() -> list[int]:
    """The pending Stripe orders past their deadline, oldest first."""
    cutoff = utcnow() - stripe_provider.payment_timeout()
    return list(db.session.execute(
        select(Order.id).where(Order.status == "pending", Order.payment_method == "stripe",
                               Order.created_at <= cutoff).order_by(Order.id)).scalars())


def expire_unpaid_orders() -> int:
    """Cancel every pending Stripe order past its deadline; returns how many were cancelled."""
    ids = unpaid_past_deadline()
    cancelled = 0
    for order_id in ids:
        try:
            cancelled += expire_order(order_id)
        except Exception:  # one bad order must not stop the sweep
            log.exception("expiring order %s failed", order_id)
            db.session.rollback()
    return cancelled
