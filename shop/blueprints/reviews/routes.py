"""Reviews: a buyer writes one review of a product, from its page or from the account page;
everyone reads the approved ones. The rules live in shop.services.reviews."""
from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from ...http import personal
from ...models import Product
from ...services import catalog, reviews
from ...services.errors import Forbidden, NotFound, ValidationError
from ..htmx import is_htmx, vary
from ..shopper import current_user_id

bp = Blueprint("reviews", __name__)


@bp.after_request
def _personal_when_logged_in(response):
    """The review form and its answers are one customer's (their purchase, their form
    token): no shared cache stores them. The public list of a product's reviews is not."""
    return personal(response) if current_user.is_authenticated else response


def _product(slug: str) -> Product:
    try:
        return catalog.get_product(slug)
    except NotFound:
        abort(404, description="That product does not exist or is no longer sold.")


def _page_arg(name: str) -> int:
    return max(1, request.args.get(name, 1, type=int) or 1)


def review_panel(product) -> reviews.ReviewPanel:
    """The product page's review section for the current shopper (used by catalog/product.html)."""
    return reviews.panel(product.id, current_user_id(), product.rating_count)


@bp.app_context_processor
def review_helpers() -> dict:
    return {"review_panel": review_panel, "review_reasons": reviews.REASONS}


@bp.get("/p/<slug>/reviews")
def list_reviews(slug: str):
    """All approved reviews of a product, newest first, page by page."""
    product = _product(slug)
    page = reviews.approved_for_product(product.id, _page_arg("page"))
    if page.total and page.page > page.pages:
        abort(404, description="There is no such page of reviews.")
    return render_template("reviews/list.html", product=product, reviews_page=page)


@bp.get("/p/<slug>/reviews/new")
@login_required
def new(slug: str):
    """The review form on its own page (linked from the account's purchases)."""
    product = _product(slug)
    allowed, reason = reviews.can_review(current_user.id, product.id)
    return render_template("reviews/new.html", product=product, can_review=allowed,
                           reason=reason, form={}, errors={})


def _slot(product: Product, *, can_review: bool, reason: str | None, form: dict | None = None,
          errors: dict | None = None, announcement: str = ""):
    """The htmx answer: the review form's slot and a polite announcement."""
    return vary(make_response(render_template(
        "reviews/_slot_response.html", product=product, can_review=can_review, reason=reason,
        form=form or {}, errors=errors or {}, announcement=announcement)))


@bp.post("/p/<slug>/reviews")
def submit(slug: str):
    """Submit a review: it waits for staff approval before it is shown."""
    product = _product(slug)
    back = url_for("catalog.product", slug=product.slug, _anchor="reviews")
    if not current_user.is_authenticated:
        if is_htmx():
            return _slot(product, can_review=False, reason="login",
                         announcement=reviews.REASONS["login"])
        return redirect(url_for("account.login", next=url_for("reviews.new", slug=slug)), 303)
    form = {k: request.form.get(k, "") for k in ("rating", "title", "body")}
    try:
        reviews.submit(current_user.id, product.id, form["rating"], form["title"], form["body"])
    except ValidationError as exc:
        if is_htmx():
            return _slot(product, can_review=True, reason=None, form=form, errors=exc.errors,
                         announcement="Please correct the review form.")
        return render_template("reviews/new.html", product=product, can_review=True,
                               reason=None, form=form, errors=exc.errors), 422
    except Forbidden as exc:
        if is_htmx():
            return _slot(product, can_review=False, reason=exc.code, announcement=exc.message)
        # Their review already waiting is no error (the page thanks them for it again).
        flash(exc.message, "info" if exc.code == "sent" else "error")
        return redirect(back, 303)
    except NotFound:
        abort(404, description="That product does not exist or is no longer sold.")
    message = reviews.REASONS["pending"]
    if is_htmx():
        return _slot(product, can_review=False, reason="pending", announcement=message)
    flash(message, "success")
    return redirect(back, 303)
