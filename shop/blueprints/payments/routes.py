"""Payment provider endpoints: paying a pending Stripe order, the shopper's return from
Stripe's page, and Stripe's webhook."""
from __future__ import annotations

import logging
import re

from flask import Blueprint, abort, flash, jsonify, redirect, request, url_for

from ...extensions import csrf
from ...http import error_response, personal
from ...models import Order
from ...services import orders, payments
from ...services.payments import stripe_provider
from ..orders.access import order_for_visitor

bp = Blueprint("payments", __name__, url_prefix="/payments")
bp.after_request(personal)
log = logging.getLogger("shop.payments")
SESSION_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
RETURN_MESSAGES = {
    "paid": ("success", "Thank you! Your payment is confirmed."),
    "already_paid": ("success", "Thank you! Your payment is confirmed."),
    "unpaid": ("info", "Stripe has not confirmed your payment yet. This page will show it "
                       "once they do; there is no need to pay again."),
    "mismatch": ("error", "This payment did not match your order's total, so it has been "
                          "refunded to your card. Please contact us quoting your order "
                          "number."),
    "late": ("error", "This order was cancelled before your payment arrived, so the payment "
                      "has been refunded to your card."),
    "paid_elsewhere": ("error", "This order had already been paid another way, so this card "
                                "payment has been refunded to your card."),
    "refunded": ("info", "This order's payment has been refunded to your card."),
    "cancelled": ("error", "This order was cancelled because it was not paid in time. Its "
                           "items are back in the shop if you would like to order again."),
}
# Orders whose payment went through: the return page can say so without asking Stripe again.
PAID_STATUSES = ("paid", "processing", "shipped", "delivered")


def _order_page(order: Order, token: str | None = None):
    return redirect(url_for("orders.detail", number=order.number, token=token), 303)


@bp.get("/<number>/pay")
def pay(number: str):
    """Resume paying a pending Stripe order: back to its open Stripe page, or a new one. For
    the order's owner, staff, or whoever holds its signed link."""
    order, link = order_for_visitor(number)
    if order.status != "pending" or order.payment_method != "stripe":
        flash("This order has nothing left to pay.", "info")
        return _order_page(order, link)
    url, why = payments.pay_link(order)
    if url:
        return redirect(url, 303)
    order = orders.load(number)
    if order.status == "paid":
        flash(RETURN_MESSAGES["paid"][1], "success")
    elif why == "processing" and order.status == "pending":
        flash("Your payment is on its way: your bank is still processing it, which can take a "
              "few days. There is nothing more to pay; this page will show it once it "
              "clears.", "info")
    elif order.status == "cancelled":
        flash(RETURN_MESSAGES["cancelled"][1], "error")
    else:
        flash("We could not open the card payment page just now. Please try again in a "
              "moment.", "error")
    return _order_page(order, link)


@bp.get("/stripe/return")
def stripe_return():
    """Where Stripe sends the shopper back. The session is looked up at Stripe (the query
    string proves nothing) and finishes the payment through the same path as the webhook."""
    session_id = request.args.get("session_id", "")
    # Without Stripe keys there are no card payments to come back from (as the webhook: 404).
    if not stripe_provider.enabled() or not SESSION_ID.match(session_id):
        abort(404, description="That payment does not exist.")
    try:
        result = stripe_provider.finish_payment(session_id)
    except stripe_provider.StripeUnavailable:
        order = payments.order_for_reference("stripe", session_id)
        if order is None:
            abort(503, description="We could not reach the payment service. Please reload "
                                   "this page in a moment.")
        if order.status in PAID_STATUSES:  # the webhook finished it first
            flash(RETURN_MESSAGES["paid"][1], "success")
        else:
            flash("We could not confirm your payment with Stripe yet. This page will show it "
                  "once they do; there is no need to pay again.", "info")
        return _order_page(order, orders.guest_link_token(order))
    if result.order is None:
        abort(404, description="That payment does not exist.")
    outcome = result.outcome
    if outcome == "already_paid" and result.order.status == "refunded":
        outcome = "refunded"
    elif outcome == "unpaid" and result.order.status == "cancelled":
        # Its session expired (or a delayed payment failed): nothing is on its way.
        outcome = "cancelled"
    category, message = RETURN_MESSAGES[outcome]
    flash(message, category)
    return _order_page(result.order, orders.guest_link_token(result.order))


@bp.post("/stripe/webhook")
@csrf.exempt
def stripe_webhook():
    """Stripe's events, verified by signature. 400 when the signature fails (nothing
    changes); 200 for every verified event, including replays and events about unknown or
    closed orders (so Stripe stops sending them); 503 when Stripe cannot be reached to
    confirm a payment (Stripe retries later)."""
    if not stripe_provider.enabled():
        abort(404)
    try:
        event = stripe_provider.parse_event(request.get_data(),
                                            request.headers.get("Stripe-Signature"))
    except stripe_provider.WebhookRejected as exc:
        log.warning("stripe webhook refused: %s", exc)
        return error_response(400, str(exc), code="invalid_signature")
    try:
        outcome = stripe_provider.handle_event(event)
    except stripe_provider.StripeUnavailable as exc:
        log.warning("stripe webhook %s deferred: %s", event["id"], exc)
        return error_response(503, exc.message, code="unavailable")
    return jsonify({"received": True, "outcome": outcome})
