"""Who is shopping: the logged-in customer, or the guest named by the signed session cookie."""
from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app, session
from flask_login import current_user

from ..services import pricing
from ..services.cart import CartOwner

GUEST_CART_KEY = "cart_token"
CHECKOUT_KEY = "checkout"  # the checkout's details, as given on its form (checkout/routes.py)


def cart_owner(create: bool = False) -> CartOwner:
    """The current shopper's cart owner; a guest gets a token when `create` (first add)."""
    if current_user.is_authenticated:
        return CartOwner(user_id=current_user.id)
    token = session.get(GUEST_CART_KEY)
    if token is None and create:
        token = session[GUEST_CART_KEY] = derived_guest_token() or CartOwner.new_guest_token()
    return CartOwner(token=token)


def guest_token() -> str | None:
    """The guest cart this session names, or would name once it adds (a first add sent in
    another tab at this moment, whose cookie this request has not seen): what a login merges
    into the account's cart."""
    return session.get(GUEST_CART_KEY) or derived_guest_token()


def derived_guest_token() -> str | None:
    """A new guest's cart token, derived from the session's CSRF secret (every form post,
    htmx's too, carries that session): the first adds a new guest sends at once (two quick
    clicks on the listing) name the same cart. Each made a cart of its own before, the last
    answer's cookie won, and an item the shop had said it added was gone. The secret is new
    after a login or logout (the session is cleared), and so is the cart then. None for a
    session without a secret."""
    field = current_app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"
    secret = session.get(field)
    if not isinstance(secret, str) or not secret:
        return None
    key = current_app.config["SECRET_KEY"]
    key = key.encode() if isinstance(key, str) else key
    digest = hmac.new(key, b"guest-cart:" + secret.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def current_user_id() -> int | None:
    return current_user.id if current_user.is_authenticated else None


def given_shipping_method() -> str:
    """The shipping method given on the checkout's details form (kept with them in the
    session), else standard: the cart's own estimate, so a shopper who goes back to the cart
    by the header's link and on to the checkout keeps the method given."""
    details = session.get(CHECKOUT_KEY) or {}
    return pricing.known_shipping_method(details.get("shipping_method"))
