"""Stripe Checkout: the shop redirects to Stripe's hosted page and back; no card data reaches
the shop.

One Checkout Session per order at a time (its id is `Payment.reference`). The shopper's return
page and Stripe's webhook both end in `finish_payment`, which asks Stripe for the session (the
browser is never trusted) and moves the order to `paid` through the state machine, whose
conditional UPDATE lets exactly one caller through.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import stripe
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import Order, OrderEvent, Payment, ProviderEvent, utcnow
from ...models.base import is_id
from .. import jobs, links, metrics, notifications, orders
from ..database import retrying, write_transaction
from ..errors import InvalidTransition, PaymentError
from ..money import format_money, from_minor_units, to_minor_units
from ..orders import Actor

log = logging.getLogger("shop.payments.stripe")
PROVIDER = "stripe"
ACTOR = Actor(label="stripe")
# Stripe refuses a Checkout Session listing more line items than this (payment mode).
MAX_LINE_ITEMS = 100
# Stripe refuses a Checkout Session that expires sooner than 30 minutes or later than 24 hours.
SESSION_MIN = timedelta(minutes=31)
SESSION_MAX = timedelta(hours=23, minutes=55)
# A scheduled expiry runs a little after the deadline, never before it.
EXPIRY_GRACE = timedelta(seconds=5)
FINISH_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
# A Refund changed after it was made. Stripe reports a failure with one, two or all three of
# them (refund.failed on newer API versions), each carrying the Refund.
REFUND_EVENTS = ("refund.failed", "refund.updated", "charge.refund.updated")
# Refund statuses that mean the money did not reach the customer.
UNDONE_REFUNDS = ("failed", "canceled")
# Stripe's Refund.failure_reason, as staff and the customer read it.
REFUND_FAILURE_REASONS = {
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "expired_or_canceled_card": "the card has expired or was closed",
    "charge_for_pending_refund_disputed": "the customer disputed the payment meanwhile",
    "insufficient_funds": "the Stripe balance could not cover it",
    "declined": "the card's bank declined it",
    "merchant_request": "it was cancelled on Stripe",
}
REFUND_FAILED = "Refund failed"


class WebhookRejected(Exception):
    """A webhook whose signature is missing, wrong or stale, or whose body is not an event."""


class StripeUnavailable(PaymentError):
    """Stripe could not be reached or failed; nothing was changed, try again later."""


@dataclass(frozen=True)
class FinishResult:
    """What `finish_payment` found: `paid` (this call marked it paid), `already_paid`,
    `unpaid` (Stripe has not confirmed yet), `mismatch` (amount or currency differ),
    `late` (paid after the order was cancelled: refunded), `paid_elsewhere` (paid after the
    order had been paid another way, e.g. by hand: refunded), `unknown` (no such order)."""

    outcome: str
    order: Order | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("paid", "already_paid")


def enabled() -> bool:
    """Stripe is on when its secret key is configured."""
    return bool(current_app.config.get("STRIPE_SECRET_KEY"))


def client() -> stripe.StripeClient:
    """A StripeClient for the configured key, pointed at STRIPE_API_BASE when set (one per app
    and key; the client is safe to share between threads)."""
    cfg = current_app.config
    key = cfg.get("STRIPE_SECRET_KEY")
    if not key:
        raise PaymentError("Card payments are not configured.")
    base = cfg.get("STRIPE_API_BASE")
    cache = current_app.extensions.setdefault("shop_stripe", {})
    if (key, base) not in cache:
        cache[(key, base)] = stripe.StripeClient(
            key, base_addresses={"api": base} if base else None, max_network_retries=2,
            http_client=stripe.RequestsClient(timeout=cfg.get("STRIPE_TIMEOUT_SECONDS", 20)))
    return cache[(key, base)]


def payment_timeout() -> timedelta:
    """How long a Stripe order may stay unpaid (UNPAID_ORDER_TIMEOUT_MINUTES)."""
    return timedelta(minutes=current_app.config["UNPAID_ORDER_TIMEOUT_MINUTES"])


def deadline(order: Order) -> datetime:
    """When an unpaid Stripe order gives its stock back (naive UTC)."""
    return order.created_at + payment_timeout()


def _epoch(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


def _session_expiry(order: Order, now: datetime) -> int:
    """The session's `expires_at`: the order's deadline when Stripe allows it, so a retried
    create sends the same parameters (Stripe rejects an idempotency key reused with others);
    otherwise the earliest time Stripe accepts, rounded up to 5 minutes."""
    due = deadline(order)
    if now + SESSION_MIN <= due <= now + SESSION_MAX:
        return _epoch(due)
    if due > now + SESSION_MAX:
        return int(_epoch(now + SESSION_MAX) // 300 * 300)
    return int(math.ceil(_epoch(now + SESSION_MIN) / 300) * 300)


def stripe_payment(order_id: int) -> Payment | None:
    """The order's latest Stripe payment row."""
    return db.session.execute(
        select(Payment).where(Payment.order_id == order_id, Payment.provider == PROVIDER)
        .order_by(Payment.id.desc()).limit(1)).scalar_one_or_none()


def line_items(order: Order) -> list[dict[str, Any]]:
    """What the shopper sees on Stripe's page, in minor units. Itemised when the lines,
    shipping and tax add up to the total exactly and Stripe can list them all; one line for
    the total otherwise (a discount, more than MAX_LINE_ITEMS), so the amount charged is
    always `order.total`."""
    currency = order.currency.lower()
    total = to_minor_units(order.total, order.currency)

    def item(name: str, amount: int, quantity: int = 1) -> dict[str, Any]:
        return {"quantity": quantity,
                "price_data": {"currency": currency, "unit_amount": amount,
                               "product_data": {"name": name[:250]}}}

    items = []
    for line in order.lines:
        options = " / ".join(str(v) for v in (line.options or {}).values())
        items.append(item(f"{line.name} ({options})" if options else line.name,
                          to_minor_units(line.unit_price, order.currency), line.quantity))
    if order.shipping > 0:
        items.append(item(f"Shipping ({order.shipping_method})",
                          to_minor_units(order.shipping, order.currency)))
    if order.tax > 0:
        items.append(item("Tax", to_minor_units(order.tax, order.currency)))
    itemised = sum(i["price_data"]["unit_amount"] * i["quantity"] for i in items)
    if items and itemised == total and order.discount == 0 and len(items) <= MAX_LINE_ITEMS:
        return items
    return [item(f"Order {order.number}", total)]


def checkout_url(order: Order) -> str | None:
    """Where the shopper pays this pending order: the open session's page, reused, or a new
    session. None when there is nothing to pay or Stripe cannot be reached (logged and
    counted; the order page offers "Pay now" again)."""
    return pay_link(order)[0]


def pay_link(order: Order) -> tuple[str | None, str | None]:
    """checkout_url, and why there is none: "processing" (the shopper completed the session
    with a payment method that takes days, a bank debit: nothing to pay, Stripe tells its
    end), "unavailable" (Stripe cannot be reached), or None (nothing to pay, or the order
    was just finished or cancelled: its status says which)."""
    if order.status != "pending" or order.payment_method != PROVIDER or not enabled():
        return None, None
    payment = stripe_payment(order.id)
    if payment is None:
        return None, None
    try:
        if payment.reference:
            return _resume(order, payment)
        _schedule_expiry(order)
        return _create_session(order, payment), None
    except (stripe.StripeError, StripeUnavailable) as exc:
        metrics.payment_failed(PROVIDER)
        log.error("stripe checkout for order %s failed: %s", order.number, exc)
        return None, "unavailable"


def _resume(order: Order, payment: Payment) -> tuple[str | None, str | None]:
    """The stored session: still open (reuse it), completed (finish it: paid, or a delayed
    payment still processing; paid with an amount that did not match, which was refunded:
    open another), expired before the order's deadline (Stripe ends sessions after 24
    hours: open another), or expired (cancel)."""
    session = client().v1.checkout.sessions.retrieve(payment.reference)
    if session.status == "open":
        return session.url, None
    if session.status == "complete":
        outcome = finish_payment(session.id).outcome
        if outcome == "mismatch":
            # That money went back and the order still waits for a payment that matches it.
            return _create_session(order, payment, replacing=session.id), None
        return None, "processing" if outcome == "unpaid" else None
    if _ended_before_deadline(order, session.expires_at):
        return _create_session(order, payment, replacing=session.id), None
    session_expired(session.id)
    return None, None


def _ended_before_deadline(order: Order, expires_at: Any) -> bool:
    """A session Stripe closed at its 24-hour maximum while the order may wait longer
    (UNPAID_ORDER_TIMEOUT_MINUTES above a day): the order is not given up yet."""
    due = deadline(order)
    return (order.status == "pending" and isinstance(expires_at, int)
            and expires_at < _epoch(due) and due > utcnow())


def _create_session(order: Order, payment: Payment, replacing: str | None = None) -> str | None:
    """A new session for the order, stored as its payment's reference in place of `replacing`
    (None: the order has none yet)."""
    now = utcnow()
    if deadline(order) <= now:
        from .expiry import expire_order

        expire_order(order.id)
        return None
    expires_at = _session_expiry(order, now)
    metadata = {"order_number": order.number, "order_id": str(order.id)}
    # On SHOP_BASE_URL when it is set, not on the Host header of the request (services.links).
    success = links.public_url("payments.stripe_return") + "?session_id={CHECKOUT_SESSION_ID}"
    cancel = links.public_url("orders.detail", number=order.number,
                              token=orders.guest_link_token(order))
    session = client().v1.checkout.sessions.create(
        params={"mode": "payment", "line_items": line_items(order), "metadata": metadata,
                "payment_intent_data": {"metadata": metadata},
                "client_reference_id": order.number, "customer_email": order.email,
                "success_url": success, "cancel_url": cancel, "expires_at": expires_at},
        # A replacement is another request than the first session's, whatever its expiry.
        options={"idempotency_key": f"order-{order.id}-checkout-{expires_at}"
                 + (f"-after-{replacing}" if replacing else "")})

    def store() -> int:
        with write_transaction():
            # The order's row lock: staff cancelling it (or marking it paid) at this moment
            # either went first (then this session is not kept: it would be payable for a
            # cancelled order) or finds this session to close (payments.change_status).
            status = db.session.execute(select(Order.status).where(Order.id == order.id)
                                        .with_for_update()).scalar()
            if status != "pending":
                return -1
            return db.session.execute(
                update(Payment).where(Payment.id == payment.id,
                                      Payment.reference.is_(None) if replacing is None
                                      else Payment.reference == replacing)
                .values(reference=session.id, checkout_url=session.url, updated_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount

    stored_rows = retrying(store)
    if stored_rows == -1:
        _expire_quietly(session.id)
        return None
    if stored_rows == 1:
        log.info("stripe session %s for order %s", session.id, order.number)
        return session.url
    # A simultaneous request stored its session first: keep that one, retire ours.
    stored = db.session.execute(select(Payment.reference, Payment.checkout_url)
                                .where(Payment.id == payment.id)).one()
    if stored.reference != session.id:
        _expire_quietly(session.id)
    return stored.checkout_url


def _expire_quietly(session_id: str) -> None:
    try:
        client().v1.checkout.sessions.expire(session_id)
    except stripe.StripeError as exc:
        log.warning("could not expire stripe session %s: %s", session_id, exc)


def _schedule_expiry(order: Order) -> None:
    """Give the stock back if the order is still unpaid at its deadline (the worker runs it;
    without Redis, `flask --app wsgi expire-orders` from cron does)."""
    from .expiry import expire_order

    delay = max(deadline(order) - utcnow(), timedelta(0)) + EXPIRY_GRACE
    jobs.enqueue(expire_order, order.id, delay=delay)


# What close_checkout found when the shopper had completed the session: the order is paid, or
# a delayed payment method (a bank debit) is still processing and Stripe will tell its end.
SETTLED_OUTCOMES = ("paid", "already_paid", "unpaid")


def close_checkout(order: Order) -> str:
    """Make a pending order's Checkout Session unpayable before the shop gives up on the card
    payment: an open session is expired at Stripe. Returns "closed" when it can no longer be
    paid (or there is none); for a session the shopper completed meanwhile, what
    `finish_payment` made of it: "paid" or "already_paid", "unpaid" (a delayed payment method
    is still processing: Stripe sends `async_payment_succeeded` or `async_payment_failed`
    when it ends), "mismatch". Raises stripe.StripeError or StripeUnavailable when Stripe
    cannot be reached."""
    payment = stripe_payment(order.id)
    if payment is None or not payment.reference or not enabled():
        return "closed"
    sessions = client().v1.checkout.sessions
    session = sessions.retrieve(payment.reference)
    if session.status == "open":
        try:
            session = sessions.expire(payment.reference)
        except stripe.InvalidRequestError:
            # Completed (or expired) between the two calls: look again.
            session = sessions.retrieve(payment.reference)
    if session.status == "complete":
        return finish_payment(payment.reference).outcome
    return "closed"


def _plain(obj: Any) -> dict[str, Any]:
    """A Stripe object as a plain dict (StripeObject is not a dict)."""
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)


def _find(session: dict[str, Any]) -> tuple[Order | None, Payment | None]:
    """The order and payment a session belongs to: by the stored session id, else by the
    order id in its metadata."""
    payment = db.session.execute(select(Payment).where(
        Payment.provider == PROVIDER, Payment.reference == session["id"])).scalar_one_or_none()
    if payment is not None:
        return db.session.get(Order, payment.order_id), payment
    order = _order_named(session.get("metadata"))
    if order is None:
        return None, None
    return order, stripe_payment(order.id)


def _order_named(metadata: Any) -> Order | None:
    """The card order a Stripe object's metadata names by both its id and its number, as the
    shop writes them. Webhooks cover the whole Stripe account: another tool on it, or another
    shop (a staging copy), may name an order_id of its own, and the shop refunded such a
    foreign payment (a "mismatch") or marked its own unrelated order paid by it."""
    metadata = metadata if isinstance(metadata, dict) else {}
    raw = str(metadata.get("order_id", ""))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and is_id(int(raw))):
        return None
    order = db.session.get(Order, int(raw))
    if order is None or order.payment_method != PROVIDER or \
            metadata.get("order_number") != order.number:
        return None
    return order


def _intent_id(session: dict[str, Any]) -> str | None:
    intent = session.get("payment_intent")
    if intent is None or isinstance(intent, str):
        return intent
    return intent.get("id")


def finish_payment(session_or_id: str | Any) -> FinishResult:
    """Finish a Checkout Session's payment, whoever asks first (the shopper's return page or
    the webhook) and however often: the session is fetched from Stripe, its amount checked
    against the order, and the order moved to `paid` once. Raises StripeUnavailable when
    Stripe cannot be reached (nothing changed; the caller retries)."""
    session_id = session_or_id if isinstance(session_or_id, str) else session_or_id["id"]
    try:
        session = _plain(client().v1.checkout.sessions.retrieve(session_id))
    except stripe.InvalidRequestError:
        log.warning("stripe knows no session %s", session_id)
        return FinishResult("unknown")
    except stripe.StripeError as exc:
        raise StripeUnavailable("We could not reach Stripe to confirm the payment.") from exc
    order, payment = _find(session)
    if order is None or payment is None:
        log.warning("stripe session %s belongs to no order here", session_id)
        return FinishResult("unknown")
    if session.get("payment_status") != "paid":
        return FinishResult("unpaid", order)
    expected = to_minor_units(order.total, order.currency)
    if session.get("amount_total") != expected or \
            (session.get("currency") or "").upper() != order.currency.upper():
        log.error("stripe session %s charged %s %s, order %s is %s %s: refunding it",
                  session_id, session.get("amount_total"), session.get("currency"),
                  order.number, expected, order.currency)
        if _refund_mismatch(order, _intent_id(session), session):
            metrics.payment_failed(PROVIDER)  # once a payment, however often it is reported
        return FinishResult("mismatch", db.session.get(Order, order.id))
    intent = _intent_id(session)

    def run() -> None:
        with write_transaction():
            values: dict[str, Any] = {"provider_payment_id": intent, "updated_at": utcnow()}
            if payment.reference is None:
                values["reference"] = session_id
            db.session.execute(update(Payment).where(Payment.id == payment.id)
                               .values(**values).execution_options(synchronize_session=False))
            orders.apply_transition(order.id, "paid", ACTOR,
                                    f"Paid by card (Stripe payment {intent})")

    try:
        retrying(run)
    except InvalidTransition:
        return _already_finished(order.id, payment.id, session_id, intent)
    log.info("order %s paid through stripe session %s", order.number, session_id)
    jobs.enqueue(notifications.order_status_changed, order.id, "paid")
    return FinishResult("paid", db.session.get(Order, order.id))


def _already_finished(order_id: int, payment_id: int, session_id: str,
                      intent: str | None) -> FinishResult:
    """The order had already moved on. Paid through this same payment: nothing to do. Paid by
    another payment (staff marked it paid by hand, say while Stripe could not be reached to
    close the session), or cancelled before the money arrived: give this money back."""
    db.session.rollback()
    order = db.session.get(Order, order_id)
    payment = db.session.get(Payment, payment_id)
    # A card payment always records its PaymentIntent with the `paid` transition, so an order
    # that moved on without one was paid some other way: this money pays nothing.
    if order.status != "cancelled" and (intent is None or payment.provider_payment_id == intent):
        return FinishResult("already_paid", db.session.get(Order, order_id))
    log.error("stripe session %s paid order %s which is %s: refunding %s", session_id,
              order.number, order.status, intent)
    cancelled = order.status == "cancelled"
    first = True  # counted once per payment, however often it is reported
    if intent:
        refunded = _give_back(order, intent, "late", "paid after the order was closed")
        first = (_record_late_refund(order.id, payment_id, intent, refunded) if cancelled
                 else _record_second_payment(order.id, intent, refunded))
        if first:
            # The shopper was charged: the cancellation mail had said they were not, and the
            # return page, which says it, is not seen by one who closed Stripe's page.
            jobs.enqueue(notifications.unneeded_payment_refunded, order.id,
                         "late" if cancelled else "paid_elsewhere")
    if first:
        metrics.payment_failed(PROVIDER)
    return FinishResult("late" if cancelled else "paid_elsewhere",
                        db.session.get(Order, order_id))


def _record_second_payment(order_id: int, intent: str, refunded: str) -> bool:
    """A card payment for an order already paid another way went back: the order's history
    says so for the shopper and staff, once however often the payment is reported (True the
    first time). The order's own payment and status stay as they are."""
    return _note_once(order_id, f"Card payment {intent} received after the order had been "
                                f"paid another way; refunded in full ({refunded})")


def _note_once(order_id: int, note: str) -> bool:
    """Add `note` to the order's history unless it is there already (a payment reported
    again); True when it was added. The order's status does not change."""

    def run() -> bool:
        with write_transaction():
            status = db.session.execute(select(Order.status).where(Order.id == order_id)
                                        .with_for_update()).scalar_one()
            seen = db.session.execute(select(OrderEvent.id).where(
                OrderEvent.order_id == order_id, OrderEvent.note == note)).first()
            if seen is None:
                db.session.add(OrderEvent(order_id=order_id, from_status=status,
                                          to_status=status, actor=ACTOR.label, note=note))
            return seen is None

    return retrying(run)


def _give_back(order: Order, intent: str, kind: str, reason: str) -> str:
    """Refund a payment in full that does not pay the order (`kind`: why, in the idempotency
    key, so however often it is reported Stripe makes one refund). Returns which refund, for
    the order's history: "Stripe refund re_...", or that it had been refunded on Stripe
    already (on the Dashboard, before the shop heard of the payment). Raises
    StripeUnavailable when Stripe cannot be reached."""
    try:
        refund = client().v1.refunds.create(
            params={"payment_intent": intent,
                    "metadata": {"order_number": order.number, "order_id": str(order.id),
                                 "reason": reason}},
            options={"idempotency_key": f"order-{order.id}-{kind}-{intent}"})
    except stripe.InvalidRequestError as exc:
        if exc.code != "charge_already_refunded":
            raise StripeUnavailable("We could not give that payment back yet.") from exc
        # Retrying would never succeed: the money is back already.
        log.warning("stripe payment %s of order %s was refunded already", intent, order.number)
        return "already refunded on Stripe"
    except stripe.StripeError as exc:
        raise StripeUnavailable("We could not give that payment back yet.") from exc
    return f"Stripe refund {refund.id}"


def _refund_mismatch(order: Order, intent: str | None, session: dict[str, Any]) -> bool:
    """A session paid with another amount or currency than its order's: the money does not
    pay the order, so it goes back at once (the shopper is not left charged while the order
    waits and then expires), and the order's history says so, once, however often the
    session is reported. The order stays pending: it can still be paid, or it expires.
    Raises StripeUnavailable when Stripe cannot be reached (the webhook then answers 503 and
    Stripe delivers it again). True the first time this payment is reported (without a
    PaymentIntent there is nothing to refund or to tell apart: True)."""
    if not intent:
        return True
    refunded = _give_back(order, intent, "mismatch", "amount or currency did not match the order")
    paid = session.get("amount_total")
    currency = str(session.get("currency") or order.currency).upper()
    amount = (format_money(from_minor_units(paid, currency), currency)
              if isinstance(paid, int) and not isinstance(paid, bool) else "an amount")
    return _note_once(order.id, f"Card payment of {amount} did not match the order's total of "
                                f"{format_money(order.total, order.currency)}; refunded in full "
                                f"({refunded})")


def _record_late_refund(order_id: int, payment_id: int, intent: str, refunded: str) -> bool:
    """A cancelled order's payment that came late and went back: the payment shows as
    refunded (the API's payment_status) with its PaymentIntent, and the order's history says
    so for the shopper and staff. Once, however often the payment is reported (True the
    first time)."""

    def run() -> bool:
        with write_transaction():
            changed = db.session.execute(
                update(Payment).where(Payment.id == payment_id,
                                      Payment.provider_payment_id.is_(None))
                .values(provider_payment_id=intent, status="refunded", updated_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount
            if changed == 1:
                db.session.add(OrderEvent(
                    order_id=order_id, from_status="cancelled", to_status="cancelled",
                    actor=ACTOR.label,
                    note=f"Card payment received after the order was cancelled; refunded in "
                         f"full ({refunded})"))
            return changed == 1

    return retrying(run)


def session_expired(session_id: str, *, failed: bool = False, expires_at: Any = None) -> str:
    """A session ended unpaid (`failed`: its delayed payment, a bank debit, failed): cancel its
    order (releasing stock) if that session is still the order's payment and the order is
    still pending, and tell the customer why; anything else is an old or out-of-order event
    and changes nothing. A session that expired at its `expires_at` before the order's
    deadline (Stripe keeps one open for 24 hours at most; the timeout may be longer) leaves
    the order waiting: "Pay now" opens another."""
    payment = db.session.execute(select(Payment).where(
        Payment.provider == PROVIDER, Payment.reference == session_id)).scalar_one_or_none()
    if payment is None:
        log.warning("expired stripe session %s belongs to no order here", session_id)
        return "unknown"
    order = db.session.get(Order, payment.order_id)
    if order is not None and _ended_before_deadline(order, expires_at):
        log.info("stripe session %s of order %s ended before the order's payment deadline",
                 session_id, order.number)
        return "ignored"
    try:
        orders.transition(payment.order_id, "cancelled", ACTOR,
                          "Card payment failed" if failed
                          else "Card payment not completed in time (Stripe session expired)")
    except InvalidTransition:
        return "ignored"
    jobs.enqueue(notifications.order_status_changed, payment.order_id, "cancelled", None, None,
                 notifications.PAYMENT_FAILED if failed else notifications.UNPAID)
    return "cancelled"


def parse_event(payload: bytes, signature: str | None) -> Any:
    """Verify a webhook with STRIPE_WEBHOOK_SECRET (Stripe's t=...,v1=HMAC-SHA256 scheme,
    5 minutes' tolerance) and return the event; raise WebhookRejected otherwise."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        log.error("stripe webhook received but STRIPE_WEBHOOK_SECRET is not set")
        raise WebhookRejected("Webhook signing secret is not configured.")
    if not signature:
        raise WebhookRejected("Missing Stripe-Signature header.")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected("Invalid signature.") from exc
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
        # Not JSON (RecursionError: nested too deeply for json.loads), or JSON that is not an
        # object (the library fails building an event).
        raise WebhookRejected("The body is not a Stripe event.") from exc
    fields = _plain(event)
    if not all(isinstance(fields.get(name), str) and fields[name] for name in ("id", "type")):
        raise WebhookRejected("The body is not a Stripe event.")
    return event


def _seen(event_id: str) -> bool:
    return db.session.execute(select(ProviderEvent.id).where(
        ProviderEvent.provider == PROVIDER, ProviderEvent.event_id == event_id)).first() is not None


def _remember(event_id: str, event_type: str) -> bool:
    """Record the event as processed; False when a simultaneous delivery recorded it first."""
    try:
        with write_transaction():
            db.session.add(ProviderEvent(provider=PROVIDER, event_id=event_id[:255],
                                         type=event_type[:80]))
        return True
    except IntegrityError:
        return False


def handle_event(event: Any) -> str:
    """Act on a verified event once. Its effects are idempotent, and the event id is recorded
    only after they are done, so a delivery that failed half way is retried by Stripe, and a
    replay of a finished one changes nothing. Unknown orders and out-of-order events answer
    with an outcome, not an error, so Stripe does not retry them forever."""
    event_id, event_type = event["id"], event["type"]
    if _seen(event_id):
        return "duplicate"
    try:
        obj = event["data"]["object"]
        object_id = obj["id"]
    except (KeyError, TypeError):
        obj, object_id = None, None
    if not object_id or not isinstance(object_id, str):  # Stripe's ids are text
        outcome = "ignored"
    elif event_type in FINISH_EVENTS:
        outcome = finish_payment(object_id).outcome
    elif event_type == "checkout.session.expired":
        outcome = session_expired(object_id, expires_at=_plain(obj).get("expires_at"))
    elif event_type == "checkout.session.async_payment_failed":
        metrics.payment_failed(PROVIDER)
        outcome = session_expired(object_id, failed=True)
    elif event_type == "charge.refunded":
        outcome = charge_refunded(_plain(obj))
    elif event_type in REFUND_EVENTS:
        outcome = refund_failed(_plain(obj))
    else:
        outcome = "ignored"
    _remember(event_id, event_type)
    log.info("stripe event %s (%s): %s", event_id, event_type, outcome)
    return outcome


def refund(order: Order, actor: Actor, note: str = "") -> Order:
    """Refund the card payment in full on Stripe (one refund per order, whatever the retries),
    then move the order to `refunded`, which gives its stock back once. A payment Stripe
    reports already refunded in full (on the Dashboard, its charge.refunded not delivered) is
    refunded: the order moves to `refunded` the same way; when that charge.refunded moved it
    first, this request refunded nothing and is refused (InvalidTransition), as a refund of
    a refunded order is. An order paid otherwise (staff marked it paid) gets a recorded
    refund."""
    if "refunded" not in orders.allowed(order.status):
        raise InvalidTransition(
            f"This order is {orders.STATUS_LABELS[order.status].lower()}; it cannot be refunded.",
            details={"from": order.status, "to": "refunded",
                     "allowed": list(orders.allowed(order.status))})
    payment = stripe_payment(order.id)
    intent = payment.provider_payment_id if payment is not None else None
    if not intent:
        return _refunded(orders.transition(order.id, "refunded", actor,
                                           note or "Refund recorded (no card payment on file)"))
    try:
        result = client().v1.refunds.create(
            params={"payment_intent": intent, "reason": "requested_by_customer",
                    "metadata": {"order_number": order.number, "order_id": str(order.id)}},
            options={"idempotency_key": f"order-{order.id}-refund"})
    except stripe.InvalidRequestError as exc:
        if exc.code != "charge_already_refunded":
            raise _refund_refused(order, exc) from exc
        # Refunded in full outside the shop (the Dashboard) and its charge.refunded not
        # delivered: the money is back, and asking again can never succeed (the same
        # idempotency key replays this answer). The order is refunded now.
        log.warning("stripe payment %s of order %s was refunded already", intent, order.number)
        result = None
    except stripe.StripeError as exc:
        raise _refund_refused(order, exc) from exc
    if result is not None and result.status in ("failed", "canceled"):
        metrics.payment_failed(PROVIDER)
        raise PaymentError(f"Stripe refused the refund ({result.status}). Nothing was changed.")
    text = (f"Stripe refund {result.id}" if result is not None
            else f"card payment {intent} already refunded in full on Stripe")
    try:
        changed = orders.transition(order.id, "refunded", actor,
                                    f"{note} ({text})" if note else text)
    except InvalidTransition:
        db.session.rollback()
        current = db.session.get(Order, order.id)
        if current is None or current.status != "refunded":
            raise
        by = db.session.execute(
            select(OrderEvent.actor_id, OrderEvent.actor).where(
                OrderEvent.order_id == order.id, OrderEvent.to_status == "refunded")
            .order_by(OrderEvent.id.desc()).limit(1)).first()
        by_webhook = by is not None and by.actor_id is None and by.actor == ACTOR.label
        if by_webhook and result is not None:
            # Stripe's charge.refunded for this very refund was faster: the webhook has
            # already moved the order to refunded (and mailed the customer). This request's
            # refund is done.
            log.info("order %s was refunded by stripe's webhook first (%s)", order.number, text)
            return current
        # Refunded by someone else at the same moment, and this request refunded nothing:
        # another request (a double click, two staff; Stripe made one refund, one idempotency
        # key per order), or a refund on Stripe's Dashboard whose charge.refunded came first
        # (Stripe answered charge_already_refunded to this one). Refused as a refund of a
        # refunded order is: the caller must not read that it refunded, nor audit it.
        who = "on Stripe" if by_webhook else f"by {by.actor if by else 'someone else'}"
        raise InvalidTransition(
            f"This order has just been refunded {who}; it cannot be refunded again.",
            details={"from": "refunded", "to": "refunded",
                     "allowed": list(orders.allowed("refunded"))}) from None
    return _refunded(changed)


def _refund_refused(order: Order, exc: stripe.StripeError) -> PaymentError:
    """Stripe refused or could not take the refund: counted, logged, and said to staff."""
    metrics.payment_failed(PROVIDER)
    log.error("stripe refund for order %s failed: %s", order.number, exc)
    why = (exc.user_message or "").strip().rstrip(".") or "payment service unavailable"
    return PaymentError(f"Stripe did not accept the refund: {why}. "
                        "Nothing was changed; please try again.")


def _refunded(order: Order) -> Order:
    """Tell the customer their order was refunded, in the background."""
    jobs.enqueue(notifications.order_status_changed, order.id, "refunded")
    return order


def _payment_for_intent(intent: str) -> Payment | None:
    """The Stripe payment that recorded this PaymentIntent when it was paid."""
    return db.session.execute(
        select(Payment).where(Payment.provider == PROVIDER,
                              Payment.provider_payment_id == intent)
        .order_by(Payment.id.desc()).limit(1)).scalar_one_or_none()


def _payment_paid_by(intent: str | None) -> Payment | None:
    """The Stripe payment this PaymentIntent paid. A refund can be reported before the shop
    has recorded the payment (its checkout.session.completed is still on its way, or was
    lost, and the shopper never came back): Stripe is then asked which Checkout Session the
    PaymentIntent paid, and a session of one of the shop's orders is finished first, through
    `finish_payment` as if its completed event had come. None for a PaymentIntent that pays
    none of the shop's orders. Raises StripeUnavailable when Stripe cannot be reached (the
    webhook answers 503 and Stripe delivers the event again)."""
    if not intent:
        return None
    payment = _payment_for_intent(intent)
    if payment is not None or not enabled():
        return payment
    try:
        found = client().v1.checkout.sessions.list(params={"payment_intent": intent,
                                                           "limit": 1})
    except stripe.StripeError as exc:
        raise StripeUnavailable("We could not ask Stripe about that payment.") from exc
    if not found.data:
        return None
    session = _plain(found.data[0])
    if _find(session)[0] is None:
        return None
    log.warning("stripe reported payment %s of session %s before its completion: finishing "
                "it first", intent, session["id"])
    finish_payment(session["id"])
    db.session.rollback()  # see what finish_payment committed
    return _payment_for_intent(intent)


def _minor_amount(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def charge_refunded(charge: dict[str, Any]) -> str:
    """A card payment refunded on Stripe: from the back office (already recorded here) or
    outside the shop (the Dashboard, the API). Stripe sends the Charge with the running total
    `amount_refunded`. Refunded in full: the order moves to `refunded` through the state
    machine, which releases its stock once, and the customer is mailed, as for a refund from
    the back office. In part: the amount goes into the order's history and the customer is
    mailed the amount refunded so far; the status stays. A PaymentIntent the shop has not
    recorded yet has its payment finished first (`_payment_paid_by`).
    Outcomes: `refunded`, `already_refunded` (the order is; nothing to do), `partial`,
    `recorded` (refunded in full, but the order's status cannot become refunded: history and
    payment only, for staff), `already_recorded` (that refund is in the history already),
    `unknown` (no payment here has that PaymentIntent), `ignored` (no refunded amount)."""
    charge_id = charge.get("id")
    intent = _intent_id(charge)
    payment = _payment_paid_by(intent)
    if payment is None:
        log.warning("refunded stripe charge %s (payment %s) belongs to no order here",
                    charge_id, intent)
        return "unknown"
    amount = _minor_amount(charge.get("amount"))
    refunded = _minor_amount(charge.get("amount_refunded"))
    if amount is None or not refunded:
        log.warning("stripe charge %s reports no refunded amount", charge_id)
        return "ignored"
    currency = str(charge.get("currency") or payment.currency).upper()
    full = charge.get("refunded") is True or refunded >= amount
    total = from_minor_units(refunded, currency)
    money = format_money(total, currency)
    if full:
        note = f"Card payment refunded in full on Stripe: {money} (Stripe charge {charge_id})"
    else:
        note = (f"Card payment partly refunded on Stripe: {money} of "
                f"{format_money(from_minor_units(amount, currency), currency)} so far "
                f"(Stripe charge {charge_id}); the order's status is unchanged")
    for _ in range(3):
        order = db.session.get(Order, payment.order_id)
        if order is None or order.status == "refunded":
            return "already_refunded"
        if not full or "refunded" not in orders.allowed(order.status):
            break
        try:
            _refunded(orders.transition(order.id, "refunded", ACTOR, note))
        except InvalidTransition:
            db.session.rollback()  # moved meanwhile (a refund from the back office): look again
            continue
        log.info("order %s refunded in full on stripe (charge %s)", order.number, charge_id)
        return "refunded"
    outcome = _record_refund(payment.order_id, payment.id, note, total, full=full)
    if outcome == "partial":
        # Once for each higher running total (the same total again, or an older smaller one
        # delivered late, is "already_recorded").
        jobs.enqueue(notifications.partial_refund, payment.order_id, refunded, currency)
    return outcome


def _record_refund(order_id: int, payment_id: int, note: str, total: Decimal, *,
                   full: bool) -> str:
    """A refund the order's status does not change: a partial one, or a full one for an order
    the state machine cannot refund (pending, cancelled). It goes into the order's history
    once, however often Stripe reports it; a full one also shows on the payment. `total` is
    the running total refunded the report carries: one at or below the highest recorded
    for the payment is an older report that came late (Stripe's events come in any order),
    and is not recorded, so the total told never goes down."""

    def run() -> str:
        with write_transaction():
            # The order's row lock serialises two deliveries of the same refund.
            status = db.session.execute(select(Order.status).where(Order.id == order_id)
                                        .with_for_update()).scalar_one()
            if full:
                changed = db.session.execute(
                    update(Payment).where(Payment.id == payment_id,
                                          Payment.status != "refunded")
                    .values(status="refunded", refunded_amount=total, updated_at=utcnow())
                    .execution_options(synchronize_session=False)).rowcount
                if changed != 1:
                    return "already_recorded"
            else:
                paid = db.session.execute(select(Payment.status, Payment.refunded_amount)
                                          .where(Payment.id == payment_id)).one()
                if paid.status == "refunded" or total <= paid.refunded_amount:
                    return "already_recorded"
                db.session.execute(update(Payment).where(Payment.id == payment_id)
                                   .values(refunded_amount=total, updated_at=utcnow())
                                   .execution_options(synchronize_session=False))
            db.session.add(OrderEvent(order_id=order_id, from_status=status, to_status=status,
                                      actor=ACTOR.label, note=note[:2000]))
            return "recorded" if full else "partial"

    outcome = retrying(run)
    if outcome == "recorded":
        order = db.session.get(Order, order_id)
        log.warning("stripe refunded order %s in full, which stays %s: recorded for staff",
                    order.number, order.status)
    return outcome


def refund_failed(refund: dict[str, Any]) -> str:
    """A refund that did not reach the customer after Stripe had accepted it (`failed`: the
    card was closed, lost...; or `canceled`): the money is back in the shop's Stripe balance.
    Whichever refund it was (staff's, the automatic one of a late or mismatched payment, one
    made on the Dashboard), the order keeps its status and its stock (the goods were given
    up; only the money is missing), and the failure is recorded for staff: in the order's
    history, as the payment's `refund_failure` (the admin shows "Refund failed: action
    needed" until staff settle it), in a mail to staff, and as a payment failure in the
    metrics. Once per refund, however often and through whichever event Stripe reports it.
    Outcomes: `refund_failed`, `already_recorded`, `unknown` (no order here), `ignored` (the
    refund did not fail)."""
    refund_id = refund.get("id")
    if refund.get("status") not in UNDONE_REFUNDS or not isinstance(refund_id, str):
        return "ignored"
    intent = _intent_id(refund)
    # A refund the shop made names its order; only a refund of a payment the shop has not
    # recorded at all makes it ask Stripe (and finish that payment first).
    payment = ((_payment_for_intent(intent) if intent else None)
               or _payment_from_metadata(refund) or _payment_paid_by(intent))
    if payment is None:
        log.warning("failed stripe refund %s (payment %s) belongs to no order here",
                    refund_id, intent)
        return "unknown"
    amount = _minor_amount(refund.get("amount"))
    currency = str(refund.get("currency") or payment.currency).upper()
    money = (format_money(from_minor_units(amount, currency), currency)
             if amount is not None else "The refund")
    code = refund.get("failure_reason")
    why = REFUND_FAILURE_REASONS.get(code) if isinstance(code, str) else None
    why = why or (f"Stripe's reason: {code}" if isinstance(code, str) and code
                  else "Stripe gave no reason")
    what = f"{money} could not be returned to the card ({why}; Stripe refund {refund_id})"
    note = f"{REFUND_FAILED}: {what}. The customer will be refunded another way."
    # A failed refund of this payment no longer counts in Stripe's running total refunded.
    undone = (from_minor_units(amount, currency)
              if amount is not None and intent and intent == payment.provider_payment_id
              else Decimal("0"))
    outcome = _record_refund_failure(payment.order_id, payment.id, refund_id, note, what,
                                     undone)
    if outcome == "refund_failed":
        metrics.payment_failed(PROVIDER)
        log.error("stripe refund %s of order %s failed (%s): staff must refund it another way",
                  refund_id, payment.order_id, code)
        jobs.enqueue(notifications.refund_failed, payment.order_id, what)
    return outcome


def _payment_from_metadata(refund: dict[str, Any]) -> Payment | None:
    """The payment of the order a refund the shop made names in its metadata: the automatic
    refund of a payment that did not match its order has a PaymentIntent the shop never
    recorded. The order's number must match too."""
    order = _order_named(refund.get("metadata"))
    return stripe_payment(order.id) if order is not None else None


def _record_refund_failure(order_id: int, payment_id: int, refund_id: str, note: str,
                           what: str, undone: Decimal) -> str:
    """Record a failed refund once: the history entry (found again by the refund's id) and
    the payment's flag for staff. `undone` comes off the payment's recorded running total
    refunded, as Stripe takes it off the Charge's: a later, smaller total is then told."""

    def run() -> str:
        with write_transaction():
            # The order's row lock serialises two deliveries of the same failure.
            status = db.session.execute(select(Order.status).where(Order.id == order_id)
                                        .with_for_update()).scalar_one()
            seen = db.session.execute(select(OrderEvent.id).where(
                OrderEvent.order_id == order_id,
                OrderEvent.note.startswith(REFUND_FAILED, autoescape=True),
                OrderEvent.note.contains(f"Stripe refund {refund_id})", autoescape=True))
            ).first()
            if seen is not None:
                return "already_recorded"
            refunded = db.session.execute(select(Payment.refunded_amount)
                                          .where(Payment.id == payment_id)).scalar_one()
            db.session.execute(update(Payment).where(Payment.id == payment_id)
                               .values(refund_failure=what[:500],
                                       refunded_amount=max(refunded - undone, Decimal("0")),
                                       updated_at=utcnow())
                               .execution_options(synchronize_session=False))
            db.session.add(OrderEvent(order_id=order_id, from_status=status, to_status=status,
                                      actor=ACTOR.label, note=note[:2000]))
            return "refund_failed"

    return retrying(run)
