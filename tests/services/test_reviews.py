"""Reviews: only buyers (of a paid, not cancelled or refunded order) review, once per product;
reviews wait for approval; the product's average and count follow the approved ones."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Order, Product, Review
from shop.services import cart as carts
from shop.services import checkout, orders, reviews
from shop.services.cart import CartOwner
from shop.services.checkout import CheckoutRequest
from shop.services.errors import Forbidden, NotFound, ValidationError
from shop.services.orders import Actor
from tests import factories as f

STAFF = Actor(None, "staff@test")
# The transitions that bring a new (pending) order to each status.
PATHS = {"pending": [], "paid": ["paid"], "processing": ["paid", "processing"],
         "shipped": ["paid", "shipped"], "delivered": ["paid", "shipped", "delivered"],
         "cancelled": ["cancelled"], "refunded": ["paid", "refunded"]}


def buy(user, *products: Product, status: str = "paid") -> Order:
    """A real purchase: the user's cart, place_order, then the state machine to `status`."""
    owner = CartOwner(user_id=user.id)
    for product in products:
        carts.add_item(owner, 1, variant_id=f.variant_of(product).id)
    order = checkout.place_order(owner, CheckoutRequest(email=user.email,
                                                        shipping_address=dict(f.ADDRESS)))
    for step in PATHS[status]:
        extra = {"carrier": "UPS", "tracking_number": "1Z999"} if step == "shipped" else {}
        orders.transition(order.id, step, STAFF, **extra)
    return db.session.get(Order, order.id)


def rating_of(product: Product) -> tuple[Decimal | None, int]:
    db.session.expire_all()
    fresh = db.session.get(Product, product.id)
    return fresh.rating_average, fresh.rating_count


@pytest.fixture
def mug(app):
    return f.product("Stoneware Mug", price="12.50", stock=50, slug="stoneware-mug")


def test_a_guest_must_log_in(app, mug):
    assert reviews.can_review(None, mug.id) == (False, "login")


@pytest.mark.parametrize("status,allowed", [
    ("pending", False), ("cancelled", False), ("refunded", False),
    ("paid", True), ("processing", True), ("shipped", True), ("delivered", True)])
def test_only_a_paid_purchase_counts(app, mug, status, allowed):
    customer = f.user()
    buy(customer, mug, status=status)
    assert reviews.can_review(customer.id, mug.id) == (
        (True, None) if allowed else (False, "not_bought"))


def test_buying_another_product_does_not_count(app, mug):
    customer = f.user()
    buy(customer, f.product("Linen Towel"))
    assert reviews.can_review(customer.id, mug.id) == (False, "not_bought")
    with pytest.raises(Forbidden) as info:
        reviews.submit(customer.id, mug.id, 5, "Great", "Love it")
    assert info.value.code == "not_bought"
    assert db.session.execute(select(func.count(Review.id))).scalar_one() == 0


def test_a_buyer_reviews_once_and_it_waits_for_approval(app, mug):
    customer = f.user()
    buy(customer, mug)
    review = reviews.submit(customer.id, mug.id, "4", "  Solid   mug ", "Keeps coffee warm.")
    assert (review.status, review.rating, review.title) == ("pending", 4, "Solid mug")
    assert reviews.can_review(customer.id, mug.id) == (False, "pending")
    assert reviews.approved_for_product(mug.id).items == []
    assert rating_of(mug) == (None, 0)

    with pytest.raises(Forbidden) as info:
        reviews.submit(customer.id, mug.id, 1, "Again", "")
    assert info.value.code == "sent"  # one waits already
    # Buying it again does not give a second review.
    buy(customer, mug)
    with pytest.raises(Forbidden):
        reviews.submit(customer.id, mug.id, 1, "Again", "")
    assert db.session.execute(select(func.count(Review.id))).scalar_one() == 1


@pytest.mark.parametrize("rating,title,body,field", [
    (0, "Fine", "", "rating"), (6, "Fine", "", "rating"), ("five", "Fine", "", "rating"),
    (None, "Fine", "", "rating"), (True, "Fine", "", "rating"), (3.5, "Fine", "", "rating"),
    (3, "", "", "title"), (3, "   ", "", "title"), (3, "x" * 121, "", "title"),
    (3, ["list"], "", "title"), (3, "Fine", "y" * 5001, "body"), (3, "Fine", 42, "body")])
def test_bad_input_names_the_field_and_changes_nothing(app, mug, rating, title, body, field):
    customer = f.user()
    buy(customer, mug)
    with pytest.raises(ValidationError) as info:
        reviews.submit(customer.id, mug.id, rating, title, body)
    assert field in info.value.errors
    assert reviews.can_review(customer.id, mug.id) == (True, None)


def test_unknown_or_inactive_product(app, mug):
    customer = f.user()
    hidden = f.product("Hidden", active=False)
    with pytest.raises(NotFound):
        reviews.submit(customer.id, hidden.id, 5, "Nice", "")
    with pytest.raises(NotFound):
        reviews.submit(customer.id, 999_999, 5, "Nice", "")


def test_approval_publishes_and_updates_the_average(app, mug, monkeypatch):
    changed = []
    monkeypatch.setattr(reviews.cache, "catalog_changed", lambda: changed.append(True))
    ratings = [5, 4, 4]
    ids = []
    for n, value in enumerate(ratings):
        customer = f.user(name=f"Ada Lovelace{n}")
        buy(customer, mug)
        ids.append(reviews.submit(customer.id, mug.id, value, f"Review {n}", "Body").id)

    reviews.approve(ids[0])
    assert rating_of(mug) == (Decimal("5.00"), 1)
    reviews.approve(ids[1])
    reviews.approve(ids[2])
    assert rating_of(mug) == (Decimal("4.33"), 3)
    assert len(changed) == 3

    page = reviews.approved_for_product(mug.id)
    assert page.total == 3 and {r.title for r in page.items} == {"Review 0", "Review 1",
                                                                 "Review 2"}
    assert page.items[0].author.startswith("Ada L")
    assert reviews.can_review(customer.id, mug.id) == (False, "reviewed")  # the last author

    # Rejecting an approved review takes it off the page and out of the average.
    reviews.reject(ids[0])
    assert rating_of(mug) == (Decimal("4.00"), 2)
    assert "Review 0" not in {r.title for r in reviews.approved_for_product(mug.id).items}
    reviews.reject(ids[1])
    reviews.reject(ids[2])
    assert rating_of(mug) == (None, 0)
    assert len(changed) == 6


def test_rejected_review_is_never_shown_and_cannot_be_redone(app, mug):
    customer = f.user()
    buy(customer, mug)
    review = reviews.submit(customer.id, mug.id, 1, "Awful", "Broke at once")
    reviews.reject(review.id)
    assert reviews.approved_for_product(mug.id).total == 0
    assert reviews.can_review(customer.id, mug.id) == (False, "rejected")


def test_moderating_a_missing_review(app):
    with pytest.raises(NotFound):
        reviews.approve(123456)


def test_approved_reviews_are_paged_newest_first(app, mug):
    ids = []
    for n in range(12):
        customer = f.user()
        buy(customer, mug)
        ids.append(reviews.submit(customer.id, mug.id, 3, f"Review {n}", "").id)
        reviews.approve(ids[-1])
    first = reviews.approved_for_product(mug.id, page=1, per_page=10)
    second = reviews.approved_for_product(mug.id, page=2, per_page=10)
    assert (first.total, first.pages, len(first.items), len(second.items)) == (12, 2, 10, 2)
    assert [r.id for r in first.items + second.items] == list(reversed(ids))


def test_display_name_keeps_authors_private():
    assert reviews.display_name("Ada Augusta Lovelace") == "Ada L."
    assert reviews.display_name("Ada") == "Ada"
    assert reviews.display_name("  ") == "A customer"


def test_reviewable_products_lists_purchases_not_yet_reviewed(app, mug):
    towel = f.product("Linen Towel")
    lamp = f.product("Desk Lamp")
    customer = f.user()
    buy(customer, mug, towel)
    buy(customer, lamp, status="cancelled")
    assert {p.name for p in reviews.reviewable_products(customer.id)} == {"Stoneware Mug",
                                                                         "Linen Towel"}
    reviews.submit(customer.id, mug.id, 5, "Great", "")
    assert [p.name for p in reviews.reviewable_products(customer.id)] == ["Linen Towel"]


def test_reviewable_products_are_found_from_the_customers_orders(app, mug):
    """The account page's query starts from the customer's orders and looks their products
    up by key: it never walks the catalogue (a plan that did cost 2 ms at 10,000 products and
    grew with them)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from shop.services import seed

    seed.bulk_products(500)  # enough rows for MySQL's optimizer to plan as on a catalogue
    customer = f.user()
    buy(customer, mug)
    captured = []

    def record(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert [p.name for p in reviews.reviewable_products(customer.id)] == ["Stoneware Mug"]
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    statement, parameters = next(c for c in captured if "order_lines" in c[0])
    conn = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                        parameters)]
        # The customer's latest orders by their index (a derived table of RECENT_ORDERS).
        assert "SEARCH orders USING INDEX ix_orders_user_created (user_id=?)" in plan, plan
        assert any(step.startswith("SEARCH p USING INTEGER PRIMARY KEY") for step in plan), plan
    else:
        plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
        # MariaDB picks its join order by the rows it has (here one order line): whatever
        # it starts from, the products are looked up by key, never scanned.
        products = next(row for row in plan if row["table"] == "p")
        assert products["type"] == "eq_ref" and products["key"] == "PRIMARY", plan


def test_the_account_page_suggests_products_from_the_latest_orders_only(app, mug, monkeypatch):
    """A customer with 5,000 orders waited a second for /account: the suggestions joined
    every order they ever placed (a scale audit). They come from the RECENT_ORDERS latest
    paid orders now; an older purchase can still be reviewed from its product's page."""
    towel, lamp = f.product("Linen Towel"), f.product("Desk Lamp")
    customer = f.user()
    buy(customer, mug)  # the oldest order
    buy(customer, towel)
    buy(customer, lamp)
    monkeypatch.setattr(reviews, "RECENT_ORDERS", 2)
    # (On MySQL the three orders may share their second: compared as a set.)
    assert {p.name for p in reviews.reviewable_products(customer.id)} == {"Desk Lamp",
                                                                         "Linen Towel"}
    assert reviews.can_review(customer.id, mug.id)[0]


def test_a_page_of_reviews_is_read_in_the_index_order(app, mug):
    """The product page's reviews, newest first (created_at DESC, id DESC), come from the
    (product_id, status, created_at, id) index in its order, read backwards: no sort of all of
    a product's approved reviews for every page (19 ms at 20,000 reviews with the (product_id,
    status) index alone), on SQLite and on MySQL."""
    from sqlalchemy import event, text
    from sqlalchemy.engine import Engine

    towel = f.product("Linen Towel")
    mug_id, towel_id = mug.id, towel.id
    db.session.commit()
    users = 600
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, email, password_hash, name, role, active, session_epoch, "
            "created_at) VALUES (:id, :email, 'x', 'Ada Lovelace', 'customer', 1, 0, "
            "'2026-01-01')"),
            [{"id": 1000 + n, "email": f"reader{n}@example.com"} for n in range(users)])
        conn.execute(text(
            "INSERT INTO reviews (product_id, user_id, rating, title, body, status, created_at) "
            "VALUES (:product_id, :user_id, 4, 'Good', '', :status, :created_at)"),
            [{"product_id": product_id, "user_id": 1000 + n,
              "status": ("approved", "approved", "pending", "rejected")[n % 4],
              "created_at": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d} 10:00:00"}
             for product_id in (mug_id, towel_id) for n in range(users)])
    captured = []

    def record(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        page = reviews.approved_for_product(mug_id, page=2, total=users // 2)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(page.items) == reviews.PER_PAGE
    statement, parameters = next(c for c in captured if "ORDER BY" in c[0])
    conn = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                        parameters)]
        assert ("SEARCH r USING INDEX ix_reviews_product_status_created "
                "(product_id=? AND status=?)") in plan, plan
        assert not any("TEMP B-TREE" in step for step in plan), plan
    else:
        plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
        assert plan[0]["table"] == "r", plan
        assert plan[0]["key"] == "ix_reviews_product_status_created", plan
        assert not any("filesort" in (row["Extra"] or "") or
                       "temporary" in (row["Extra"] or "") for row in plan), plan
