"""Rate-limit scopes shared by more than one entry point: a password tried on the login page or
on the API's token endpoint counts in the same buckets, and so does a registration."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app, g

from ..extensions import client_address, limiter
from ..services import limit_store

LOGIN_ADDRESS_SCOPE = "login-address"
LOGIN_ACCOUNT_SCOPE = "login-account"
# Flask-Limiter's scope for a plain `limiter.limit` on a view is its endpoint name.
REGISTER_SCOPE = "account.register"


def _configured(key: str) -> Callable[[], str]:
    """A limit read from the app's settings when a request is counted."""
    def limit() -> str:
        return current_app.config[key]

    return limit


def _marked(flag: str) -> Callable[[object], bool]:
    """A `deduct_when`: the request counts only when its view set `g.<flag>`."""
    def deduct(_response: object) -> bool:
        return bool(g.get(flag))

    return deduct


# Orders placed, on the checkout page and the API's POST /v1/orders. Only a placed order counts
# (a refusal, a sold-out item or a repeated submission answered with the first order does not):
# the views set g.order_placed from checkout.place's answer.
ORDERS_SCOPE = "orders-placed"
TOO_MANY_ORDERS = ("You have placed several orders in a short time. Please wait a while "
                   "before placing another, or contact us if you need more.")
orders_limit = _configured("RATELIMIT_ORDERS")


def limit_orders(**options: Any) -> Callable[[Callable], Callable]:
    """The orders limit on a view that places an order (`options` as for Flask-Limiter's
    shared_limit). Each request takes its place in the limit before the view runs, so orders
    sent at the same moment see each other (counted after placing, as a deduct_when does, all
    of them were checked against the orders placed before any: an audit placed 6 against a
    limit of 3). The place is given back when the request placed no order: the view did not
    set g.order_placed, failed, or was refused by the limit itself (its hit still counts)."""
    limit = limiter.shared_limit(orders_limit, scope=ORDERS_SCOPE, key_func=client_address,
                                 **options)

    def decorate(view: Callable) -> Callable:
        limited = limit(view)

        @functools.wraps(limited)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return limited(*args, **kwargs)
            finally:
                if not g.get("order_placed"):
                    _give_back_orders_place()

        return counted

    return decorate


def _give_back_orders_place() -> None:
    """This request's hits of the orders limit, given back. Done before the limiter's
    after-request hook, so its X-RateLimit-Remaining tells what is left afterwards."""
    for taken in limiter.current_limits:
        if taken.request_args[-1] != ORDERS_SCOPE:
            continue
        try:
            limit_store.give_back(limiter.limiter, taken.limit, *taken.request_args)
        except Exception:  # the answer stands; the place stays counted, the safe side
            current_app.logger.exception("could not give back a place in the orders limit")


# Coupon codes refused (unknown, expired, used up...), on the cart page and the API together.
# Only a refused code counts (guessing), not one applied: the views set g.coupon_refused.
COUPONS_SCOPE = "coupons-refused"
TOO_MANY_COUPONS = ("Too many coupon codes tried that did not work. Please wait a while and "
                    "try again, or check the code you were given.")
coupons_limit = _configured("RATELIMIT_COUPONS")
coupon_refused = _marked("coupon_refused")
