"""Who is shopping: the logged-in customer, or the guest named by the signed session cookie."""
from __future__ import annotations

from flask import session
from flask_login import current_user

from ..services.cart import CartOwner

GUEST_CART_KEY = "cart_token"


def cart_owner(create: bool = False) -> CartOwner:
    """The current shopper's cart owner; a guest gets a token when `create` (first add)."""
    if current_user.is_authenticated:
        return CartOwner(user_id=current_user.id)
    token = session.get(GUEST_CART_KEY)
    if token is None and create:
        token = CartOwner.new_guest_token()
        session[GUEST_CART_KEY] = token
    return CartOwner(token=token)


def current_user_id() -> int | None:
    return current_user.id if current_user.is_authenticated else None
