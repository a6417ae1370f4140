"""Rate-limit scopes shared by more than one entry point: a password tried on the login page or
on the API's token endpoint counts in the same buckets, and so does a registration."""

LOGIN_ADDRESS_SCOPE = "login-address"
LOGIN_ACCOUNT_SCOPE = "login-account"
# Flask-Limiter's scope for a plain `limiter.limit` on a view is its endpoint name.
REGISTER_SCOPE = "account.register"
# Orders placed, on the checkout page and the API's POST /v1/orders (only placed ones count).
ORDERS_SCOPE = "orders-placed"
TOO_MANY_ORDERS = ("You have placed several orders in a short time. Please wait a while "
                   "before placing another, or contact us if you need more.")


def orders_limit() -> str:
    from flask import current_app

    return current_app.config["RATELIMIT_ORDERS"]


def order_placed(_response) -> bool:
    """Only a placed order counts towards the orders limit (a refusal, a sold-out item or
    a repeated submission answered with the first order does not)."""
    from flask import g

    return bool(g.get("order_placed"))


# Coupon codes refused (unknown, expired, used up...), on the cart page and the API together.
COUPONS_SCOPE = "coupons-refused"
TOO_MANY_COUPONS = ("Too many coupon codes tried that did not work. Please wait a while and "
                    "try again, or check the code you were given.")


def coupons_limit() -> str:
    from flask import current_app

    return current_app.config["RATELIMIT_COUPONS"]


def coupon_refused(_response) -> bool:
    """Only a refused code counts towards the coupons limit (guessing), not one applied."""
    from flask import g

    return bool(g.get("coupon_refused"))
