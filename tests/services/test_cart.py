"""Cart service: bounds, ownership, coupons, and the guest cart joining the customer's on login."""
from __future__ import annotations

import pytest

from shop.services import cart as carts
from shop.services.cart import CartOwner
from shop.services.errors import LineLimit, NotFound, OutOfStock
from tests import factories as f


def guest() -> CartOwner:
    return CartOwner(token=CartOwner.new_guest_token())


def test_add_by_sku_and_by_id_accumulates(app):
    variant = f.variant_of(f.product("Tea", price="4.50", stock=10))
    owner = guest()
    carts.add_item(owner, 2, sku=variant.sku)
    carts.add_item(owner, "3", variant_id=variant.id)
    view = carts.view(owner)
    assert [(line.sku, line.quantity) for line in view.lines] == [(variant.sku, 5)]
    assert str(view.quote.subtotal) == "22.50"


def test_line_maximum_and_stock_bound(app):
    variant = f.variant_of(f.product(stock=500))
    owner = guest()
    carts.add_item(owner, 99, variant_id=variant.id)
    with pytest.raises(LineLimit) as full:
        carts.add_item(owner, 1, variant_id=variant.id)
    assert (full.value.field, full.value.details["in_cart"]) == ("quantity", 99)
    scarce = f.variant_of(f.product(stock=2))
    with pytest.raises(OutOfStock) as caught:
        carts.add_item(owner, 3, variant_id=scarce.id)
    assert caught.value.details["available"] == 2


def test_inactive_products_cannot_be_added(app):
    variant = f.variant_of(f.product(active=False))
    with pytest.raises(NotFound):
        carts.add_item(guest(), 1, variant_id=variant.id)
    with pytest.raises(NotFound):
        carts.add_item(guest(), 1, sku="NO-SUCH-SKU")


def test_guest_cart_merges_into_customer_cart_capped_by_stock(app):
    customer = f.user()
    shared = f.variant_of(f.product("Shared", stock=6))
    only_guest = f.variant_of(f.product("Guest only", stock=5))
    mine = CartOwner(user_id=customer.id)
    carts.add_item(mine, 4, variant_id=shared.id)
    visitor = guest()
    carts.add_item(visitor, 5, variant_id=shared.id)
    carts.add_item(visitor, 2, variant_id=only_guest.id)
    f.coupon("HELLO")
    carts.apply_coupon(visitor, "hello")
    # 4 + 5 of "Shared" asked for, 6 in stock: the shopper is told (the caller says so).
    assert carts.merge_guest_cart(visitor.token, customer.id) == [("Shared", 6, "stock")]
    view = carts.view(mine)
    assert {(line.name, line.quantity) for line in view.lines} == {("Shared", 6),
                                                                   ("Guest only", 2)}
    assert view.coupon_code == "HELLO"
    assert carts.view(visitor).is_empty  # the guest cart is gone
    # A second merge changes nothing.
    assert carts.merge_guest_cart(visitor.token, customer.id) == []
    assert carts.view(mine).item_count == 8


def test_a_merge_over_the_line_maximum_is_reported_as_such(app):
    """60 + 60 of a variant with 118 in stock: the line holds 99 (MAX_LINE_QUANTITY) and 21
    units were dropped without a word, as only lines stock cut down were returned. Lines the
    line maximum cuts down are returned too, saying which limit held them."""
    customer = f.user()
    many = f.variant_of(f.product("Many", stock=118))
    fewer = f.variant_of(f.product("Fewer", stock=80))
    whole = f.variant_of(f.product("Whole", stock=70))
    mine = CartOwner(user_id=customer.id)
    visitor = guest()
    for variant in (many, fewer, whole):
        carts.add_item(mine, 60, variant_id=variant.id)
    for variant, quantity in ((many, 60), (fewer, 60), (whole, 5)):
        carts.add_item(visitor, quantity, variant_id=variant.id)
    # Many: 120 asked for, 118 in stock, 99 at most. Fewer: 120 asked for, 80 in stock (the
    # tighter limit is the one said). Whole: 65 of 70, all kept.
    assert sorted(carts.merge_guest_cart(visitor.token, customer.id)) == [
        ("Fewer", 80, "stock"), ("Many", 99, "line_limit")]
    view = carts.view(mine)
    assert {(line.name, line.quantity) for line in view.lines} == {
        ("Many", 99), ("Fewer", 80), ("Whole", 65)}


def test_a_merge_rolled_back_for_a_lock_wait_is_tried_again(app, monkeypatch):
    """MySQL gives up a row-lock wait after innodb_lock_wait_timeout (the read timeout less
    2 s, services.database) and rolls the statement back: a login whose cart merge queued that
    long behind another write answered 503, where every other cart write is tried again.
    The merge is tried again too, and merges once."""
    from sqlalchemy.exc import OperationalError

    customer = f.user()
    shared = f.variant_of(f.product("Shared", stock=6))
    visitor = guest()
    carts.add_item(visitor, 2, variant_id=shared.id)
    real = carts._get_or_create
    waits = []

    def lock_wait_once(owner):
        if not waits:
            waits.append(owner)
            raise OperationalError("SELECT ... FOR UPDATE", {},
                                   Exception(1205, "Lock wait timeout exceeded"))
        return real(owner)

    monkeypatch.setattr(carts, "_get_or_create", lock_wait_once)
    assert carts.merge_guest_cart(visitor.token, customer.id) == []
    assert len(waits) == 1
    view = carts.view(CartOwner(user_id=customer.id))
    assert [(line.name, line.quantity) for line in view.lines] == [("Shared", 2)]
    assert carts.view(visitor).is_empty


def test_login_merges_the_guest_cart(client, app):
    from tests.conftest import csrf_token

    f.user("merge@example.com")
    variant = f.variant_of(f.product("Kettle", stock=3))
    token = csrf_token(client, "/products")
    client.post("/cart/add", data={"variant_id": variant.id, "quantity": 2, "csrf_token": token})
    token = csrf_token(client, "/account/login")
    response = client.post("/account/login", data={
        "email": "MERGE@example.com ", "password": f.PASSWORD, "csrf_token": token})
    assert response.status_code == 303
    html = client.get("/cart").get_data(as_text=True)
    assert "Kettle" in html and '<span class="cart-count">(2)</span>' in html


@pytest.mark.parametrize("first", ["into its line", "as the first of the line", "into no cart yet"])
def test_simultaneous_adds_each_count(app, first):
    """A shopper's clicks on "Add to cart" that reach the shop at the same moment (two tabs, a
    double click, two workers) each add their unit: none is lost to another's read of the
    line, whether the line, or the cart, exists yet (on MySQL with real row locks; SQLite has
    one writer at a time)."""
    from functools import partial

    from sqlalchemy import select

    from shop.extensions import db
    from shop.models import CartLine
    from tests.concurrency import raised, run_concurrently

    variant = f.variant_of(f.product("Mug", stock=50))
    other = f.variant_of(f.product("Tea", stock=50))
    owner = guest()
    if first == "into its line":
        carts.add_item(owner, 1, variant_id=variant.id)
    elif first == "as the first of the line":
        carts.add_item(owner, 1, variant_id=other.id)
    variant_id, clicks = variant.id, 8
    db.session.commit()
    results = run_concurrently(app, [partial(carts.add_item, owner, 1, variant_id=variant_id)
                                     for _ in range(clicks)])
    assert raised(results) == []
    quantity = db.session.execute(select(CartLine.quantity).where(
        CartLine.variant_id == variant_id)).scalar_one()
    assert quantity == clicks + (1 if first == "into its line" else 0)


def test_adds_while_the_guest_cart_joins_the_customers_each_count(app):
    """Logging in (the guest's lines join the customer's cart, the guest's cart is deleted)
    while other tabs add the same item, as the guest and as the customer: no unit is lost,
    none deleted with the guest's cart."""
    from functools import partial

    from sqlalchemy import func, select

    from shop.extensions import db
    from shop.models import CartLine
    from tests.concurrency import raised, run_concurrently

    variant = f.variant_of(f.product("Mug", stock=90))
    customer = CartOwner(user_id=f.user("merge@example.com").id)
    visitor = guest()
    carts.add_item(customer, 1, variant_id=variant.id)
    carts.add_item(visitor, 2, variant_id=variant.id)
    variant_id, user_id = variant.id, customer.user_id
    db.session.commit()
    jobs = [partial(carts.add_item, owner, 1, variant_id=variant_id)
            for _ in range(5) for owner in (customer, visitor)]
    jobs.insert(3, partial(carts.merge_guest_cart, visitor.token, user_id))
    assert raised(run_concurrently(app, jobs)) == []
    units = db.session.execute(select(func.sum(CartLine.quantity)).where(
        CartLine.variant_id == variant_id)).scalar_one()
    assert units == 1 + 2 + 10


def test_a_line_removed_at_the_same_moment_is_not_found_not_an_error(app):
    """Tabs change one line at once, one removing it: each other change either comes first or
    finds no line (a clear "not in your cart"), never an error halfway through a write."""
    from functools import partial

    from shop.extensions import db
    from tests.concurrency import raised, run_concurrently

    variant = f.variant_of(f.product("Mug", stock=50))
    owner = guest()
    for _ in range(3):
        line_id = carts.add_item(owner, 2, variant_id=variant.id).id
        db.session.commit()
        jobs = [partial(carts.update_line, owner, line_id, n) for n in range(3, 9)]
        jobs.insert(2, partial(carts.remove_line, owner, line_id))
        jobs.append(partial(carts.remove_line, owner, line_id))
        errors = raised(run_concurrently(app, jobs))
        assert all(isinstance(e, NotFound) for e in errors), errors
        assert carts.view(owner).lines == []


def test_the_cart_read_in_one_plain_query_is_the_cart_the_orm_reads(app):
    """view() reads the cart and its lines with one plain query (services.reads); checkout reads
    them through the Session (load_lines). Both give the same lines: prices as exact Decimals
    (SQLite hands floats over), options and their label, images, stock, and what stands in the
    way of ordering (out of stock, fewer left, no longer sold), on SQLite and on MySQL."""
    from shop.extensions import db
    from shop.models import Product, Variant

    shirt = f.product("Linen Shirt", variants=[
        {"options": {"size": "M", "colour": "Sand"}, "price": "19.99", "stock": 5},
        {"options": {"size": "L", "colour": "Sand"}, "price": "21.10", "stock": 3}])
    mug = f.product("Mug", price="7.05", stock=4, image=None)
    poster = f.product("Poster", price="12.30", stock=6)
    owner = guest()
    carts.add_item(owner, 2, variant_id=f.variant_of(shirt, 0).id)
    carts.add_item(owner, 3, variant_id=f.variant_of(shirt, 1).id)
    carts.add_item(owner, 4, variant_id=f.variant_of(mug).id)
    carts.add_item(owner, 1, variant_id=f.variant_of(poster).id)
    db.session.get(Variant, f.variant_of(shirt, 1).id).stock_quantity = 0
    db.session.get(Variant, f.variant_of(mug).id).stock_quantity = 2
    db.session.get(Product, poster.id).active = False
    db.session.commit()
    db.session.remove()

    view = carts.view(owner)
    assert view.lines == carts.load_lines(view.id)
    assert [(line.name, line.variant_label, str(line.unit_price), str(line.line_total))
            for line in view.lines] == [("Linen Shirt", "M / Sand", "19.99", "39.98"),
                                        ("Linen Shirt", "L / Sand", "21.10", "63.30"),
                                        ("Mug", "", "7.05", "28.20"),
                                        ("Poster", "", "12.30", "12.30")]
    assert view.problems == ["Linen Shirt (L / Sand) is now out of stock; please remove it.",
                             "Only 2 of Mug left; please lower the quantity.",
                             "Poster is no longer sold; please remove it."]
    assert str(view.quote.subtotal) == "143.78"
    assert carts.view(guest()).id is None and carts.view(guest()).lines == []
