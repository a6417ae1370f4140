"""Jinja filters and globals: money, dates, the header's category navigation and cart count."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from urllib.parse import quote, urlencode

from flask import Flask, current_app, g, request, url_for
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape

from .services import catalog, orders
from .services.money import format_money


def money(amount: Decimal | None, currency: str | None = None) -> str:
    return format_money(amount, currency or current_app.config["CURRENCY"])


def datetime_utc(value: datetime | None, fmt: str = "%d %b %Y, %H:%M UTC") -> str:
    return value.strftime(fmt) if value else ""


def nav_categories() -> catalog.CategoryTree:
    """The category tree, read once per request (the pages and the header share it)."""
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


def _url_prefix(endpoint: str, arg: str) -> str:
    """The URL of `endpoint` up to its last argument, built once per request: a grid's links
    then cost a string join instead of a URL build each."""
    prefixes = g.setdefault("_url_prefixes", {})
    prefix = prefixes.get(endpoint)
    if prefix is None:
        prefix = prefixes[endpoint] = url_for(endpoint, **{arg: "_"})[:-1]
    return prefix


def product_url(slug: str) -> str:
    """The product page's URL (what url_for("catalog.product", slug=...) gives)."""
    return _url_prefix("catalog.product", "slug") + quote(slug, safe="")


def image_url(path: str | None) -> str:
    """A product image's URL: shipped under static/, uploaded under /media/."""
    if not path:
        return url_for("static", filename="img/placeholder.svg")
    if path.startswith("uploads/"):
        return _url_prefix("catalog.media", "filename") + quote(path.removeprefix("uploads/"))
    return _url_prefix("static", "filename") + quote(path)


def page_window(here: int, pages: int) -> list[int | None]:
    """Page numbers for a pagination bar: the first, the last and two either side of `here`;
    None marks a gap."""
    window: list[int | None] = []
    for n in sorted({1, 2, pages - 1, pages, *range(here - 2, here + 3)}):
        if not 1 <= n <= pages:
            continue
        if n in (1, pages) or abs(n - here) <= 2:
            window.append(n)
        else:
            window.append(None)
    return window


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


# A product card of a grid. The grid is the shop's hottest markup (24 cards a listing page):
# built here with str.format it costs a third of a Jinja macro per card. Every value that is
# not a URL, a number or a constant below goes through escape().
_CARD = """<li class="card">
  <a class="card-image" href="{href}" tabindex="-1" aria-hidden="true">
    <img src="{image}" alt="" width="320" height="320" loading="lazy">
  </a>
  <div class="card-body">
    <h3 class="card-title"><a href="{href}">{name}</a></h3>
    <p class="price">
      {from_}{price}
      {compare}</p>
{rating}{action}  </div>
</li>
"""
_CARD_FROM = '<span class="from">From</span> '
_CARD_COMPARE = '<s class="compare-at"><span class="visually-hidden">Was </span>{}</s>'
_CARD_RATING = ('    <p class="rating">{stars} <span class="visually-hidden">Rated</span> {average}'
                '<span class="visually-hidden"> out of 5</span> ({count})</p>\n')
_CARD_OUT = '    <p class="stock stock-out">Out of stock</p>\n'
_CARD_ADD = ('    <form class="add-form" action="{add}" method="post" data-hx-post="{add}" '
             'data-hx-swap="none">\n'
             '      <input type="hidden" name="csrf_token" value="{csrf}">\n'
             '      <input type="hidden" name="variant_id" value="{variant_id}">\n'
             '      <input type="hidden" name="quantity" value="1">\n'
             '      <button type="submit" class="button button-small" '
             'aria-label="Add to cart: {name}">Add to cart</button>\n'
             '    </form>\n')
_CARD_OPTIONS = ('    <a class="button button-small button-secondary" href="{href}" '
                 'aria-label="Choose options for {name}">Choose options</a>\n')


def product_cards(cards: list[catalog.ProductCard]) -> Markup:
    """The `<li>` cards of a product grid: image, name, price, rating and "Add to cart" (a
    form that works without JavaScript) or "Choose options" when there are variants."""
    if not cards:
        return Markup("")
    currency = current_app.config["CURRENCY"]
    add = escape(url_for("cart.add"))
    csrf = escape(generate_csrf())
    product_prefix = _url_prefix("catalog.product", "slug")
    out = []
    for p in cards:
        href = escape(product_prefix + quote(p.slug, safe=""))
        name = escape(p.name)
        if not p.in_stock:
            action = _CARD_OUT
        elif p.variant_count == 1 and p.default_variant_id:
            action = _CARD_ADD.format(add=add, csrf=csrf, variant_id=int(p.default_variant_id),
                                      name=name)
        else:
            action = _CARD_OPTIONS.format(href=href, name=name)
        rating = _CARD_RATING.format(
            stars=stars(p.rating_average), average=f"{p.rating_average:.1f}",
            count=int(p.rating_count)) if p.rating_count else ""
        out.append(_CARD.format(
            href=href, image=escape(image_url(p.image_path)), name=name,
            from_=_CARD_FROM if p.variant_count > 1 else "",
            price=escape(format_money(p.price, currency)),
            compare=_CARD_COMPARE.format(escape(format_money(p.compare_at_price, currency)))
            if p.compare_at_price else "", rating=rating, action=action))
    return Markup("".join(out))


def init_app(app: Flask) -> None:
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["datetime"] = datetime_utc
    app.jinja_env.filters["image_url"] = image_url
    app.jinja_env.filters["stars"] = stars
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.globals.update(
        nav_categories=nav_categories, header_cart_count=header_cart_count,
        url_with=url_with, product_url=product_url, product_cards=product_cards,
        page_window=page_window,
        status_labels=orders.STATUS_LABELS,
        shop_name=lambda: current_app.config["SHOP_NAME"])
