"""The cart page and its actions. Every action is a real form post (303 back to the cart);
with htmx the same endpoint answers with the changed fragments and out-of-band updates."""
from __future__ import annotations

import re

from flask import Blueprint, flash, g, make_response, redirect, render_template, request, url_for

from ...extensions import client_address, limiter
from ...http import personal
from ...services import cart as cart_service
from ...services import pricing
from ...services.errors import LineLimit, OutOfStock, ShopError
from .. import ID
from ..catalog.routes import product_page
from ..htmx import is_htmx, safe_next, vary
from ..limits import COUPONS_SCOPE, TOO_MANY_COUPONS, coupon_refused, coupons_limit
from ..shopper import cart_owner, given_shipping_method

bp = Blueprint("cart", __name__, url_prefix="/cart")
bp.after_request(personal)
# The cart's own estimate: its forms' addresses name another (cart/_line.html, _coupon.html).
bp.add_app_template_global(given_shipping_method)


def _shipping_method() -> str:
    """The shipping estimate chosen: the page's address says it, and every cart form sends it
    (with htmx the select itself, hx-include; without, the action's query string), so an
    action answers with the totals the shopper is looking at. Without one, the cart's own:
    the method given on the checkout's details, else standard."""
    chosen = request.values.get("shipping")
    return given_shipping_method() if chosen is None else pricing.known_shipping_method(chosen)


def _cart_url() -> str:
    """The cart page, with the shipping estimate chosen (its own needs no word)."""
    method = _shipping_method()
    return url_for("cart.show", shipping=None if method == given_shipping_method() else method)


def _cart_view():
    return cart_service.view(cart_owner(), _shipping_method())


@bp.get("")
def show():
    """The cart: lines, quantities, coupon, totals and a shipping estimate. htmx asks for the
    totals of another shipping estimate: the totals and what they now say, to announce."""
    if is_htmx():
        method = _shipping_method()
        return vary(make_response(render_template(
            "cart/_estimate_response.html", cart=_cart_view(), shipping_method=method,
            shipping_label=pricing.SHIPPING_LABELS[method])))
    return _cart_page(200)


def _fragments(view, announcement: str, *, line=None, line_id: int | None = None,
               coupon_error: str | None = None, line_error: str | None = None,
               typed_quantity: str | None = None, coupon_form: bool = False):
    """The htmx answer: the changed line (or nothing when removed), totals, count, message.
    A line change can take the subtotal under the coupon's minimum: the message says so, as
    the coupon box (sent out of band) does. A refused line shows `typed_quantity` (what the
    shopper typed) in its field, as the page without JavaScript does."""
    if not coupon_form and view.coupon_code and view.coupon_message:
        announcement = (f"{announcement} Coupon {view.coupon_code} cannot be used. "
                        f"{view.coupon_message}")
    page = render_template("cart/_response.html", cart=view, line=line, line_id=line_id,
                           announcement=announcement, coupon_error=coupon_error,
                           line_error=line_error, coupon_form=coupon_form,
                           typed_quantities=({line_id: typed_quantity}
                                             if typed_quantity is not None else None),
                           shipping_method=_shipping_method(), cart_count=view.item_count)
    cart_service.mark_prices_seen(view)  # the notice is in the answer (cart/_problems.html)
    return page


@bp.post("/add")
def add():
    """Add a variant to the cart (from a product page or a card)."""
    owner = cart_owner(create=True)
    variant_id = request.form.get("variant_id", type=int)
    quantity = request.form.get("quantity", "1")
    # The product page's form names its product; a card's has no field to show a message by.
    product_slug = request.form.get("product", "")
    back = safe_next(request.referrer and _path(request.referrer), url_for("cart.show"))
    try:
        line = cart_service.add_item(owner, quantity, variant_id=variant_id)
    except ShopError as exc:
        message = _message(exc)
        field = _field(exc)
        if is_htmx():
            # On the product page: the message by its field, the other field's message (from
            # an earlier try) cleared. A card has no field: its message shows as a notice
            # over the page (toasts).
            return render_template("cart/_add_error.html", message=message, field=field,
                                   from_product_page=bool(product_slug),
                                   quantity=_shown_number(quantity, "1"))
        if product_slug and field:
            # Without JavaScript: the product page again, the message by its field, the
            # option and the quantity as chosen.
            return vary(product_page(product_slug, variant_id, 422,
                                     add_errors={field: message},
                                     add_form={"quantity": _shown_number(quantity, "1")}))
        flash(message, "error")
        return redirect(back, 303)
    label = line.label
    text = f"Added {line.name}{'' if label == 'Default' else ' (' + label + ')'} to your cart."
    if is_htmx():
        # On the product page, the fields' messages from a refused try before are cleared.
        return render_template("cart/_added.html", announcement=text,
                               cart_count=cart_service.item_count(owner),
                               from_product_page=bool(product_slug),
                               quantity=_shown_number(quantity, "1"))
    flash(text, "success")
    return redirect(url_for("cart.show"), 303)


@bp.post(f"/lines/<{ID}:line_id>/update")
def update_line(line_id: int):
    """Change a line's quantity (0 removes it)."""
    owner = cart_owner()
    # Only a quantity of 0 removes the line: only then is its name read before it goes
    # (a cart's pricing more for each change otherwise).
    name = _line_name(line_id) if _is_zero(request.form.get("quantity")) else None
    try:
        line = cart_service.update_line(owner, line_id, request.form.get("quantity"),
                                        allow_zero=True)
    except ShopError as exc:
        return _line_failed(exc, line_id)
    view = _cart_view()
    if line is None:
        return _done(view, _removed(name), line_id=line_id)
    line_view = next((item for item in view.lines if item.id == line_id), None)
    return _done(view, f"Quantity of {line_view.full_name if line_view else 'item'} "
                       f"updated to {line.quantity}.", line=line_view, line_id=line_id)


@bp.post(f"/lines/<{ID}:line_id>/remove")
def remove_line(line_id: int):
    """Remove a line."""
    owner = cart_owner()
    name = _line_name(line_id)
    try:
        cart_service.remove_line(owner, line_id)
    except ShopError as exc:
        return _line_failed(exc, line_id)
    return _done(_cart_view(), _removed(name), line_id=line_id)


def _is_zero(quantity: str | None) -> bool:
    try:
        return int((quantity or "").strip()) == 0
    except ValueError:
        return False


def _line_name(line_id: int) -> str | None:
    """The name of the shopper's line (product and option), read before it goes."""
    return next((item.full_name for item in _cart_view().lines if item.id == line_id), None)


def _removed(name: str | None) -> str:
    """What a removal says: which line went, as "Quantity of ... updated" names it ("Item
    removed" left a shopper with several lines, and a screen reader, guessing which)."""
    return f"Removed {name} from your cart." if name else "Item removed from your cart."


@bp.post("/coupon")
@limiter.shared_limit(coupons_limit, scope=COUPONS_SCOPE, key_func=client_address,
                      deduct_when=coupon_refused, error_message=TOO_MANY_COUPONS)
def apply_coupon():
    """Apply a coupon code."""
    owner = cart_owner(create=True)
    code = request.form.get("code", "")
    try:
        applied = cart_service.apply_coupon(owner, code)
    except ShopError as exc:
        g.coupon_refused = True
        message = _message(exc)
        if is_htmx():
            return _fragments(_cart_view(), message, coupon_error=message, coupon_form=True)
        # Without JavaScript: the cart page again, the message under the field, the code kept.
        return _cart_page(422, coupon_error=message, coupon_code_typed=code.strip()[:40])
    return _done(_cart_view(), f"Coupon {applied} applied.", coupon_form=True)


@bp.post("/coupon/remove")
def remove_coupon():
    """Remove the coupon."""
    cart_service.remove_coupon(cart_owner())
    return _done(_cart_view(), "Coupon removed.", coupon_form=True)


def _done(view, text: str, **parts):
    if is_htmx():
        return _fragments(view, text, **parts)
    flash(text, "success")
    return redirect(_cart_url(), 303)


def _line_failed(exc: ShopError, line_id: int):
    message = _message(exc)
    view = _cart_view()
    line_view = next((item for item in view.lines if item.id == line_id), None)
    # The line's quantity field keeps what was typed (or its saved quantity, for text a
    # number field cannot show), beside the message about it: with htmx as without, or the
    # shopper reads "Only 2 left" under the quantity they had before and cannot see or
    # correct what they typed. Nothing was saved.
    typed = (_shown_number(request.form.get("quantity"), str(line_view.quantity))
             if line_view is not None else None)
    if is_htmx():
        return _fragments(view, message, line=line_view, line_id=line_id, line_error=message,
                          typed_quantity=typed)
    if line_view is None:  # no such line (any more): nothing to put the message beside
        flash(message, "error")
        return redirect(_cart_url(), 303)
    # Without JavaScript: the cart page again, the message under the line's quantity.
    return _cart_page(422, view, line_errors={line_id: message},
                      typed_quantities={line_id: typed})


def _cart_page(status: int, view=None, **context):
    """The cart page, answering a form the cart refused (status 422)."""
    view = view or _cart_view()
    page = render_template("cart/show.html", cart=view, shipping_method=_shipping_method(),
                           shipping_labels=pricing.SHIPPING_LABELS, **context)
    cart_service.mark_prices_seen(view)  # the page tells the changes: once
    return vary(make_response(page, status))


# A number as HTML writes one (a browser's number field sends nothing else), of a length a
# quantity field can hold.
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_NUMBER_LENGTH = 20


def _shown_number(typed: str | None, fallback: str) -> str:
    """What a refused number field shows again: what was typed, when a number field can show
    it (a number, or nothing); else (text only a script sends, which browsers would blank
    and which is invalid HTML there) `fallback`, the field's value before."""
    if typed is None:
        return fallback
    if typed == "" or (len(typed) <= _NUMBER_LENGTH and _NUMBER.fullmatch(typed)):
        return typed
    return fallback


def _field(exc: ShopError) -> str | None:
    """The add form's field a refusal belongs to: the quantity (a bad number, not enough
    stock, more than a line holds) or the option chosen (none); None for an option that is
    gone."""
    from ...services.errors import ValidationError

    if isinstance(exc, ValidationError):
        return next((name for name in ("quantity", "variant_id") if name in exc.errors), None)
    return "quantity" if isinstance(exc, OutOfStock | LineLimit) else None


def _message(exc: ShopError) -> str:
    from ...services.errors import ValidationError

    if isinstance(exc, ValidationError) and exc.errors:
        return " ".join(exc.errors.values())
    return exc.message


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.host:
        return ""
    return parts.path + (f"?{parts.query}" if parts.query else "")
