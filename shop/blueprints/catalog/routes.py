"""Catalogue pages: home, listing with filters, category, product; uploaded images."""
from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    make_response,
    render_template,
    request,
    send_from_directory,
)
from werkzeug.utils import safe_join

from ...services import catalog
from ...services.errors import NotFound
from ...templating import nav_categories as category_tree
from ..htmx import is_htmx, vary
from . import page_cache

bp = Blueprint("catalog", __name__)
# With Redis, anonymous shoppers' catalogue pages are served from a page cache in front of the
# app (see page_cache.py); these views offer what they render to it.
bp.record_once(lambda state: page_cache.install(state.app))
bp.after_request(page_cache.offer)


@bp.get("/")
def home():
    """Featured categories and the newest products."""
    tree = category_tree()
    newest = catalog.list_products(catalog.ProductFilters(sort="newest", per_page=8), tree,
                                   with_total=False)
    return render_template("catalog/home.html", tree=tree, newest=newest.items)


def _listing(template: str, *, category_node=None, tree=None, extra: dict | None = None):
    """The listing shared by /products and /c/<slug>: a full page, or the grid for htmx."""
    args = request.args.to_dict()
    if category_node is not None:
        args["category"] = category_node.slug
    filters, errors = catalog.parse_filters(args, default_per_page=current_app.config["PER_PAGE"])
    tree = tree or category_tree()
    status = 200
    try:
        page = catalog.list_products(filters, tree)
    except NotFound as exc:
        errors["category"] = exc.message
        filters.category = ""
        page = catalog.list_products(filters, tree)
    if page.total and filters.page > page.pages:
        status = 404
    if errors and not is_htmx():
        status = 400
    context = {"filters": filters, "errors": errors, "page": page, "tree": tree,
               "category": category_node, "sort_labels": catalog.SORT_LABELS,
               "page_status": status, **(extra or {})}
    if is_htmx():
        response = make_response(render_template("catalog/_grid_response.html", **context))
    else:
        response = make_response(render_template(template, **context), status)
    return vary(response)


@bp.get("/products")
def products():
    """All products, with search, filters, sort and pagination."""
    return _listing("catalog/products.html")


@bp.get("/c/<slug>")
def category(slug: str):
    """A category's products and those of its subcategories."""
    tree = category_tree()
    node = tree.by_slug.get(slug)
    if node is None:
        abort(404, description="That category does not exist.")
    return _listing("catalog/category.html", category_node=node, tree=tree,
                    extra={"ancestors": tree.ancestors(node)})


@bp.get("/p/<slug>")
def product(slug: str):
    """A product: images, options, price, stock, add to cart, reviews."""
    try:
        item = catalog.product_detail(slug)
    except NotFound:
        abort(404, description="That product does not exist or is no longer sold.")
    tree = category_tree()
    node = tree.by_id.get(item.category_id) if item.category_id else None
    crumbs = (tree.ancestors(node) + [node]) if node else []
    selected = request.args.get("variant", type=int)
    variants = item.variants
    default = next((v for v in variants if v.id == selected), None) or \
        next((v for v in variants if v.in_stock), variants[0] if variants else None)
    return render_template("catalog/product.html", product=item, crumbs=crumbs,
                           selected=default, tree=tree)


@bp.get("/media/<path:filename>")
def media(filename: str):
    """Images uploaded by staff, from the upload directory, never executable content."""
    directory = current_app.config["UPLOAD_DIR"]
    if safe_join(directory, filename) is None:
        abort(404)
    response = send_from_directory(directory, filename, max_age=86400)
    response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response
