"""Product reviews (SPEC section 3): only a customer who bought a product reviews it, once;
a review waits for staff approval; products carry the average and count of approved reviews."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Order, OrderLine, Product, Review
from . import cache, reads
from .addresses import unprintable
from .database import write_transaction
from .errors import Forbidden, NotFound, ValidationError
from .paging import Paged

# A purchase counts once it is paid and until it is refunded; a pending (unpaid) or cancelled
# order, or a refunded one, is not a purchase to review.
PURCHASED_STATUSES = ("paid", "processing", "shipped", "delivered")
TITLE_MAX = 120
BODY_MAX = 5000
PER_PAGE = 10

# Why a shopper cannot review a product; templates and the API show REASONS[code].
REASONS = {
    "login": "Log in to review this product.",
    "not_bought": "Only customers who bought this product can review it.",
    "pending": "Thank you! Your review is waiting for approval and will appear soon.",
    # The form sent again while the first review waits (a double click, a second tab): the
    # words sent this time are not taken, which a thank-you would not say.
    "sent": "You have already sent a review of this product; it is waiting for approval.",
    "reviewed": "You have already reviewed this product.",
    "rejected": "You have already reviewed this product; your review was not published.",
    "not_found": "That product does not exist or is no longer sold.",
}


@dataclass(frozen=True)
class ReviewView:
    """A published review as pages show it (the author's name shortened for privacy)."""

    id: int
    rating: int
    title: str
    body: str
    author: str
    created_at: datetime


@dataclass(frozen=True)
class ReviewPage(Paged):
    items: list[ReviewView]
    page: int
    per_page: int
    total: int


@dataclass(frozen=True)
class ReviewPanel:
    """Everything a product page shows about reviews for the current shopper."""

    reviews: ReviewPage
    can_review: bool
    reason: str | None

    @property
    def message(self) -> str:
        return REASONS.get(self.reason or "", "")


@dataclass(frozen=True)
class Reviewable:
    """A product a customer bought and has not reviewed yet."""

    product_id: int
    slug: str
    name: str


def display_name(name: str | None) -> str:
    """ "Ada Lovelace" -> "Ada L."; no name -> "A customer"."""
    parts = (name or "").split()
    if not parts:
        return "A customer"
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]} {parts[-1][0]}."


def author_renamed(user_id: int, old_name: str | None, new_name: str | None) -> None:
    """After an account's new name is committed: when the name its published reviews show
    changed (display_name), the product pages cached with them are old (services.cache)."""
    if display_name(old_name) == display_name(new_name):
        return
    published = db.session.execute(
        select(Review.id).where(Review.user_id == user_id, Review.status == "approved")
        .limit(1)).first()
    if published is not None:
        cache.catalog_changed()


def has_bought(user_id: int, product_id: int) -> bool:
    """True when one of the user's paid (not cancelled, not refunded) orders has the product."""
    return db.session.execute(
        select(OrderLine.id).join(Order, Order.id == OrderLine.order_id)
        .where(Order.user_id == user_id, OrderLine.product_id == product_id,
               Order.status.in_(PURCHASED_STATUSES)).limit(1)).first() is not None


# Both questions of can_review in one plain read (services.reads): it runs on every product
# page a logged-in customer opens.
_CAN_REVIEW_SQL = ("SELECT (SELECT r.status FROM reviews r WHERE r.user_id = :user_id "
                   "AND r.product_id = :product_id LIMIT 1), "
                   "EXISTS (SELECT 1 FROM order_lines l JOIN orders o ON o.id = l.order_id "
                   "WHERE o.user_id = :user_id AND l.product_id = :product_id AND o.status IN ("
                   + ", ".join(f"'{status}'" for status in PURCHASED_STATUSES) + "))")


def can_review(user_id: int | None, product_id: int) -> tuple[bool, str | None]:
    """(True, None) when the user may review the product; else (False, a REASONS code)."""
    if user_id is None:
        return False, "login"
    status, has_bought_it = reads.rows(_CAN_REVIEW_SQL, {"user_id": int(user_id),
                                                          "product_id": int(product_id)})[0]
    if status is not None:
        return False, {"pending": "pending", "rejected": "rejected"}.get(status, "reviewed")
    if not has_bought_it:
        return False, "not_bought"
    return True, None


# A control character or a direction override, shown to every shopper: a NUL made the product
# page invalid HTML, a right-to-left override made the review say something else.
UNPRINTABLE_MESSAGE = "This has a character that cannot be shown; please type it again."


def _clean(rating: object, title: object, body: object) -> tuple[int, str, str]:
    errors: dict[str, str] = {}
    value = None
    if isinstance(rating, bool):
        rating = None
    if isinstance(rating, int):
        value = rating
    elif isinstance(rating, str) and rating.strip().isdecimal() and len(rating.strip()) <= 2:
        # Decimal digits only ("²" is a digit int() refuses), and never thousands of them.
        value = int(rating.strip())
    if value is None or not 1 <= value <= 5:
        errors["rating"] = "Choose a rating from 1 to 5 stars."
    title_text = " ".join(title.split()) if isinstance(title, str) else ""
    body_text = body.strip().replace("\r\n", "\n") if isinstance(body, str) else ""
    if not title_text:
        errors["title"] = "Give your review a title."
    elif len(title_text) > TITLE_MAX:
        errors["title"] = f"Keep the title to {TITLE_MAX} characters or fewer."
    elif unprintable(title_text):
        errors["title"] = UNPRINTABLE_MESSAGE
    if body is not None and not isinstance(body, str):
        errors["body"] = "The review must be text."
    elif len(body_text) > BODY_MAX:
        errors["body"] = f"Keep the review to {BODY_MAX} characters or fewer."
    elif unprintable(body_text.replace("\n", " ").replace("\t", " ")):
        errors["body"] = UNPRINTABLE_MESSAGE
    if errors:
        raise ValidationError(errors)
    return value, title_text, body_text


def submit(user_id: int, product_id: int, rating: object, title: object,
           body: object = "") -> Review:
    """Write the user's one review of a product they bought; it waits for approval.

    Raises NotFound (no such active product), Forbidden with a REASONS code (not bought,
    already sent and waiting, already reviewed) or ValidationError (rating, title, body)."""
    product = db.session.get(Product, product_id)
    if product is None or not product.active:
        raise NotFound(REASONS["not_found"], code="not_found")
    allowed, reason = can_review(user_id, product_id)
    if not allowed:
        reason = "sent" if reason == "pending" else reason or "not_bought"
        raise Forbidden(REASONS[reason], code=reason)
    value, title_text, body_text = _clean(rating, title, body)
    try:
        with write_transaction():
            review = Review(product_id=product_id, user_id=user_id, rating=value,
                            title=title_text, body=body_text, status="pending")
            db.session.add(review)
            db.session.flush()
            review_id = review.id
    except IntegrityError as exc:
        # The same customer submitted twice at once: the unique constraint kept one.
        raise Forbidden(REASONS["sent"], code="sent") from exc
    return db.session.get(Review, review_id)


def _moderate(review_id: int, status: str) -> Review:
    with write_transaction():
        review = db.session.get(Review, review_id)
        if review is None:
            raise NotFound("That review does not exist.")
        # Lock the product row: simultaneous moderations of one product's reviews recompute
        # its average one after the other, each seeing the other's result.
        db.session.execute(select(Product.id).where(Product.id == review.product_id)
                           .with_for_update())
        changed = review.status != status
        if changed:
            review.status = status
            db.session.flush()
            recompute_rating(review.product_id)
    if changed:  # a review already so changes no page: the cached ones stay
        cache.catalog_changed()
    return db.session.get(Review, review_id)


def approve(review_id: int) -> Review:
    """Publish a review and update its product's average rating and count."""
    return _moderate(review_id, "approved")


def reject(review_id: int) -> Review:
    """Hide a review (also one approved before) and update its product's rating."""
    return _moderate(review_id, "rejected")


def recompute_rating(product_id: int) -> None:
    """Set Product.rating_average / rating_count from its approved reviews (flushes only)."""
    count, total = db.session.execute(
        select(func.count(Review.id), func.coalesce(func.sum(Review.rating), 0))
        .where(Review.product_id == product_id, Review.status == "approved")).one()
    product = db.session.get(Product, product_id)
    if product is None:
        return
    product.rating_count = int(count)
    product.rating_average = stored_average(int(total), int(count)) if count else None
    db.session.flush()


def stored_average(total: int, count: int) -> Decimal:
    """The average of `count` ratings adding up to `total`, as products.rating_average keeps it:
    two decimals (the API's), nearest to the exact average, but never across the point at
    which the pages' one decimal turns (templating.rating, half up). 169 in 49 ratings is
    3.4490 to four: kept 3.45, the pages wrote "3.5" and four stars where the exact average is
    3.4 and three; it is kept 3.44 (migration 0025 corrected the averages kept before)."""
    exact = Decimal(total) / Decimal(count)
    kept = exact.quantize(Decimal("0.01"), ROUND_HALF_UP)
    if kept.quantize(Decimal("0.1"), ROUND_HALF_UP) != exact.quantize(Decimal("0.1"),
                                                                      ROUND_HALF_UP):
        kept -= Decimal("0.01")  # kept ends in 5 above an exact average below it
    return kept


# A page of a product's approved reviews with their authors' names, newest first: a plain read
# (services.reads) on the product page, the shop's most visited page once a product has
# reviews (through the ORM it cost more than the rest of the page).
_APPROVED_COUNT_SQL = ("SELECT count(*) FROM reviews r "
                       "WHERE r.product_id = :product_id AND r.status = :status")
_APPROVED_PAGE_SQL = """SELECT r.id, r.rating, r.title, r.body, r.created_at, u.name
FROM reviews r JOIN users u ON u.id = r.user_id
WHERE r.product_id = :product_id AND r.status = :status
ORDER BY r.created_at DESC, r.id DESC LIMIT {limit} OFFSET {offset}"""


def _time(value: datetime | str) -> datetime:
    """A DATETIME as the driver gives it (text on SQLite), naive UTC as the models keep it."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def approved_for_product(product_id: int, page: int = 1, per_page: int = PER_PAGE,
                         total: int | None = None) -> ReviewPage:
    """A product's approved reviews, newest first. A caller that knows how many there are
    (the product's rating_count, kept by this service) passes `total`: no count query, and
    none at all for a product without reviews."""
    page = max(1, page)
    params = {"product_id": int(product_id), "status": "approved"}
    if total is None:
        total = int(reads.rows(_APPROVED_COUNT_SQL, params)[0][0])
    if (page - 1) * int(per_page) >= total:
        # No reviews, or a page past the last: nothing to read (and no offset beyond what a
        # database accepts, which a page number in the address could ask for).
        return ReviewPage(items=[], page=page, per_page=per_page, total=total)
    found = reads.rows(_APPROVED_PAGE_SQL.format(limit=int(per_page),
                                                 offset=(page - 1) * int(per_page)), params)
    items = [ReviewView(id=review_id, rating=rating, title=title, body=body,
                        author=display_name(name), created_at=_time(created_at))
             for review_id, rating, title, body, created_at, name in found]
    return ReviewPage(items=items, page=page, per_page=per_page, total=total)


def panel(product_id: int, user_id: int | None, approved: int | None = None) -> ReviewPanel:
    """The product page's review section for this shopper: the newest approved reviews
    (`approved`: their number when the caller knows it, see approved_for_product)."""
    allowed, reason = can_review(user_id, product_id)
    return ReviewPanel(reviews=approved_for_product(product_id, total=approved),
                       can_review=allowed, reason=reason)


# What the account page offers to review, found from the customer's own orders (a few rows by
# the (user_id, created_at) index), then their lines and products by key. `+p.active` is no
# column for SQLite's planner: on `p.active` it started from the catalogue's active products
# instead and looked each one up in order_lines (2 ms at 10,000 products, growing with them).
# The account page suggests products from the customer's latest purchases only: all of them
# made a customer with 5,000 orders wait a second for the page (a scale audit). Any product
# bought can still be reviewed from its page (can_review).
RECENT_ORDERS = 100
_REVIEWABLE_SQL = ("SELECT p.id, p.slug, p.name FROM "
                   "(SELECT id, created_at FROM orders WHERE user_id = :user_id AND status IN ("
                   + ", ".join(f"'{status}'" for status in PURCHASED_STATUSES) + ") "
                   "ORDER BY created_at DESC, id DESC LIMIT {recent}) o "
                   "JOIN order_lines l ON l.order_id = o.id "
                   "JOIN products p ON p.id = l.product_id "
                   "WHERE +p.active = :active AND p.id NOT IN "
                   "(SELECT r.product_id FROM reviews r WHERE r.user_id = :user_id) "
                   "GROUP BY p.id, p.slug, p.name "
                   "ORDER BY max(o.created_at) DESC, p.id LIMIT {limit}")


def reviewable_products(user_id: int, limit: int = 20) -> list[Reviewable]:
    """Products the user bought (paid orders) and has not reviewed, for the account page:
    from their RECENT_ORDERS latest paid orders, the latest bought first."""
    found = reads.rows(_REVIEWABLE_SQL.format(limit=int(limit), recent=int(RECENT_ORDERS)),
                       {"user_id": int(user_id), "active": True})
    return [Reviewable(product_id=product_id, slug=slug, name=name)
            for product_id, slug, name in found]


def pending(page: int = 1, per_page: int = 50) -> tuple[list[Review], int]:
    """Reviews waiting for a decision, oldest first (for the back office)."""
    total = db.session.execute(select(func.count(Review.id))
                               .where(Review.status == "pending")).scalar_one()
    items = list(db.session.execute(
        select(Review).where(Review.status == "pending").order_by(Review.created_at, Review.id)
        .limit(per_page).offset((max(1, page) - 1) * per_page)).scalars())
    return items, total
