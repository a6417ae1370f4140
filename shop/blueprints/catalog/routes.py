"""Catalogue pages: home, listing with filters, category, product; uploaded images."""
from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.utils import safe_join

from ...services import catalog, coupons, pricing, search
from ...services.errors import NotFound
from ...templating import Fields, use_link_args
from ..htmx import is_history_restore, is_htmx, render_block, vary
from . import page_cache

bp = Blueprint("catalog", __name__)
# With Redis, anonymous shoppers' catalogue pages are served from a page cache in front of the
# app (see page_cache.py); these views offer what they render to it.
bp.record_once(lambda state: page_cache.install(state.app))
bp.after_request(page_cache.offer)


def _use_tree(tree: catalog.CategoryTree) -> catalog.CategoryTree:
    """The tree this request's page was read with is the one its header shows."""
    g.nav_tree = tree
    return tree


@bp.get("/")
def home():
    """Featured categories and the newest products."""
    tree, newest = catalog.with_current_tree(
        lambda tree: catalog.list_products(
            catalog.ProductFilters(sort="newest", per_page=8), tree, with_total=False),
        lambda page: page.tree_revision)
    config = current_app.config
    if request.query_string:  # the home page reads no argument: kept once, without them
        page_cache.not_for_the_cache()
    return render_template("catalog/home.html", tree=_use_tree(tree), newest=newest.items,
                           offer=coupons.offer(config["WELCOME_COUPON"], config["CURRENCY"]),
                           rules=pricing.PricingRules.from_config())


def _canonical(args: dict[str, str], default_per_page: int) -> bool:
    """Whether the request's query says what `args` (the page's own, as parsed) says, each
    argument once, in a spelling the page's own links or a shopper's typing give: an empty
    value, the first page, the default sort or page size written out or left out alike, and a
    price as typed ("5" or "5.5") or as the links write it ("5.00", "5.50"). Any other
    spelling (`in_stock=1`, `min_price=0005`, a value the page ignores or refused) is
    rendered, not kept in the page cache: made-up spellings would otherwise fill it. Each
    distinct search or price range is a page of its own and is kept, for
    CATALOG_CACHE_SECONDS."""
    given = request.args
    if sum(1 for _ in given.items(multi=True)) != len(given):
        return False
    raw = {key: value for key, value in given.items() if value != ""}
    for key, default in (("sort", "relevance"), ("page", "1"),
                         ("per_page", str(default_per_page))):
        if raw.get(key) == default:
            del raw[key]
    for key in ("min_price", "max_price"):
        written = args.get(key)
        if written is not None and "." in written and \
                raw.get(key) == written.rstrip("0").rstrip("."):
            raw[key] = written  # typed "5" for the links' "5.00"
    return raw == args


def _listing(template: str, *, slug: str | None = None, search_box: bool = False):
    """The listing shared by /products and /c/<slug>: a full page, or the grid for htmx."""
    per_page = current_app.config["PER_PAGE"]

    def read(tree: catalog.CategoryTree):
        node = None
        args = request.args.to_dict()
        if slug is not None:
            node = tree.by_slug.get(slug)
            if node is None:
                raise NotFound("That category does not exist.")
            args["category"] = node.slug
        filters, errors = catalog.parse_filters(args, default_per_page=per_page)
        try:
            page = catalog.list_products(filters, tree)
        except NotFound as exc:
            if node is not None:
                raise
            errors["category"] = exc.message
            filters.category = ""
            page = catalog.list_products(filters, tree)
        return node, filters, errors, page

    try:
        tree, (node, filters, errors, page) = catalog.with_current_tree(
            read, lambda result: result[3].tree_revision)
    except NotFound:
        abort(404, description="That category does not exist.")
    _use_tree(tree)
    link_args = catalog.listing_args(filters, default_per_page=per_page,
                                     category_in_path=node is not None)
    use_link_args(link_args)
    if not _canonical(link_args, per_page):
        page_cache.not_for_the_cache()
    status = 200
    if page.total and filters.page > page.pages:
        status = 404
    if errors and not is_htmx():
        status = 400
    args = request.args
    context = {"filters": filters, "errors": Fields(errors), "page": page, "tree": tree,
               "category": node, "sort_labels": catalog.SORT_LABELS, "page_status": status,
               "short_query": not page.total and search.only_short_words(filters.q),
               "typed": Fields(min_price=args.get("min_price", ""),
                               max_price=args.get("max_price", "")),
               "path": request.path, "search_q": filters.q if search_box else ""}
    if node is not None:
        context["ancestors"] = tree.ancestors(node)
    if is_htmx():
        response = make_response(render_template("catalog/_grid_response.html", **context))
    else:
        # Going Back to a refused page: htmx puts back only a 2xx answer (see htmx.py). That
        # 200 is for htmx alone: the page cache must not give it to the next plain request.
        if status != 200 and is_history_restore():
            page_cache.not_for_the_cache()
            status = 200
        response = make_response(render_template(template, **context), status)
    return vary(response)


@bp.get("/products")
def products():
    """All products, with search, filters, sort and pagination."""
    return _listing("catalog/products.html", search_box=True)


@bp.get("/c/<slug>")
def category(slug: str):
    """A category's products and those of its subcategories."""
    return _listing("catalog/category.html", slug=slug)


@bp.get("/p/<slug>")
def product(slug: str):
    """A product: images, options, price, stock, add to cart, reviews; `?variant=<id>` the
    option shown. For htmx (an option chosen), that option's price, stock and SKU alone."""
    selected = request.args.get("variant", type=int)
    if is_htmx():
        return vary(make_response(variant_summary(slug, selected)))
    return vary(product_page(slug, selected))


def variant_summary(slug: str, selected: int | None) -> str:
    """The product page's price, stock and SKU of the option `selected` (its
    variant_summary block), with an announcement of them."""
    try:
        item = catalog.product_detail(slug)
    except NotFound:
        abort(404, description="That product does not exist or is no longer sold.")
    variant = item.chosen(selected)
    _only_own_address_kept(variant, selected)
    summary = render_block("catalog/product.html", "variant_summary", product=item,
                           selected=variant)
    return render_template("catalog/_variant_response.html", summary=summary,
                           selected=variant)


def product_page(slug: str, selected: int | None, status: int = 200, **context):
    """The product page with `selected` as the chosen option; also the answer (422) to its
    "Add to cart" form refused without JavaScript (cart.add), with the message under its
    field and what was typed (`add_form`, `add_errors` in the context)."""
    try:
        tree, item = catalog.with_current_tree(lambda tree: catalog.product_detail(slug),
                                               lambda item: item.tree_revision)
    except NotFound:
        abort(404, description="That product does not exist or is no longer sold.")
    if item.slug != slug and status == 200 and request.method == "GET":
        # MySQL's collation also finds /p/ITEM-1 and "/p/item-1 ": one address per product.
        query = request.query_string.decode("latin-1")
        return redirect(url_for("catalog.product", slug=item.slug)
                        + (f"?{query}" if query else ""), 301)
    _use_tree(tree)
    node = tree.by_id.get(item.category_id) if item.category_id else None
    crumbs = (tree.ancestors(node) + [node]) if node else []
    chosen = item.chosen(selected)
    _only_own_address_kept(chosen, selected)
    return make_response(render_template("catalog/product.html", product=item, crumbs=crumbs,
                                         selected=chosen, tree=tree, **context), status)


def _only_own_address_kept(chosen: catalog.VariantView | None, selected: int | None) -> None:
    """Only ?variant=<one of its ids> changes a product's page or its htmx option summary: any
    other query is rendered, not kept in the page cache (made-up values would otherwise fill
    it, the fragment's as much as the page's)."""
    if request.query_string and request.query_string.decode("latin-1") != (
            f"variant={chosen.id}" if chosen is not None and chosen.id == selected else ""):
        page_cache.not_for_the_cache()


@bp.get("/media/<path:filename>")
def media(filename: str):
    """Images uploaded by staff, from the upload directory, never executable content."""
    directory = current_app.config["UPLOAD_DIR"]
    if safe_join(directory, filename) is None:
        abort(404)
    response = send_from_directory(directory, filename, max_age=86400)
    response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response
