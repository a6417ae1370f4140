"""Messages to shoppers and staff. Each function is a job: it takes ids and loads what it needs."""
from __future__ import annotations

from flask import current_app, render_template
from sqlalchemy import select

from ..extensions import db
from ..models import Order, User, Variant
from . import links, mail, orders, reports

# Why the shop itself cancelled an order, as the customer's mail says it (None: staff did).
UNPAID = "unpaid"  # not paid by its deadline, or its Stripe page expired unpaid
PAYMENT_FAILED = "payment_failed"  # a delayed payment (a bank debit) failed


def _order_url(order: Order) -> str | None:
    """The order's signed link (on SHOP_BASE_URL when it is set: services.links); None when
    the shop's address is unknown (the mail then quotes the order number instead)."""
    return links.public_url_or_none("orders.detail", number=order.number,
                                    token=orders.guest_link_token(order))


def _recipient(order: Order) -> str:
    """Where mail about an order goes: for an account's order, the account's email as it is
    now (a customer who moved their account to a new address hears there, and the old
    mailbox, perhaps no longer theirs, gets no more links to the order); for a guest's, the
    email they gave."""
    if order.user_id is not None:
        email = db.session.execute(select(User.email).where(User.id == order.user_id)).scalar()
        if email:
            return email
    return order.email


def order_confirmation(order_id: int) -> None:
    """The "thank you, here is your order" email, text and HTML."""
    order = db.session.get(Order, order_id)
    if order is None:
        return
    context = {"order": order, "url": _order_url(order), "shop": current_app.config["SHOP_NAME"]}
    mail.send(_recipient(order), f"Your order {order.number}",
              render_template("mail/order_confirmation.txt", **context),
              render_template("mail/order_confirmation.html", **context))


def order_status_changed(order_id: int, status: str | None = None, carrier: str | None = None,
                         tracking_number: str | None = None, reason: str | None = None) -> None:
    """Tell the customer their order moved (paid, shipped, delivered, cancelled, refunded).

    `status` (with the carrier and tracking number of a move to shipped) is the move that
    queued the mail: by the time the worker sends it, staff may have moved the order on, and
    reading the order's status then told two "Shipped" mails and no "Paid" one. A job queued
    with the order id alone (before this was passed) tells the order's status as it runs.
    `reason` says why the shop cancelled an order (UNPAID, PAYMENT_FAILED); a cancellation
    without one was staff's, and the mail gives no reason it cannot know."""
    order = db.session.get(Order, order_id)
    if order is None:
        return
    status = status or order.status
    if status == "shipped" and not (carrier and tracking_number) and order.shipment:
        carrier, tracking_number = order.shipment.carrier, order.shipment.tracking_number
    # A card order that staff marked paid by hand has no card payment to refund to.
    paid_by_card = any(p.provider == "stripe" and p.provider_payment_id for p in order.payments)
    context = {"order": order, "url": _order_url(order), "shop": current_app.config["SHOP_NAME"],
               "status": status, "status_label": orders.STATUS_LABELS.get(status, status),
               "carrier": carrier, "tracking_number": tracking_number,
               "paid_by_card": paid_by_card, "reason": reason}
    mail.send(_recipient(order), f"Order {order.number}: {context['status_label']}",
              render_template("mail/order_status.txt", **context),
              render_template("mail/order_status.html", **context))


def partial_refund(order_id: int, refunded_minor: int, currency: str) -> None:
    """Tell the customer part of their card payment was refunded (the running total refunded
    so far, in the currency's minor units as Stripe reports it); the order keeps its status."""
    from .money import from_minor_units

    order = db.session.get(Order, order_id)
    if order is None:
        return
    context = {"order": order, "url": _order_url(order), "shop": current_app.config["SHOP_NAME"],
               "refunded": from_minor_units(refunded_minor, currency), "currency": currency}
    mail.send(_recipient(order), f"Order {order.number}: part of your payment refunded",
              render_template("mail/partial_refund.txt", **context),
              render_template("mail/partial_refund.html", **context))


def unneeded_payment_refunded(order_id: int, why: str) -> None:
    """Tell the customer a card payment that paid nothing was refunded in full: it came after
    the order was cancelled (`why` "late"), or after it had been paid another way
    ("paid_elsewhere"). The order keeps its status."""
    order = db.session.get(Order, order_id)
    if order is None:
        return
    context = {"order": order, "url": _order_url(order), "shop": current_app.config["SHOP_NAME"],
               "why": why}
    mail.send(_recipient(order), f"Order {order.number}: your card payment has been refunded",
              render_template("mail/payment_refunded.txt", **context),
              render_template("mail/payment_refunded.html", **context))


def refund_failed(order_id: int, what: str) -> None:
    """Tell staff a refund did not reach the customer (Stripe failed it after accepting it):
    they must pay the customer back another way. `what` says which refund and why."""
    order = db.session.get(Order, order_id)
    if order is None:
        return
    status = orders.STATUS_LABELS.get(order.status, order.status)
    admin_url = (links.public_url_or_none("order.details_view", id=order.id)
                 or f"the back office's Orders, order {order.number}")
    mail.send(current_app.config["STAFF_ALERT_EMAIL"],
              f"Refund failed: order {order.number} needs action",
              f"A refund for order {order.number} ({status}, customer {_recipient(order)}) did not "
              f"reach the customer: {what}.\n\n"
              "The money is back in the shop's Stripe balance and the customer has not been "
              "paid back. Contact them and refund them another way (a bank transfer, a "
              "voucher), then press \"Mark refund settled\" on the order's page:\n"
              f"{admin_url}\n")


def low_stock_alert(variant_ids: list[int]) -> None:
    """Tell staff which variants are low on stock (reports.low_stock_condition)."""
    variants = list(db.session.execute(
        select(Variant).where(Variant.id.in_(variant_ids),
                              reports.low_stock_condition())).scalars())
    if not variants:
        return
    # A product without options is named alone, as the shop's pages name it ("Default" is the
    # label of no option).
    lines = [f"- {v.sku} ({v.product.name}{' ' + v.label if v.options else ''}): "
             f"{v.stock_quantity} left" for v in variants]
    mail.send(current_app.config["STAFF_ALERT_EMAIL"], f"Low stock: {len(variants)} item(s)",
              "These items are running low:\n\n" + "\n".join(lines) + "\n")
