"""Jinja filters and globals: money, dates, the header's category navigation and cart count."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

from flask import Flask, current_app, g, request, url_for
from markupsafe import Markup

from .services import catalog, orders
from .services.money import format_money


def money(amount: Decimal | None, currency: str | None = None) -> str:
    return format_money(amount, currency or current_app.config["CURRENCY"])


def datetime_utc(value: datetime | None, fmt: str = "%d %b %Y, %H:%M UTC") -> str:
    return value.strftime(fmt) if value else ""


def nav_categories():
    """Top-level categories with their children, read once per request."""
    if "nav_tree" not in g:
        g.nav_tree = catalog.category_tree()
    return g.nav_tree


def header_cart_count() -> int:
    """Units in the shopper's cart, read once per request."""
    if "cart_count" not in g:
        from .blueprints.shopper import cart_owner
        from .services.cart import item_count

        g.cart_count = item_count(cart_owner())
    return g.cart_count


def image_url(path: str | None) -> str:
    """A product image's URL: shipped under static/, uploaded under /media/."""
    if not path:
        return url_for("static", filename="img/placeholder.svg")
    if path.startswith("uploads/"):
        return url_for("catalog.media", filename=path.removeprefix("uploads/"))
    return url_for("static", filename=path)


def url_with(**changes: object) -> str:
    """The current URL with some query arguments changed (None removes one)."""
    args = request.args.to_dict()
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = str(value)
    query = urlencode(args)
    return request.path + (f"?{query}" if query else "")


def stars(average: Decimal | None) -> Markup:
    """Five stars, filled to the rounded average, hidden from screen readers (text says it)."""
    filled = int(round(float(average or 0)))
    return Markup('<span class="stars" aria-hidden="true">' + "★" * filled + "☆" * (5 - filled)
                  + "</span>")


def init_app(app: Flask) -> None:
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["datetime"] = datetime_utc
    app.jinja_env.filters["image_url"] = image_url
    app.jinja_env.filters["stars"] = stars
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.globals.update(
        nav_categories=nav_categories, header_cart_count=header_cart_count,
        url_with=url_with, status_labels=orders.STATUS_LABELS,
        shop_name=lambda: current_app.config["SHOP_NAME"])
