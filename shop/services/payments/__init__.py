"""Payments behind one interface: `manual` (the embedded default) and `stripe`.

Every path that finishes a payment (staff marking it paid, the shopper's return from Stripe,
Stripe's webhook) ends in `orders.transition(..., "paid")`, whose conditional UPDATE lets
exactly one of them through.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import stripe
from sqlalchemy import select, update

from ...extensions import db
from ...models import Order, OrderEvent, Payment, utcnow
from .. import jobs, notifications, orders
from ..database import retrying, write_transaction
from ..errors import InvalidTransition, NotFound, ShopError
from ..orders import Actor

log = logging.getLogger("shop.payments")

# Staff changes the customer hears about by email (not "processing": nothing to do for them).
NOTIFY_STATUSES = ("paid", "shipped", "delivered", "cancelled", "refunded")


def checkout_url(order: Order) -> str | None:
    """Where the shopper pays: Stripe's hosted page, or None (manual: nothing to do now)."""
    if order.payment_method == "stripe":
        from . import stripe_provider

        return stripe_provider.checkout_url(order)
    return None


def pay_link(order: Order) -> tuple[str | None, str | None]:
    """checkout_url, and why there is none ("processing": a bank debit the shopper started is
    on its way; "unavailable": the provider cannot be reached; None: nothing to pay)."""
    if order.payment_method == "stripe":
        from . import stripe_provider

        return stripe_provider.pay_link(order)
    return None, None


def refund(order_id: int, actor: Actor, note: str = "") -> Order:
    """Refund an order: through Stripe for Stripe payments, recorded otherwise; the state
    machine then releases its stock once."""
    order = db.session.get(Order, order_id)
    if order is None:
        raise NotFound("That order does not exist.")
    if order.payment_method == "stripe":
        from . import stripe_provider

        # It mails the customer itself, unless Stripe's webhook refunded the order first.
        return stripe_provider.refund(order, actor, note)
    result = orders.transition(order_id, "refunded", actor, note or "Refund recorded")
    _notify(result, "refunded")
    return result


def change_status(order_id: int, to_status: str, actor: Actor, note: str = "", *,
                  carrier: str | None = None, tracking_number: str | None = None) -> Order:
    """The one entry point for staff (admin and API) status changes: refunds go through the
    payment provider, everything else straight to the state machine. The note and the
    tracking are checked first: nothing, not a refund at Stripe, happens for a refused one."""
    orders.check_details(note, carrier, tracking_number)
    if to_status == "refunded":
        return refund(order_id, actor, note)
    seen = None
    if to_status in ("paid", "cancelled"):
        seen = _card_reference(order_id)
        paid = _close_card_checkout(order_id)
        if paid is not None:
            if to_status == "cancelled":
                raise InvalidTransition(
                    "This order has just been paid by card, so it cannot be cancelled; "
                    "refund it instead.", details={"from": "paid", "to": to_status,
                                                   "allowed": list(orders.allowed("paid"))})
            return paid
    order = orders.transition(order_id, to_status, actor, note, carrier=carrier,
                              tracking_number=tracking_number)
    if to_status in ("paid", "cancelled"):
        _close_late_session(order, seen)
    _notify(order, to_status)
    return order


def _card_reference(order_id: int) -> str | None:
    """The order's Stripe Checkout Session as stored now (None: none, or no card payment)."""
    return db.session.execute(select(Payment.reference).where(
        Payment.order_id == order_id, Payment.provider == "stripe")).scalar()


def _close_late_session(order: Order, seen: str | None) -> None:
    """A session stored while staff closed the order's card checkout ("Pay now" at that
    moment) is closed too: it would be payable for a cancelled order, or a second payment of
    one paid by hand."""
    if order.payment_method != "stripe":
        return
    reference = _card_reference(order.id)
    if reference is None or reference == seen:
        return
    from . import stripe_provider

    try:
        stripe_provider.close_checkout(order)
    except (stripe.StripeError, stripe_provider.StripeUnavailable) as exc:
        # A payment that still arrives is refunded (stripe_provider._already_finished).
        log.warning("could not close the stripe session of order %s: %s", order.number, exc)


@dataclass(frozen=True)
class RefundFailure:
    """A refund that did not reach the customer and that staff have not settled yet."""

    what: str  # as the back office shows it: the amount, Stripe's reason, the refund's id
    at: datetime  # naive UTC: when the shop recorded the failure


def refund_failure(order: Order) -> RefundFailure | None:
    """The order's refund that failed after it was made and awaits staff (the back office's
    "Refund failed: action needed"), or None: none failed, or staff settled it. Its time is
    that of the history entry that recorded it (the payment's own time moves with any later
    change). Reads the order's payments and events, which its answers load anyway."""
    flagged = [p for p in order.payments if p.refund_failure]
    if not flagged:
        return None
    from .stripe_provider import REFUND_FAILED

    what = flagged[-1].refund_failure
    recorded = f"{REFUND_FAILED}: {what}"
    at = next((event.created_at for event in reversed(order.events)
               if (event.note or "").startswith(recorded)), flagged[-1].updated_at)
    return RefundFailure(what, at)


# The settle form's note: kept whole or refused (the back office cut it at 1000 characters).
SETTLE_NOTE_MAX = 1000


def settle_refund_failure(order_id: int, actor: Actor, note: str = "") -> Order:
    """Staff paid back another way a customer whose card refund failed: the order's "Refund
    failed: action needed" flag is cleared and the history says who settled it and how. The
    order's status and stock do not change. Raises ShopError when there is nothing to settle
    (a double click: the first one settled it), and ValidationError for a note the customer's
    order history cannot show as typed (too long, a control or direction character)."""
    if db.session.get(Order, order_id) is None:
        raise NotFound("That order does not exist.")
    note = (note or "").strip()
    orders.check_details(note, note_max=SETTLE_NOTE_MAX)
    text = "Refund failure settled" + (f": {note}" if note else "")

    def run() -> int:
        with write_transaction():
            status = db.session.execute(select(Order.status).where(Order.id == order_id)
                                        .with_for_update()).scalar_one()
            cleared = db.session.execute(
                update(Payment).where(Payment.order_id == order_id,
                                      Payment.refund_failure.is_not(None))
                .values(refund_failure=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount
            if cleared:
                db.session.add(OrderEvent(order_id=order_id, from_status=status,
                                          to_status=status, actor_id=actor.user_id,
                                          actor=actor.label, note=text))
            return cleared

    if not retrying(run):
        raise ShopError("This order has no failed refund to settle.", code="nothing_to_settle")
    db.session.expire_all()
    return db.session.get(Order, order_id)


def _close_card_checkout(order_id: int) -> Order | None:
    """Before staff mark a pending card order paid by hand or cancel it, close its Stripe
    Checkout Session, so the shopper cannot pay it as well (twice, or for a cancelled order).
    Returns the order when the shopper had paid it by card meanwhile (it is now paid)."""
    order = db.session.get(Order, order_id)
    if order is None or order.status != "pending" or order.payment_method != "stripe":
        return None
    from . import stripe_provider

    try:
        outcome = stripe_provider.close_checkout(order)
    except (stripe.StripeError, stripe_provider.StripeUnavailable) as exc:
        # Go ahead: a card payment that still arrives for an order cancelled or paid by
        # hand is refunded (stripe_provider._already_finished).
        log.warning("could not close the stripe session of order %s: %s", order.number, exc)
        return None
    if outcome in ("paid", "already_paid"):
        return db.session.get(Order, order_id)
    return None


def _notify(order: Order, status: str) -> None:
    """Email the customer, in the background, about the move to `status` just made: the job
    carries it (and a shipment's carrier and tracking number), since staff may move the order
    on before the worker sends the mail."""
    if status not in NOTIFY_STATUSES:
        return
    shipment = order.shipment if status == "shipped" else None
    if shipment is not None:
        jobs.enqueue(notifications.order_status_changed, order.id, status, shipment.carrier,
                     shipment.tracking_number)
    else:
        jobs.enqueue(notifications.order_status_changed, order.id, status)


def order_for_reference(provider: str, reference: str) -> Order | None:
    """The order a provider's payment reference (a Stripe session id) belongs to."""
    order_id = db.session.execute(select(Payment.order_id).where(
        Payment.provider == provider, Payment.reference == reference)).scalar()
    return db.session.get(Order, order_id) if order_id is not None else None
