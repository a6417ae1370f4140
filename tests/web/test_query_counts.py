"""Catalogue pages cost a handful of SQL queries whatever the catalogue's size: at most six per
page, and the same number with a small and a large catalogue (no query per product, variant,
image, category or review), for an anonymous shopper, a guest with a cart and a customer.
Counted with a before_cursor_execute listener on every engine of the process (the primary, the
replica and the plain-read engines, whenever they are made); transaction control (BEGIN,
COMMIT, ROLLBACK) is not a query."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from shop.extensions import db
from shop.models import Product, Review
from shop.services import reviews
from tests import factories as f
from tests.conftest import AuthActions, csrf_token

MAX_QUERIES = 6
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
URLS = [
    "/",
    "/products",
    "/products?page=2&per_page=4",
    "/products?q=linen",
    "/products?q=linen+shirt",
    "/products?q=lin+shirt&page=2&per_page=2",
    "/products?q=linen+shirt&sort=price",
    "/products?category=clothing&min_price=5&max_price=500&in_stock=true&sort=-price",
    "/products?sort=name&in_stock=true",
    "/c/clothing",
    "/c/clothing?sort=price&min_price=1&page=1",
    "/c/shirts?q=shirt",
    "/p/linen-shirt-1",
    "/p/linen-shirt-1?variant=1",
]


@contextmanager
def counting(app) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(CONTROL):
            statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def add_products(start: int, count: int) -> None:
    """Products with several variants, images and reviews' numbers, in a two-level tree."""
    clothing = f.category("Clothing", slug=f"clothing-{start}") if start else \
        f.category("Clothing", slug="clothing")
    shirts = f.category("Shirts", parent=clothing, slug="shirts" if not start else
                        f"shirts-{start}")
    home = f.category("Home", slug=f"home-{start}")
    for i in range(start, start + count):
        category = (shirts, clothing, home)[i % 3]
        f.product(f"Linen Shirt {i}", slug=f"linen-shirt-{i}", category=category,
                  description="Soft linen, washed.", variants=[
                      {"options": {"size": size}, "price": f"{20 + i % 7}.00",
                       "stock": (i + n) % 4} for n, size in enumerate(("S", "M", "L"))])


def add_reviews(slug: str, count: int) -> None:
    """Approved reviews of a product (its page then lists them)."""
    product_id = db.session.execute(select(Product.id).where(Product.slug == slug)).scalar_one()
    for _ in range(count):
        author = f.user(name="Happy Buyer")
        review = Review(product_id=product_id, user_id=author.id, rating=4, title="Good",
                        body="Soft and well made.", status="pending")
        db.session.add(review)
        db.session.commit()
        reviews.approve(review.id)


def page_counts(app, client) -> dict[str, int]:
    # The categories just changed: the first page a worker serves after that reads the new
    # tree (one more query, once); every page after it reads only its revision.
    client.get("/")
    counts = {}
    for url in URLS:
        for headers in ({}, {"HX-Request": "true"}):
            with counting(app) as statements:
                response = client.get(url, headers=headers)
            assert response.status_code == 200, (url, response.status_code)
            counts[f"{url} {headers}"] = len(statements)
    return counts


def guest_with_cart(app):
    client = app.test_client()
    variant = f.variant_of(db.session.execute(
        select(Product).where(Product.slug == "linen-shirt-1")).scalar_one(), 1)
    response = client.post("/cart/add", data={"csrf_token": csrf_token(client, "/p/linen-shirt-1"),
                                              "variant_id": variant.id, "quantity": 1})
    assert response.status_code == 303
    return client


def customer_with_cart(app):
    client = guest_with_cart(app)
    f.user("reader@example.com", name="Ada Reader")
    AuthActions(client).login("reader@example.com")
    assert "Log out" in client.get("/cart").get_data(as_text=True)
    return client


@pytest.mark.parametrize("who", ["anonymous", "guest with a cart", "logged-in customer"])
def test_catalogue_pages_cost_the_same_few_queries_at_any_size(app, who):
    add_products(0, 6)
    make = {"anonymous": app.test_client, "guest with a cart": lambda: guest_with_cart(app),
            "logged-in customer": lambda: customer_with_cart(app)}[who]
    add_reviews("linen-shirt-1", 2)
    client = make()
    small = page_counts(app, client)
    add_products(100, 60)
    add_reviews("linen-shirt-1", 12)
    large = page_counts(app, client)
    assert large == small, "a page's queries grew with the catalogue"
    worst = max(small.items(), key=lambda kv: kv[1])
    assert worst[1] <= MAX_QUERIES, f"{worst[0]}: {worst[1]} queries"


def test_the_counter_sees_the_queries(app):
    """The listener counts what a page runs: a listing reads the categories and the cards."""
    add_products(0, 3)
    client = app.test_client()
    with counting(app) as statements:
        client.get("/products")
    assert len(statements) == 2
    assert any("FROM categories" in s for s in statements)
    assert any("FROM products" in s for s in statements)


def test_an_anonymous_catalogue_page_makes_no_orm_session(app, monkeypatch):
    """An anonymous shopper's catalogue pages are plain reads: none of them makes an ORM
    Session (making one, and closing it at teardown, cost more than reading the product),
    and each still shows what it read, a product's reviews too. A guest with a cart browses
    them without one as well (the header's count is a plain read), and the cart page too (the
    cart and its lines are one plain read)."""
    from flask import has_request_context

    from shop.services import routing

    add_products(0, 3)
    add_reviews("linen-shirt-2", 2)
    made = []
    real_init = routing.RoutingSession.__init__

    def init(self, *args, **kwargs):
        if has_request_context():  # not the test client's own rollback after the request
            made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(routing.RoutingSession, "__init__", init)
    client = app.test_client()
    for url, shown in (("/products", "Linen Shirt 2"), ("/c/clothing", "Linen Shirt 1"),
                       ("/p/linen-shirt-1", "Linen Shirt 1"), ("/", "Linen Shirt 0"),
                       ("/products?q=linen", "Linen Shirt 2"),
                       ("/p/linen-shirt-2", "Soft and well made.")):
        made.clear()
        with app.app_context():
            response = client.get(url)
        assert response.status_code == 200 and shown in response.get_data(as_text=True), url
        assert made == [], url
    monkeypatch.setattr(routing.RoutingSession, "__init__", real_init)
    guest = guest_with_cart(app)
    monkeypatch.setattr(routing.RoutingSession, "__init__", init)
    # The header's cart count is a plain read too: a guest with a cart browses the catalogue
    # without a Session.
    for url in ("/products", "/p/linen-shirt-2"):
        made.clear()
        with app.app_context():
            page = guest.get(url).get_data(as_text=True)
        assert '<span class="cart-count">(1)</span>' in page, url
        assert made == [], url
    # The cart page reads the cart and its lines with one plain read as well.
    made.clear()
    with app.app_context():
        assert "Linen Shirt 1" in guest.get("/cart").get_data(as_text=True)
    assert made == []
    # A page that writes has a Session (the check sees them).
    with app.app_context():
        token = csrf_token(guest, "/p/linen-shirt-2")
        variant = f.variant_of(db.session.execute(
            select(Product).where(Product.slug == "linen-shirt-2")).scalar_one(), 1)
        made.clear()
        assert guest.post("/cart/add", data={"csrf_token": token, "variant_id": variant.id,
                                             "quantity": 1}).status_code == 303
    assert made


def test_adding_to_the_cart_reads_what_it_names_in_one_query(app):
    """An htmx "Add to cart" into an existing line: the variant with its product (the answer
    names them), the cart, the line, the two updates, and the header's count. Reading the line
    back by Session.get refreshed the line, the variant and the product one query each, as the
    commit had expired them; then one query read them back after the commit (gone if another
    tab's change took the line at once)."""
    add_products(0, 2)
    client = guest_with_cart(app)
    variant_id = f.variant_of(db.session.execute(
        select(Product).where(Product.slug == "linen-shirt-1")).scalar_one(), 1).id
    token = csrf_token(client, "/p/linen-shirt-1")
    with counting(app) as statements:
        response = client.post("/cart/add", data={"csrf_token": token, "variant_id": variant_id,
                                                  "quantity": 1}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Added Linen Shirt 1" in response.get_data(as_text=True)
    assert len(statements) == 6, "\n".join(s[:90] for s in statements)


@pytest.mark.parametrize("url", ["/api/v1/products?per_page=4", "/api/v1/products?per_page=100",
                                 "/api/v1/products?q=linen&sort=price",
                                 "/api/v1/products/linen-shirt-1"])
def test_the_api_reads_products_in_full_with_plain_reads(app, monkeypatch, url):
    """The API's products in their full shape (variants, images, category) cost the page's
    query (a search reads its terms first), one query for every product's details at once and
    the tree's revision, whatever the page size, and no ORM Session."""
    from flask import has_request_context

    from shop.services import routing

    add_products(0, 6)
    add_products(100, 30)
    client = app.test_client()
    client.get("/api/v1/categories")  # the worker reads the new tree once
    made = []
    real_init = routing.RoutingSession.__init__

    def init(self, *args, **kwargs):
        if has_request_context():
            made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(routing.RoutingSession, "__init__", init)
    with counting(app) as statements, app.app_context():
        response = client.get(url)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    product = body["items"][0] if "items" in body else body
    assert product["variants"] and product["images"] and product["category"]
    assert len(statements) <= 4, statements
    assert made == []


def test_a_logged_in_customers_page_reads_the_user_without_a_transaction(app):
    """Flask-Login's user loader reads the account with one plain SELECT and puts the user in
    the request's Session as loaded: a logged-in customer's catalogue page begins no
    transaction (loading the user through the Session began one, and ended it at teardown),
    and the user is the Session's own object, so a view that changes it saves it."""
    from shop.models import User

    add_products(0, 2)
    client = customer_with_cart(app)
    begun = []

    def begin(conn):
        begun.append(conn)

    event.listen(Engine, "begin", begin)
    try:
        for url in ("/products", "/p/linen-shirt-1", "/"):
            begun.clear()
            with app.app_context(), counting(app) as statements:
                page = client.get(url).get_data(as_text=True)
            assert "Log out" in page and '<span class="cart-count">(1)</span>' in page, url
            assert begun == [], url
            assert sum("FROM users" in s for s in statements) == 1, url
    finally:
        event.remove(Engine, "begin", begin)
    with app.app_context():
        token = csrf_token(client, "/account")
        response = client.post("/account/profile", data={
            "csrf_token": token, "name": "Ada Renamed", "email": "reader@example.com"})
        assert response.status_code in (302, 303), response.get_data(as_text=True)[:300]
    db.session.expire_all()
    user = db.session.execute(select(User).where(User.email == "reader@example.com")).scalar_one()
    assert user.name == "Ada Renamed"


def test_a_customer_deactivated_while_logged_in_is_logged_out_on_the_next_page(app):
    from shop.models import User

    add_products(0, 2)
    client = customer_with_cart(app)
    with app.app_context():
        assert client.get("/account").status_code == 200
    user = db.session.execute(select(User).where(User.email == "reader@example.com")).scalar_one()
    user.active = False
    db.session.commit()
    db.session.remove()
    with app.app_context():
        response = client.get("/account")
    assert response.status_code in (302, 303) and "/account/login" in response.headers["Location"]
