"""Checkout: details (email, address, shipping, payment), a review step, "Place order".
The details live in the signed session between the steps; the server re-prices at the end."""
from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from flask import (
    Blueprint,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from ...http import personal
from ...models import ADDRESS_FIELDS, utcnow
from ...services import addresses, checkout, orders, payments, pricing
from ...services import cart as cart_service
from ...services.countries import COUNTRIES
from ...services.errors import (
    CartChanged,
    CartEmpty,
    CouponInvalid,
    CouponUsedUp,
    OrderTooLarge,
    OutOfStock,
    ShopError,
    ValidationError,
)
from ..htmx import is_htmx, vary
from ..limits import TOO_MANY_ORDERS, limit_orders
from ..shopper import CHECKOUT_KEY, cart_owner

bp = Blueprint("checkout", __name__, url_prefix="/checkout")
bp.after_request(personal)
SESSION_KEY = CHECKOUT_KEY


def _details() -> dict:
    return dict(session.get(SESSION_KEY) or {})


def _form_context(details: dict, errors: dict[str, str] | None = None):
    owner = cart_owner()
    view = cart_service.view(owner, details.get("shipping_method", "standard"))
    saved = addresses.for_user(current_user.id) if current_user.is_authenticated else []
    errors = errors or {}
    # The form's fields: a customer orders with the account's email, which has none.
    fields = {*ADDRESS_FIELDS, "shipping_method", "payment_method"}
    if not current_user.is_authenticated:
        fields.add("email")
    return {"cart": view, "details": details, "errors": errors, "saved": saved,
            "error_links": _error_links(details, errors, fields),
            "unplaced": [message for name, message in errors.items() if name not in fields],
            "countries": COUNTRIES, "shipping_labels": pricing.SHIPPING_LABELS,
            "payment_methods": checkout.payment_methods(),
            "payment_labels": checkout.PAYMENT_LABELS, "rules": pricing.PricingRules.from_config()}


# The details form's fields in the order the form has them.
_FORM_ORDER = ("email", *ADDRESS_FIELDS, "shipping_method", "payment_method")


def _error_links(details: dict, errors: dict[str, str], fields: set[str]) -> list[tuple[str, str]]:
    """The messages of the form's fields, in the form's order, each with the id of the control
    it is beside (a choice's: the one chosen, else the first): the notice at the top lists them
    as links, so a shopper (a screen reader's too) goes from the list to the field to correct."""
    def target(name: str) -> str:
        if name == "shipping_method":
            return "ship-" + pricing.known_shipping_method(details.get("shipping_method"))
        if name == "payment_method":
            offered = checkout.payment_methods()
            chosen = details.get("payment_method")
            return "pay-" + (chosen if chosen in offered else offered[0])
        return name

    return [(target(name), errors[name]) for name in _FORM_ORDER
            if name in errors and name in fields]


@bp.get("")
def start():
    """The details form. The cart's Checkout link names the shipping estimate chosen there
    (?shipping=), and a method chosen on the form with htmx is the page's address
    (?shipping_method=): the form starts with that method, a method the shop lacks being
    standard. htmx asks for the order summary priced with the method chosen on the form."""
    if is_htmx():
        return _summary(request.args.get("shipping_method"))
    details = _details()
    chosen = request.args.get("shipping", request.args.get("shipping_method"))
    if chosen is not None:
        details["shipping_method"] = pricing.known_shipping_method(chosen)
    if current_user.is_authenticated:
        details.setdefault("email", current_user.email)
        default = next((a for a in addresses.for_user(current_user.id) if a.is_default), None)
        if default and not details.get("address"):
            # Chosen, not copied into the new address's fields (left empty for one).
            details["address"] = default.as_dict()
            details["saved_address_id"] = default.id
    context = _form_context(details)
    if context["cart"].is_empty:
        return _nothing_to_check_out()
    return render_template("checkout/details.html", **context)


def _summary(method: str | None):
    """htmx's answer to another shipping method chosen on the details form: the summary
    beside it priced with that method, and its shipping and total read out. Nothing is kept
    (the form sends the choice). A cart emptied meanwhile (another tab) has no summary: the
    cart is shown, as the page itself would redirect there."""
    method = pricing.known_shipping_method(method)
    view = cart_service.view(cart_owner(), method)
    if view.is_empty:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url_for("cart.show")
        return vary(response)
    return vary(make_response(render_template(
        "checkout/_summary_response.html", cart=view,
        shipping_label=pricing.SHIPPING_LABELS[method])))


@bp.post("")
def submit_details():
    """Check the details and show the review step."""
    form = request.form
    details: dict = {
        "email": (current_user.email if current_user.is_authenticated
                  else form.get("email", "")).strip(),
        "shipping_method": form.get("shipping_method", "standard"),
        "payment_method": form.get("payment_method", "manual"),
        "save_address": form.get("save_address") == "yes",
    }
    typed = {name: form.get(name, "") for name in ADDRESS_FIELDS}
    saved_id = form.get("saved_address_id", type=int) if current_user.is_authenticated else None
    if saved_id:
        try:
            saved = addresses.get_owned(current_user.id, saved_id).as_dict()
        except ShopError:
            saved_id = None
        else:
            # An address typed with a saved one still chosen (no script switches the choice
            # when the shopper types) is the one the shopper means: the order uses it.
            if addresses.typed_other(typed, saved):
                saved_id = None
            else:
                details["address"] = saved
                details["saved_address_id"] = saved_id
    if not saved_id:
        details["address"] = typed
    try:
        # The review shows the address the order is placed for and mailed to.
        details["email"], _, _ = checkout.validate(_request(details))
    except ValidationError as exc:
        return _refused(details, exc.errors)
    details["token"] = secrets.token_urlsafe(16)
    session[SESSION_KEY] = details
    if is_htmx():
        # The review is a page of its own: htmx loads it as one.
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url_for("checkout.review")
        return vary(response)
    return redirect(url_for("checkout.review"), 303)


def _refused(details: dict, errors: dict[str, str], *, whole: bool = False):
    """The details form again (422), each message beside its field, with the details as
    sent: typed, or kept in the session for "Place order". For htmx a fragment (200: htmx
    swaps no error status): the form, or for "Place order" (`whole`, from the review page,
    which has no such form) the details step's content, put in the page's main."""
    if details.get("saved_address_id") and errors.keys() & set(ADDRESS_FIELDS):
        # A saved address the rules refuse: offered for correcting as a new one (chosen
        # again, it would be refused again).
        details = {**details, "saved_address_id": None}
    context = _form_context(details, errors)
    if not is_htmx():
        return vary(make_response(render_template("checkout/details.html", **context), 422))
    response = make_response(render_template("checkout/_refused.html", whole=whole, **context))
    if whole:
        response.headers.update({"HX-Retarget": "#main", "HX-Reswap": "innerHTML show:top",
                                 "HX-Push-Url": url_for("checkout.start")})
    return vary(response)


def _request(details: dict, expected_total: Decimal | None = None,
             expected_cart: str | None = None) -> checkout.CheckoutRequest:
    return checkout.CheckoutRequest(
        email=details.get("email", ""), shipping_address=details.get("address") or {},
        shipping_method=details.get("shipping_method", "standard"),
        payment_method=details.get("payment_method", "manual"), expected_total=expected_total,
        expected_cart=expected_cart,
        idempotency_key=f"web:{details['token']}" if details.get("token") else None)


@bp.get("/review")
def review():
    """Everything the order will be, with the total the shopper confirms."""
    details = _details()
    if not details.get("token"):
        return redirect(url_for("checkout.start"), 303)
    shipping_method = details.get("shipping_method", "standard")
    view = cart_service.view(cart_owner(), shipping_method, email=details.get("email"))
    if view.is_empty:
        return _nothing_to_check_out()
    page = render_template("checkout/review.html", cart=view, details=details,
                           cart_url=_cart_url(details),
                           countries=COUNTRIES, shipping_labels=pricing.SHIPPING_LABELS,
                           payment_labels=checkout.PAYMENT_LABELS,
                           reviewed_cart=checkout.cart_fingerprint(
                               view.lines, view.coupon_code, shipping_method))
    cart_service.mark_prices_seen(view)  # the review tells the changes: once
    return page


@bp.post("/place")
@limit_orders(error_message=TOO_MANY_ORDERS)
def place():
    """Place the order. A second click or a retry finds the first order."""
    details = _details()
    token = request.form.get("token", "")
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    if not details.get("token") or not secrets.compare_digest(token.encode(),
                                                              str(details["token"]).encode()):
        existing = _order_for_token(token)
        if existing is not None:
            return _to_order(existing)
        if cart_service.view(cart_owner()).is_empty:
            # Not expired: nothing is left to order (placed from another tab, most likely).
            return _nothing_to_check_out()
        flash("Your checkout session expired. Please review your order again.", "error")
        return redirect(url_for("checkout.start"), 303)
    try:
        expected = Decimal(request.form.get("expected_total", ""))
    except InvalidOperation:
        expected = None
    if expected is not None and not expected.is_finite():
        expected = None  # "NaN", "Infinity": no amount ("sNaN" even fails a comparison)
    # The cart as reviewed (a fingerprint): absent, as from a page older than it, the total
    # alone is compared.
    reviewed_cart = request.form.get("reviewed_cart") or None
    try:
        placement = checkout.place(cart_owner(), _request(details, expected, reviewed_cart))
    except CartChanged as exc:
        flash(exc.message, "error")
        return redirect(url_for("checkout.review"), 303)
    except OutOfStock:
        # The cart says which line and why (sold out, fewer left, no longer sold), beside
        # it and in its summary: the notice says only that an order was stopped, in words
        # true for every reason, so nothing is read out three times or contradicted.
        flash("Your order was not placed: something in your cart can no longer be ordered "
              "as it is. Please check your cart below.", "error")
        return redirect(_cart_url(details), 303)
    except (CartEmpty, CouponInvalid, CouponUsedUp, OrderTooLarge) as exc:
        flash(exc.message, "error")
        return redirect(_cart_url(details), 303)
    except ValidationError as exc:
        # A detail the rules now refuse (card payment since switched off, an address that
        # no longer passes): the details form, the message beside the field.
        return _refused(details, exc.errors, whole=True)
    g.order_placed = placement.new  # keeps its place in the orders limit (limits.py)
    order = placement.order
    # Saved with the order this request placed: a repeated "Place order" saves nothing again.
    if placement.new and details.get("save_address") and current_user.is_authenticated \
            and not details.get("saved_address_id"):
        try:
            addresses.save(current_user.id, details["address"])
        except ShopError:
            pass  # the order is placed; a saved address is a convenience
    session.pop(SESSION_KEY, None)
    session.setdefault("recent_orders", [])
    session["recent_orders"] = ([order.number] + session["recent_orders"])[:5]
    return _to_order(order)


def _cart_url(details: dict) -> str:
    """The cart, its shipping estimate the method chosen here (standard is its own): its
    Checkout link hands the estimate on, and would otherwise start again with Standard."""
    method = pricing.known_shipping_method(details.get("shipping_method"))
    return url_for("cart.show", shipping=None if method == "standard" else method)


# An order this browser placed this recently explains an empty cart at a checkout step.
JUST_PLACED = timedelta(minutes=30)


def _nothing_to_check_out():
    """A checkout step reached with an empty cart: to the cart, "Your cart is empty.". When
    this browser placed an order a moment ago (in another tab, whose review or details form
    is then sent), that is why: its page, saying so. "Place order" in the other tab said "Your
    checkout session expired. Please review your order again." and then that the cart was
    empty, and the shopper could not tell whether the order had been placed."""
    from ...extensions import db
    from ...models import Order

    numbers = session.get("recent_orders") or []
    order = (db.session.query(Order).filter_by(number=str(numbers[0])).first()
             if numbers else None)
    if order is None or utcnow() - order.created_at > JUST_PLACED:
        flash("Your cart is empty.", "info")
        return redirect(url_for("cart.show"), 303)
    flash(f"Your order {order.number} has been placed, so your cart is empty now.", "info")
    return redirect(url_for("orders.detail", number=order.number,
                            token=orders.guest_link_token(order)), 303)


def _order_for_token(token: str):
    from ...extensions import db
    from ...models import Order

    if not token:
        return None
    return db.session.query(Order).filter_by(idempotency_key=f"web:{token}").first()


def _to_order(order):
    """After placing: pay on Stripe's page, or see the confirmation (which says so when
    Stripe's page could not be opened: its "Pay now" tries again)."""
    if order.payment_method == "stripe" and order.status == "pending":
        url, why = payments.pay_link(order)
        if url:
            return redirect(url, 303)
        if why == "unavailable":
            flash("Your order is placed, but we could not open the card payment page just "
                  "now. Please use \"Pay now\" on this page to try again in a moment.", "error")
    return redirect(url_for("orders.detail", number=order.number,
                            token=orders.guest_link_token(order)), 303)
