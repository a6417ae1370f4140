"""Jinja filters and globals: money, dates, the header's category navigation and cart count."""
from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote, quote_plus, urlencode

from flask import Flask, current_app, g, request, url_for
from markupsafe import Markup, escape

from .services import catalog, orders

try:  # MarkupSafe's C escape of a str, without the checks and the Markup around it
    from markupsafe._speedups import _escape_inner as _escape_text
except ImportError:  # pragma: no cover (pure-Python MarkupSafe)
    def _escape_text(value: str) -> str:
        return str(escape(value))
from .services.money import format_money
from .sessions import csrf_token


def money(amount: Decimal | None, currency: str | None = None) -> str:
    return format_money(amount, currency or current_app.config["CURRENCY"])


def datetime_utc(value: datetime | None, fmt: str = "%d %b %Y, %H:%M UTC") -> str:
    return value.strftime(fmt) if value else ""


def nav_categories() -> catalog.CategoryTree:
    """The category tree, read once per request (the pages and the header share it)."""
    if "nav_tree" not in g:
        g.nav_tree = catalog.category_tree()
    return g.nav_tree


def category_nav() -> Markup:
    """The header's category links (`<li>`s), the current category marked; built once per
    tree revision, script root and current category."""
    tree = nav_categories()
    view_args = request.view_args or {}
    active = view_args.get("slug") if request.endpoint == "catalog.category" else None
    key = ("nav", request.script_root, active)
    html = tree.memo.get(key)
    if html is None:
        prefix = escape(_url_prefix("catalog.category", "slug"))
        current = ' aria-current="page"'
        html = tree.memo[key] = Markup("".join(
            f'<li><a href="{prefix}{escape(quote(node.slug, safe=""))}"'
            f'{current if node.slug == active else ""}>{escape(node.name)}</a></li>\n'
            for node in tree.roots))
    return html


def category_options(tree: catalog.CategoryTree, selected: str) -> Markup:
    """The `<option>`s of the listing's category filter (each category under its parent,
    indented by its depth, however deep), the chosen one selected; built once per tree
    revision and choice."""
    key = ("options", selected)
    html = tree.memo.get(key)
    if html is None:
        out = []
        stack = [(root, 0) for root in reversed(tree.roots)]
        while stack:
            node, depth = stack.pop()
            mark = " selected" if node.slug == selected else ""
            out.append(f'<option value="{escape(node.slug)}"{mark}>{"&nbsp;&nbsp;" * depth}'
                       f'{escape(node.name)}</option>\n')
            stack.extend((child, depth + 1) for child in reversed(node.children))
        html = tree.memo[key] = Markup("".join(out))
    return html


def header_cart_count() -> int:
    """Units in the shopper's cart, read once per request."""
    if "cart_count" not in g:
        from .blueprints.shopper import cart_owner
        from .services.cart import item_count

        g.cart_count = item_count(cart_owner())
    return g.cart_count


_URLS: dict[tuple, str] = {}
_MAX_URLS = 20_000


def cached_url_for(endpoint: str, **values: object) -> str:
    """url_for for templates, remembered per process: a URL depends only on the URL map (fixed
    once the app is built), the endpoint, its values and the script root, so every page need
    not build its header's dozen links again. External, anchored, blueprint-relative URLs and
    apps with url_defaults go to url_for each time."""
    if endpoint[:1] == "." or any(key[:1] == "_" for key in values) \
            or current_app.url_default_functions:
        return url_for(endpoint, **values)
    try:
        key = (request.script_root, endpoint, *sorted(values.items()))
        url = _URLS.get(key)
    except TypeError:  # an unhashable value
        return url_for(endpoint, **values)
    if url is None:
        url = url_for(endpoint, **values)
        if len(_URLS) >= _MAX_URLS:
            _URLS.clear()
        _URLS[key] = url
    return url


class SiteLinks:
    """The URLs every page's header and footer show (and the catalogue pages' add-to-cart
    form), built once per script root: templates read attributes instead of making a dozen
    url_for calls per page. base.html sets `links` for the pages that extend it."""

    __slots__ = ("css", "favicon", "htmx", "script", "home", "products", "login", "register",
                 "account", "logout", "cart", "cart_add", "admin", "api_docs")

    def __init__(self) -> None:
        static = "static"
        self.css = url_for(static, filename="css/shop.css")
        self.favicon = url_for(static, filename="img/favicon.svg")
        self.htmx = url_for(static, filename="js/htmx.min.js")
        self.script = url_for(static, filename="js/shop.js")
        self.home = url_for("catalog.home")
        self.products = url_for("catalog.products")
        self.login = url_for("account.login")
        self.register = url_for("account.register")
        self.account = url_for("account.index")
        self.logout = url_for("account.logout")
        self.cart = url_for("cart.show")
        self.cart_add = url_for("cart.add")
        self.admin = url_for("admin.index")
        self.api_docs = url_for("api.docs")


_SITE_LINKS: dict[tuple[int, str], SiteLinks] = {}


def site_links() -> SiteLinks:
    """The SiteLinks of this app and script root."""
    key = (id(current_app._get_current_object()), request.script_root)  # type: ignore[attr-defined]
    links = _SITE_LINKS.get(key)
    if links is None:
        if len(_SITE_LINKS) > 64:
            _SITE_LINKS.clear()
        links = _SITE_LINKS[key] = SiteLinks()
    return links


_PREFIXES: dict[tuple[str, str, str], str] = {}


def _url_prefix(endpoint: str, arg: str) -> str:
    """The URL of `endpoint` up to its last argument, built once per script root (like
    cached_url_for): a grid's links then cost a string join instead of a URL build each."""
    key = (request.script_root, endpoint, arg)
    prefix = _PREFIXES.get(key)
    if prefix is None:
        if len(_PREFIXES) >= 1000:
            _PREFIXES.clear()
        prefix = _PREFIXES[key] = url_for(endpoint, **{arg: "_"})[:-1]
    return prefix


def product_url(slug: str) -> str:
    """The product page's URL (what url_for("catalog.product", slug=...) gives)."""
    return _url_prefix("catalog.product", "slug") + quote(slug, safe="")


def image_url(path: str | None) -> str:
    """A product image's URL: shipped under static/, uploaded under /media/."""
    if not path:
        return cached_url_for("static", filename="img/placeholder.svg")
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


def use_link_args(args: dict[str, str]) -> None:
    """The query arguments this request's links start from (url_with, pagination) in place of
    the request's own: a listing gives its filters as parsed, once per request, so the links
    leave out what was refused."""
    g._url_with_args = (request.path, args)


def url_with(**changes: object) -> str:
    """The current URL with some query arguments changed (None removes one): the arguments
    are the request's, or those the view chose (use_link_args)."""
    base = g.get("_url_with_args")
    if base is None:
        base = g._url_with_args = (request.path, request.args.to_dict())
    path, args = base
    if len(changes) == 1 and changes.get("page") not in (None, ""):
        # A pagination bar's links differ only by the page: the rest is encoded once.
        pager = g.get("_url_pager")
        if pager is None:
            keys = list(args)
            at = keys.index("page") if "page" in args else len(keys)
            before = urlencode({k: args[k] for k in keys[:at]})
            after = urlencode({k: args[k] for k in keys[at + 1:]})
            pager = g._url_pager = (f"{path}?{before}&page=" if before else f"{path}?page=",
                                    f"&{after}" if after else "")
        return pager[0] + quote_plus(str(changes["page"])) + pager[1]
    args = dict(args)
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = str(value)
    query = urlencode(args)
    return path + (f"?{query}" if query else "")


class Fields(dict):
    """Values by field name (a form's errors, the raw text typed into its fields) that a
    template reads as attributes, a missing one as "": `errors.q` is a plain attribute read
    where `errors.get('q', '')` is a call (a call in a template costs several attribute
    reads)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> str:
        if name[:2] == "__":
            raise AttributeError(name)
        return self.get(name, "")


def pagination(here: int, pages: int) -> Markup:
    """The links of a listing's pagination bar (Previous, the page_window numbers with gaps,
    Next), each a plain link that htmx turns into a grid swap. Built here like the cards:
    a bar is a dozen links that differ only by their page (url_with's, escaped once).

    On a page past the last (the listing's 404, "There is no page 9"), the bar is the last
    page's numbers, none of them current, and Previous leads to the last page: it led to the
    page before the one asked for, past the end too."""
    url_with(page=1)  # works out this request's pager prefix and suffix
    before, after = (str(escape(part)) for part in g._url_pager)

    def link(n: int, text: str, extra: str) -> str:
        href = f"{before}{n}{after}"
        return (f'<a{extra} href="{href}" data-hx-get="{href}" data-hx-target="#product-grid" '
                f'data-hx-swap="outerHTML show:#main:top" data-hx-push-url="true">{text}</a>')

    out = []
    if here > 1:
        out.append(link(min(here - 1, pages), "Previous", ' rel="prev"'))
    for n in page_window(min(here, pages), pages):
        if n is None:
            out.append('<span class="gap" aria-hidden="true">…</span>')
        elif n == here:
            out.append(f'<span aria-current="page" class="current">{n}</span>')
        else:
            out.append(link(n, str(n), f' aria-label="Page {n}"'))
    if here < pages:
        out.append(link(here + 1, "Next", ' rel="next"'))
    return Markup("\n    ".join(out))


_TENTH = Decimal("0.1")


def rating(average: Decimal | None) -> str:
    """An average rating as the pages write it: one decimal, half up, as people round (3.45
    is "3.5"). One rounding for the cards, the product page and the reviews page: "%.1f"
    (through a float: 2.15 was "2.1") and a Decimal's own format (half even: 3.45 was "3.4")
    gave one product two ratings."""
    return str(Decimal(average or 0).quantize(_TENTH, rounding=ROUND_HALF_UP))


def stars(average: Decimal | None) -> Markup:
    """Five stars, filled to the average as `rating` writes it, rounded half up again (3.45
    is "3.5", 4 stars; 2.5 is 3 stars like 3.5 is 4), hidden from screen readers (the text
    says it)."""
    filled = min(5, int(Decimal(rating(average)).quantize(Decimal(1), rounding=ROUND_HALF_UP)))
    return Markup('<span class="stars" aria-hidden="true">' + "★" * filled + "☆" * (5 - filled)
                  + "</span>")


# A product card of a grid. The grid is the shop's hottest markup (24 cards a listing page):
# built here it costs a fraction of a Jinja macro per card. Every text value goes through
# escape(); URLs are built from escaped prefixes and percent-quoted parts.
_SAFE_PART = re.compile(r"[A-Za-z0-9._~-]+")
_FROM = '<span class="from">From</span> '
_IMAGE_URLS: dict[tuple[str, str | None], str] = {}


def _card_image(root: str, path: str | None) -> str:
    """image_url(path), escaped, remembered per process (few distinct images, fixed URLs)."""
    key = (root, path)
    url = _IMAGE_URLS.get(key)
    if url is None:
        if len(_IMAGE_URLS) >= 10_000:
            _IMAGE_URLS.clear()
        url = _IMAGE_URLS[key] = str(escape(image_url(path)))
    return url


def product_cards(cards: list[catalog.ProductCard]) -> Markup:
    """The `<li>` cards of a product grid: image, name, price, rating and "Add to cart" (a
    form that works without JavaScript) or "Choose options" when there are variants."""
    if not cards:
        return Markup("")
    currency = current_app.config["CURRENCY"]
    add = escape(cached_url_for("cart.add"))
    csrf = escape(csrf_token())
    prefix = escape(_url_prefix("catalog.product", "slug"))
    root = request.script_root
    out = []
    for p in cards:
        slug = p.slug if _SAFE_PART.fullmatch(p.slug) else quote(p.slug, safe="")
        href = f"{prefix}{slug}"
        name = _escape_text(p.name)
        price = _escape_text(format_money(p.price, currency))
        compare = (f'<s class="compare-at"><span class="visually-hidden">Was </span>'
                   f'{_escape_text(format_money(p.compare_at_price, currency))}</s>'
                   if p.compare_at_price else "")
        # "(3)" is the number of reviews: said so to a screen reader, as the product page says
        # "(3 reviews)" (a bare "(3)" read out after the rating means nothing).
        rated = (f'    <p class="rating">{stars(p.rating_average)} <span class="visually-hidden">'
                 f'Rated</span> {rating(p.rating_average)}<span class="visually-hidden"> out of 5'
                 f'</span> ({int(p.rating_count)}<span class="visually-hidden"> '
                 f'{"review" if p.rating_count == 1 else "reviews"}</span>)</p>\n'
                 if p.rating_count else "")
        if not p.in_stock:
            action = '    <p class="stock stock-out">Out of stock</p>\n'
        elif p.variant_count == 1 and p.default_variant_id:
            action = (f'    <form class="add-form" action="{add}" method="post" '
                      f'data-hx-post="{add}" data-hx-swap="none">\n'
                      f'      <input type="hidden" name="csrf_token" value="{csrf}">\n'
                      f'      <input type="hidden" name="variant_id" '
                      f'value="{int(p.default_variant_id)}">\n'
                      f'      <input type="hidden" name="quantity" value="1">\n'
                      f'      <button type="submit" class="button button-small" '
                      f'aria-label="Add to cart: {name}">Add to cart</button>\n'
                      f'    </form>\n')
        else:
            action = (f'    <a class="button button-small button-secondary" href="{href}" '
                      f'aria-label="Choose options for {name}">Choose options</a>\n')
        out.append(
            f'<li class="card">\n'
            f'  <a class="card-image" href="{href}" tabindex="-1" aria-hidden="true">\n'
            f'    <img src="{_card_image(root, p.image_path)}" alt="" width="320" height="320" '
            f'loading="lazy">\n'
            f'  </a>\n'
            f'  <div class="card-body">\n'
            f'    <h3 class="card-title"><a href="{href}">{name}</a></h3>\n'
            f'    <p class="price">\n'
            f'      {_FROM if p.variant_count > 1 else ""}{price}\n'
            f'      {compare}</p>\n'
            f'{rated}{action}  </div>\n'
            f'</li>\n')
    return Markup("".join(out))


def shipping_label(method: str | None) -> str:
    """A shipping method as the shopper chose it ("Standard (3-5 business days)")."""
    from .services.pricing import SHIPPING_LABELS

    return SHIPPING_LABELS.get(method or "", method or "")


def country_name(code: str | None) -> str:
    """An address's country for people: "United Kingdom" for GB (the code if unknown)."""
    from .services.countries import COUNTRIES

    return COUNTRIES.get(code or "", code or "")


# Control characters no page may hold (HTML forbids C0 and C1 controls other than tab, line
# feed and carriage return; the Nu checker: "Forbidden code point U+0007", "Saw U+0000").
_UNSHOWABLE = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")


def shown(value: object) -> object:
    """The `shown` filter, on every value a form writes back as typed (the form macros'
    `value`, the email of login and reset, a review's title and body, a coupon code): a
    control character replaced by U+FFFD. A refused form shows again what was typed and says
    which field "has a character that cannot be shown", and the page stays valid HTML. Not
    the environment's `finalize` on every output: that cost the catalogue pages 10-20 us
    (2%), for values that never hold one there (the services refuse them, and the search
    box's `q` is cleaned by catalog.parse_filters)."""
    if type(value) is str and _UNSHOWABLE.search(value) is not None:
        return _UNSHOWABLE.sub("\ufffd", value)
    return value


# A blank line (it may hold spaces) between two paragraphs of a shopper's text.
_BLANK_LINE = re.compile(r"\n\s*\n")


def paragraphs(text: str | None) -> Markup:
    """A shopper's text (a review's body) as they typed it: a paragraph at each blank line and
    each line break within one kept (`<br>`), everything escaped. "Pros:" then "- keeps heat"
    on the next line read "Pros: - keeps heat" when only a blank line made a paragraph."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    return Markup("").join(
        Markup("<p>") + Markup("<br>\n").join(escape(line) for line in para.split("\n"))
        + Markup("</p>")
        for para in _BLANK_LINE.split(text) if para.strip())


def init_app(app: Flask) -> None:
    app.jinja_env.filters["shown"] = shown
    app.jinja_env.filters["paragraphs"] = paragraphs
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["datetime"] = datetime_utc
    app.jinja_env.filters["image_url"] = image_url
    app.jinja_env.filters["stars"] = stars
    app.jinja_env.filters["rating"] = rating
    app.jinja_env.filters["country"] = country_name
    app.jinja_env.filters["shipping_label"] = shipping_label
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.globals.update(
        url_for=cached_url_for, nav_categories=nav_categories, category_nav=category_nav,
        category_options=category_options, header_cart_count=header_cart_count,
        url_with=url_with, product_url=product_url, product_cards=product_cards,
        pagination=pagination,
        site_links=site_links,
        page_window=page_window,
        status_labels=orders.STATUS_LABELS,
        shop_name=lambda: current_app.config["SHOP_NAME"])
