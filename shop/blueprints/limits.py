"""Rate-limit scopes shared by more than one entry point: a password tried on the login page or
on the API's token endpoint counts in the same buckets, and so does a registration."""
from __future__ import annotations

from collections.abc import Callable

LOGIN_ADDRESS_SCOPE = "login-address"
LOGIN_ACCOUNT_SCOPE = "login-account"
# Flask-Limiter's scope for a plain `limiter.limit` on a view is its endpoint name.
REGISTER_SCOPE = "account.register"


def _configured(key: str) -> Callable[[], str]:
    """A limit read from the app's settings when a request is counted."""
    def limit() -> str:
        from flask import current_app

        return current_app.config[key]

    return limit


def _marked(flag: str) -> Callable[[object], bool]:
    """A `deduct_when`: the request counts only when its view set `g.<flag>`."""
    def deduct(_response: object) -> bool:
        from flask import g

        return bool(g.get(flag))

    return deduct


# Orders placed, on the checkout page and the API's POST /v1/orders. Only a placed order counts
# (a refusal, a sold-out item or a repeated submission answered with the first order does not):
# the views set g.order_placed from checkout.place's answer.
ORDERS_SCOPE = "orders-placed"
TOO_MANY_ORDERS = ("You have placed several orders in a short time. Please wait a while "
                   "before placing another, or contact us if you need more.")
orders_limit = _configured("RATELIMIT_ORDERS")
order_placed = _marked("order_placed")

# Coupon codes refused (unknown, expired, used up...), on the cart page and the API together.
# Only a refused code counts (guessing), not one applied: the views set g.coupon_refused.
COUPONS_SCOPE = "coupons-refused"
TOO_MANY_COUPONS = ("Too many coupon codes tried that did not work. Please wait a while and "
                    "try again, or check the code you were given.")
coupons_limit = _configured("RATELIMIT_COUPONS")
coupon_refused = _marked("coupon_refused")
