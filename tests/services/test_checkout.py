"""place_order, the stock and coupon rules of SPEC section 4, and the order state machine.
The concurrency tests use threads, each with its own app context and so its own session and
connection; on MySQL (TEST_DATABASE_URL) they show real row locking."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Coupon, CouponUse, Order, OrderLine, Payment, StockAdjustment, Variant
from shop.services import cart as carts
from shop.services import checkout, coupons, orders
from shop.services.cart import CartOwner
from shop.services.checkout import CheckoutRequest
from shop.services.errors import (
    CartChanged,
    CartEmpty,
    CouponUsedUp,
    InvalidTransition,
    OutOfStock,
    ValidationError,
)
from shop.services.orders import Actor
from tests import factories as f
from tests.concurrency import raised, run_concurrently

STAFF = Actor(None, "staff@test")


def guest_cart(variant_id: int, quantity: int = 1, coupon: str | None = None) -> CartOwner:
    owner = CartOwner(token=CartOwner.new_guest_token())
    carts.add_item(owner, quantity, variant_id=variant_id)
    if coupon:
        carts.apply_coupon(owner, coupon)
    return owner


def request(email: str = "buyer@example.com", **kw) -> CheckoutRequest:
    return CheckoutRequest(email=email, shipping_address=dict(f.ADDRESS), **kw)


def assert_stock_invariant() -> None:
    """Units received = units on hand + units in orders neither cancelled nor refunded."""
    for variant in db.session.execute(select(Variant)).scalars():
        received = db.session.execute(
            select(func.coalesce(func.sum(StockAdjustment.delta), 0)).where(
                StockAdjustment.variant_id == variant.id
            )
        ).scalar_one()
        held = db.session.execute(
            select(func.coalesce(func.sum(OrderLine.quantity), 0))
            .join(Order)
            .where(
                OrderLine.variant_id == variant.id, Order.status.not_in(("cancelled", "refunded"))
            )
        ).scalar_one()
        assert variant.stock_quantity >= 0
        assert received == variant.stock_quantity + held, variant.sku


def test_place_order_snapshots_lines_and_takes_stock(app, outbox):
    item = f.product("Lamp", price="19.99", stock=4)
    variant = f.variant_of(item)
    owner = guest_cart(variant.id, 2)
    order = checkout.place_order(owner, request())
    assert order.status == "pending" and order.number.startswith("SO-")
    assert [(x.sku, x.name, x.unit_price, x.quantity, x.line_total) for x in order.lines] == [
        (variant.sku, "Lamp", Decimal("19.99"), 2, Decimal("39.98"))
    ]
    assert order.subtotal == Decimal("39.98") and order.shipping == Decimal("5.00")
    assert order.total == order.subtotal - order.discount + order.shipping + order.tax
    assert order.events[0].to_status == "pending"
    assert db.session.get(Variant, variant.id).stock_quantity == 2
    assert carts.view(owner).is_empty
    payment = db.session.execute(select(Payment).where(Payment.order_id == order.id)).scalar_one()
    assert (payment.provider, payment.status, payment.amount) == ("manual", "pending", order.total)
    mails = list(outbox.glob("*.eml"))
    assert len(mails) == 1 and order.number in mails[0].read_text()
    assert_stock_invariant()


def test_prices_are_taken_from_the_server_not_the_cart(app):
    item = f.product("Vase", price="10.00", stock=5)
    variant = f.variant_of(item)
    owner = guest_cart(variant.id, 1)
    variant.price = Decimal("12.00")
    db.session.commit()
    order = checkout.place_order(owner, request())
    assert order.lines[0].unit_price == Decimal("12.00")


def test_cart_changed_since_review_is_refused(app):
    variant = f.variant_of(f.product("Bowl", price="10.00", stock=5))
    owner = guest_cart(variant.id, 1)
    reviewed = carts.view(owner).quote.total
    variant.price = Decimal("11.00")
    db.session.commit()
    with pytest.raises(CartChanged):
        checkout.place_order(owner, request(expected_total=reviewed))
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0
    assert db.session.get(Variant, variant.id).stock_quantity == 5


def test_a_cart_of_the_same_total_but_other_lines_than_reviewed_is_refused(app):
    """The reviewed cart's fingerprint (lines, quantities, unit prices, coupon, shipping)
    tells a changed cart of the same total (another size at the same price, the quantities
    moved between two lines of one price); it does not change with the lines' order."""
    tee = f.product("Tee", price="20.00", stock=5, variants=[
        {"options": {"size": "S"}, "sku": "TEE-S"}, {"options": {"size": "M"}, "sku": "TEE-M"}])
    small, medium = tee.variants
    owner = guest_cart(small.id, 2)
    carts.add_item(owner, 1, variant_id=medium.id)
    view = carts.view(owner)
    reviewed = checkout.cart_fingerprint(view.lines, view.coupon_code, "standard")
    assert reviewed == checkout.cart_fingerprint(view.lines[::-1], "", "standard")
    assert reviewed != checkout.cart_fingerprint(view.lines, "SAVE10", "standard")
    assert reviewed != checkout.cart_fingerprint(view.lines, None, "express")
    line = {line.variant_id: line.id for line in view.lines}
    carts.update_line(owner, line[small.id], 1)
    carts.update_line(owner, line[medium.id], 2)
    assert carts.view(owner).quote.total == view.quote.total
    with pytest.raises(CartChanged):
        checkout.place_order(owner, request(expected_total=view.quote.total,
                                            expected_cart=reviewed))
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0
    again = carts.view(owner)
    order = checkout.place_order(owner, request(
        expected_total=again.quote.total,
        expected_cart=checkout.cart_fingerprint(again.lines, again.coupon_code, "standard")))
    assert sorted((x.sku, x.quantity) for x in order.lines) == [("TEE-M", 2), ("TEE-S", 1)]


def test_bad_details_change_nothing(app):
    variant = f.variant_of(f.product("Cup", stock=3))
    owner = guest_cart(variant.id, 1)
    bad = CheckoutRequest(
        email="not-an-email",
        shipping_address={"name": "", "country": "XX"},
        shipping_method="teleport",
        payment_method="bitcoin",
    )
    with pytest.raises(ValidationError) as caught:
        checkout.place_order(owner, bad)
    assert {
        "email",
        "line1",
        "city",
        "postal_code",
        "country",
        "shipping_method",
        "payment_method",
        "name",
    } <= set(caught.value.errors)
    assert db.session.get(Variant, variant.id).stock_quantity == 3
    assert not carts.view(owner).is_empty


def test_empty_cart_cannot_be_ordered(app):
    with pytest.raises(CartEmpty):
        checkout.place_order(CartOwner(token="nobody"), request())


def test_out_of_stock_at_checkout_changes_nothing(app):
    a = f.variant_of(f.product("A", stock=5))
    b = f.variant_of(f.product("B", stock=1))
    owner = guest_cart(a.id, 2)
    carts.add_item(owner, 1, variant_id=b.id)
    b.stock_quantity = 0
    db.session.commit()
    with pytest.raises(OutOfStock):
        checkout.place_order(owner, request())
    assert db.session.get(Variant, a.id).stock_quantity == 5
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_the_refusal_names_the_item_that_ran_out_not_one_taken_before_it(app, monkeypatch):
    """The lines' stock is taken by one statement. When another checkout takes a line's
    last units after this one read the cart (a race only MySQL's row locks let happen), the
    statement may have taken the other lines already: the message still names the short
    item, and nothing of the order is kept."""
    if db.engine.dialect.name != "mysql":
        pytest.skip("needs TEST_DATABASE_URL (MySQL): SQLite has one writer at a time")
    import threading

    a = f.variant_of(f.product("A", stock=3))
    b = f.variant_of(f.product("B", stock=2))
    assert a.id < b.id
    owner = guest_cart(a.id, 2)
    carts.add_item(owner, 2, variant_id=b.id)
    read_cart = checkout.load_lines

    def read_then_lose_the_race(cart_id):
        lines = read_cart(cart_id)

        def other_checkout():
            with app.app_context():
                db.session.get(Variant, b.id).stock_quantity = 1
                db.session.commit()
                db.session.remove()

        thread = threading.Thread(target=other_checkout)
        thread.start()
        thread.join(timeout=30)
        return lines

    monkeypatch.setattr(checkout, "load_lines", read_then_lose_the_race)
    with pytest.raises(OutOfStock) as refused:
        checkout.place_order(owner, request())
    assert b.sku in refused.value.message and a.sku not in refused.value.message
    # Named by its SKU, as docs/API.md says and as the check before taking stock names it.
    assert refused.value.details == {"sku": b.sku, "variant_id": b.id, "requested": 2,
                                     "available": 1}
    db.session.rollback()
    assert db.session.get(Variant, a.id).stock_quantity == 3
    assert db.session.get(Variant, b.id).stock_quantity == 1
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_the_stock_of_every_line_is_taken_in_one_statement(app):
    """One UPDATE for the whole cart (one round trip and one statement for the database,
    however many lines), each line's own quantity taken."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    variants = [f.variant_of(f.product(name, stock=10)) for name in ("A", "B", "C")]
    owner = guest_cart(variants[2].id, 3)
    carts.add_item(owner, 1, variant_id=variants[0].id)
    carts.add_item(owner, 2, variant_id=variants[1].id)
    updates: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE VARIANTS"):
            updates.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        checkout.place_order(owner, request())
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(updates) == 1, updates
    assert [db.session.get(Variant, v.id).stock_quantity for v in variants] == [9, 8, 7]


def test_same_idempotency_key_gives_one_order(app):
    """The repeat is told apart from a new order (only a new one counts towards the orders
    rate limit, which the views apply)."""
    variant = f.variant_of(f.product("Mat", stock=5))
    owner = guest_cart(variant.id, 1)
    first = checkout.place(owner, request(idempotency_key="web:abc"))
    second = checkout.place(owner, request(idempotency_key="web:abc"))
    assert (first.new, second.new) == (True, False)
    assert first.order.id == second.order.id
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1
    assert db.session.get(Variant, variant.id).stock_quantity == 4


def test_same_key_after_the_cart_filled_again_gives_the_first_order_and_keeps_the_cart(app):
    """The order insert refuses the key; the first order is the answer; nothing is taken."""
    mat = f.variant_of(f.product("Mat", stock=5))
    rug = f.variant_of(f.product("Rug", stock=5))
    owner = guest_cart(mat.id, 1)
    first = checkout.place_order(owner, request(idempotency_key="api:1:retry"))
    carts.add_item(owner, 2, variant_id=rug.id)
    again = checkout.place_order(owner, request(idempotency_key="api:1:retry"))
    assert again.id == first.id
    assert [line.sku for line in again.lines] == [mat.sku]
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1
    assert db.session.get(Variant, rug.id).stock_quantity == 5
    assert [line.quantity for line in carts.view(owner).lines] == [2]
    # A new key places the new cart.
    other = checkout.place_order(owner, request(idempotency_key="api:1:next"))
    assert other.id != first.id and [line.sku for line in other.lines] == [rug.sku]
    assert db.session.get(Variant, rug.id).stock_quantity == 3


def test_same_key_answers_with_the_order_even_when_the_cart_would_now_be_refused(app):
    """A retry after the stock ran out still finds the first order; the same cart without a
    key, or with a new key, is refused as the shopper's error."""
    lamp = f.variant_of(f.product("Lamp", stock=3))
    owner = guest_cart(lamp.id, 2)
    first = checkout.place_order(owner, request(idempotency_key="web:tok"))
    carts.add_item(owner, 1, variant_id=lamp.id)
    variant = db.session.get(Variant, lamp.id)
    variant.stock_quantity = 0
    db.session.commit()
    assert checkout.place_order(owner, request(idempotency_key="web:tok")).id == first.id
    with pytest.raises(OutOfStock):
        checkout.place_order(owner, request(idempotency_key="web:other"))
    with pytest.raises(OutOfStock):
        checkout.place_order(owner, request())
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


def test_thirty_buyers_for_five_units(app):
    variant = f.variant_of(f.product("Last Five", stock=5))
    owners = [guest_cart(variant.id, 1) for _ in range(30)]
    results = run_concurrently(
        app,
        [
            (lambda o=o, i=i: checkout.place_order(o, request(f"b{i}@example.com")).id)
            for i, o in enumerate(owners)
        ],
    )
    placed = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, OutOfStock)]
    assert len(placed) == 5, results
    assert len(refused) == 25, results
    assert db.session.get(Variant, variant.id).stock_quantity == 0
    assert_stock_invariant()


def test_coupon_total_limit_under_concurrency(app):
    f.coupon("THREE", "percent", "20", usage_limit=3)
    variant = f.variant_of(f.product("Poster", price="10.00", stock=100))
    owners = [guest_cart(variant.id, 1, coupon="three") for _ in range(20)]
    results = run_concurrently(
        app,
        [
            (lambda o=o, i=i: checkout.place_order(o, request(f"c{i}@example.com")).id)
            for i, o in enumerate(owners)
        ],
    )
    placed = [r for r in results if isinstance(r, int)]
    assert all(isinstance(r, (int, CouponUsedUp)) for r in results), results
    discounted = db.session.execute(
        select(func.count(Order.id)).where(Order.discount > 0)
    ).scalar_one()
    assert discounted == 3 == len(placed)
    assert db.session.execute(select(Coupon.times_used)).scalar_one() == 3
    assert db.session.execute(select(func.count(CouponUse.id))).scalar_one() == 3
    assert_stock_invariant()


def test_per_customer_limit_under_concurrency_for_a_guest_email(app):
    f.coupon("ONCE", "fixed", "5", per_customer_limit=1)
    variant = f.variant_of(f.product("Pen", price="10.00", stock=100))
    owners = [guest_cart(variant.id, 1, coupon="ONCE") for _ in range(8)]
    results = run_concurrently(
        app, [(lambda o=o: checkout.place_order(o, request("Same@Example.com")).id) for o in owners]
    )
    assert sum(isinstance(r, int) for r in results) == 1, results
    assert sum(isinstance(r, CouponUsedUp) for r in results) == 7, results
    assert db.session.execute(select(CouponUse.customer_key)).scalars().all() == [
        "email:same@example.com"
    ]


def customer_cart(user_id: int, variant_id: int, coupon: str | None = None) -> CartOwner:
    owner = CartOwner(user_id=user_id)
    carts.add_item(owner, 1, variant_id=variant_id)
    if coupon:
        carts.apply_coupon(owner, coupon)
    return owner


def test_a_per_customer_limit_follows_the_person_between_account_and_guest(app):
    """A customer who used a once-per-customer coupon could log out and use it again as a
    guest with the same email (and a guest, having used it, could register and use it again):
    uses counted by account id and by guest email apart. Both now count against the one
    person; another email is not affected."""
    f.coupon("ONCE", "fixed", "5", per_customer_limit=1)
    variant = f.variant_of(f.product("Pen", price="10.00", stock=100))
    ada = f.user("ada@example.com")
    checkout.place_order(customer_cart(ada.id, variant.id, "ONCE"), request("ada@example.com"))
    # As a guest with her email, in other capitals: refused at checkout, and at the cart when
    # the email is known.
    with pytest.raises(CouponUsedUp):
        checkout.place_order(guest_cart(variant.id, coupon="ONCE"), request(" ADA@example.com"))
    with pytest.raises(CouponUsedUp):
        coupons.validate("ONCE", Decimal("10"), email="Ada@Example.com")
    # A guest who used it, then registered.
    checkout.place_order(guest_cart(variant.id, coupon="ONCE"), request("bob@example.com"))
    bob = f.user("bob@example.com")
    with pytest.raises(CouponUsedUp):
        coupons.validate("ONCE", Decimal("10"), user_id=bob.id, email="bob@example.com")
    with pytest.raises(CouponUsedUp):
        checkout.place_order(customer_cart(bob.id, variant.id, "ONCE"), request("bob@example.com"))
    # Someone else still may.
    checkout.place_order(guest_cart(variant.id, coupon="ONCE"), request("cy@example.com"))
    assert sorted(db.session.execute(select(CouponUse.email)).scalars()) == [
        "ada@example.com", "bob@example.com", "cy@example.com"]


def test_a_per_customer_limit_survives_the_account_changing_its_email(app):
    """Uses were linked across account and guest through the account's current email only:
    a customer who used a once-per-customer coupon changed their email and used it again as
    a guest with the old one; a guest who used it registered with that email, changed it,
    and used it again as the account. Both are now one person's uses."""
    from shop.services import accounts

    f.coupon("ONCE", "fixed", "5", per_customer_limit=1)
    variant = f.variant_of(f.product("Pen", price="10.00", stock=100))
    ada = f.user("ada@example.com")
    checkout.place_order(customer_cart(ada.id, variant.id, "ONCE"), request("ada@example.com"))
    accounts.update_profile(ada.id, "Ada", "ada.new@example.com", f.PASSWORD)
    with pytest.raises(CouponUsedUp):
        checkout.place_order(guest_cart(variant.id, coupon="ONCE"), request("ada@example.com"))
    with pytest.raises(CouponUsedUp):  # her new email too, as a guest
        coupons.validate("ONCE", Decimal("10"), email="ada.new@example.com")

    checkout.place_order(guest_cart(variant.id, coupon="ONCE"), request("bob@example.com"))
    bob = accounts.register("Bob@Example.com", "a-long-enough-password", "Bob")
    accounts.update_profile(bob.id, "Bob", "bob.new@example.com", "a-long-enough-password")
    with pytest.raises(CouponUsedUp):  # at the cart, where no email is given
        customer_cart(bob.id, variant.id, "ONCE")
    with pytest.raises(CouponUsedUp):
        coupons.validate("ONCE", Decimal("10"), user_id=bob.id, email="bob.new@example.com")
    checkout.place_order(guest_cart(variant.id, coupon="ONCE"), request("cy@example.com"))
    assert db.session.execute(select(func.count(CouponUse.id))).scalar_one() == 3


def test_a_guest_use_under_an_accounts_email_stays_that_accounts_use(app):
    """A guest checked out with a once-per-customer coupon under the email of an existing
    account (its owner, not logged in): the use was recorded under the email alone, and once
    the account changed its email it used the coupon again. The use now names the account
    that has the email, as a guest's uses do once an account takes it. Fails on the old
    code."""
    from shop.services import accounts

    f.coupon("ONCE", "fixed", "5", per_customer_limit=1)
    variant = f.variant_of(f.product("Pen", price="10.00", stock=100))
    ada = f.user("ada@example.com")
    checkout.place_order(guest_cart(variant.id, coupon="ONCE"), request("Ada@Example.com"))
    accounts.update_profile(ada.id, "Ada", "ada.new@example.com", f.PASSWORD)
    with pytest.raises(CouponUsedUp):
        customer_cart(ada.id, variant.id, "ONCE")
    with pytest.raises(CouponUsedUp):
        coupons.validate("ONCE", Decimal("10"), user_id=ada.id, email="ada.new@example.com")
    assert db.session.execute(select(CouponUse.user_id)).scalars().all() == [ada.id]


def test_per_customer_limit_under_concurrency_for_an_account(app):
    """One customer racing from several sessions: the account id counts, not the email."""
    coupon = f.coupon("TWICE", "percent", "10", per_customer_limit=2)
    customer = f.user("racer@example.com")
    order_ids = []
    for _ in range(6):
        variant = f.variant_of(f.product(stock=5))
        owner = guest_cart(variant.id, 1)
        order_ids.append(checkout.place_order(owner, request("racer@example.com")).id)

    coupon_id, customer_id = coupon.id, customer.id

    def use(order_id: int):
        from shop.services.database import write_transaction

        with write_transaction():
            c = db.session.get(Coupon, coupon_id)
            coupons.record_use(c, order_id, customer_id, "racer@example.com")
        return order_id

    results = run_concurrently(app, [(lambda oid=oid: use(oid)) for oid in order_ids])
    assert sum(isinstance(r, int) for r in results) == 2, results
    assert db.session.execute(select(func.count(CouponUse.id))).scalar_one() == 2
    # Changing the account's email does not reset its uses.
    customer.email = "renamed@example.com"
    db.session.commit()
    with pytest.raises(CouponUsedUp):
        coupons.validate("TWICE", Decimal("100"), user_id=customer.id, email="renamed@example.com")


def test_double_submitted_place_order_creates_one_order(app):
    variant = f.variant_of(f.product("Clock", stock=10))
    owner = guest_cart(variant.id, 2)
    results = run_concurrently(
        app,
        [
            (lambda: checkout.place_order(owner, request(idempotency_key="web:double")).id)
            for _ in range(6)
        ],
    )
    ids = {r for r in results if isinstance(r, int)}
    assert len(ids) == 1, results
    assert all(isinstance(r, int) or isinstance(r, CartEmpty) for r in results), results
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1
    assert db.session.execute(select(func.count(Payment.id))).scalar_one() == 1
    assert db.session.get(Variant, variant.id).stock_quantity == 8
    assert_stock_invariant()


def test_state_machine_allows_only_listed_transitions(app):
    variant = f.variant_of(f.product(stock=5))
    order = checkout.place_order(guest_cart(variant.id, 1), request())
    with pytest.raises(InvalidTransition):
        orders.transition(order.id, "shipped", STAFF, carrier="UPS", tracking_number="1Z")
    with pytest.raises(ValidationError):
        orders.transition(order.id, "teleported", STAFF)
    orders.transition(order.id, "paid", STAFF)
    with pytest.raises(ValidationError):  # shipping needs carrier and tracking number
        orders.transition(order.id, "shipped", STAFF)
    orders.transition(order.id, "shipped", STAFF, carrier="UPS", tracking_number="1Z999")
    orders.transition(order.id, "delivered", STAFF)
    order = orders.load(order.number)
    assert [e.to_status for e in order.events] == ["pending", "paid", "shipped", "delivered"]
    assert order.shipment.tracking_number == "1Z999"
    assert order.payment.status == "succeeded" and order.paid_at is not None
    with pytest.raises(InvalidTransition):
        orders.transition(order.id, "cancelled", STAFF)


def test_cancel_releases_stock_and_coupon_exactly_once(app):
    f.coupon("ONE", "percent", "10", usage_limit=1)
    variant = f.variant_of(f.product(stock=5))
    order = checkout.place_order(guest_cart(variant.id, 3, coupon="ONE"), request())
    assert db.session.get(Variant, variant.id).stock_quantity == 2
    order_id, variant_id = order.id, variant.id
    results = run_concurrently(
        app, [(lambda: orders.transition(order_id, "cancelled", STAFF).status) for _ in range(5)]
    )
    assert results.count("cancelled") == 1, results
    assert sum(isinstance(r, InvalidTransition) for r in results) == 4, results
    # Each refusal says where the order is now and what it may become (API.md: details.allowed);
    # one that lost the race said "pending" and listed nothing.
    for refusal in (r for r in results if isinstance(r, InvalidTransition)):
        assert refusal.details["from"] == "cancelled" and refusal.details["allowed"] == [], \
            refusal.details
    assert db.session.get(Variant, variant_id).stock_quantity == 5
    assert db.session.execute(select(Coupon.times_used)).scalar_one() == 0
    assert_stock_invariant()


def test_refund_releases_stock_once(app):
    variant = f.variant_of(f.product(stock=5))
    order = checkout.place_order(guest_cart(variant.id, 2), request())
    orders.transition(order.id, "paid", STAFF)
    orders.transition(order.id, "refunded", STAFF)
    with pytest.raises(InvalidTransition):
        orders.transition(order.id, "refunded", STAFF)
    assert db.session.get(Variant, variant.id).stock_quantity == 5
    assert orders.load(order.number).payment.status == "refunded"
    assert_stock_invariant()


def test_guest_link_is_signed(app):
    variant = f.variant_of(f.product(stock=5))
    order = checkout.place_order(guest_cart(variant.id, 1), request())
    token = orders.guest_link_token(order)
    assert orders.check_guest_token(order.number, token)
    assert not orders.check_guest_token(order.number, token[:-2] + "xx")
    assert not orders.check_guest_token("SO-OTHER", token)


def test_order_numbers_are_unique(app):
    numbers = Counter(orders.new_number() for _ in range(2000))
    assert max(numbers.values()) == 1


def test_an_item_added_while_the_order_is_placed_is_ordered_or_stays_in_the_cart(app, outbox):
    """Another tab adds to the cart while the order is being placed: each unit ends up in the
    order or in the cart, never in neither (placing the order empties the cart it read)."""
    from functools import partial

    mug = f.variant_of(f.product("Mug", stock=50))
    tea_id = f.variant_of(f.product("Tea", stock=50)).id
    owner = guest_cart(mug.id)
    db.session.commit()
    jobs = [partial(carts.add_item, owner, 1, variant_id=tea_id) for _ in range(6)]
    jobs.insert(2, lambda: checkout.place_order(owner, request()).id)
    results = run_concurrently(app, jobs)
    assert raised(results) == []
    ordered = db.session.execute(select(func.coalesce(func.sum(OrderLine.quantity), 0)).where(
        OrderLine.variant_id == tea_id)).scalar_one()
    in_cart = sum(line.quantity for line in carts.view(owner).lines if line.variant_id == tea_id)
    assert ordered + in_cart == 6


@pytest.mark.mysql_only
def test_staff_setting_the_stock_count_is_exact_while_units_sell(app):
    """Staff set a variant's on-hand count (admin form, CSV import) while a checkout takes a
    unit. The count is read locked: a sale that commits before the staff's write is counted
    in it (the staff's number stands), and one that waits for it comes off afterwards. Read
    unlocked, a sale between the read and the write came off the staff's number too."""
    import threading

    from shop.services import inventory
    from shop.services.database import write_transaction

    variant = f.variant_of(f.product("Candle", stock=12))
    variant_id = variant.id
    db.session.commit()
    sold = threading.Event()

    def sell() -> None:
        with app.app_context():
            with write_transaction():
                inventory.reserve(variant_id, 1)
            db.session.remove()
            sold.set()

    real_adjust = inventory.adjust
    seller: list[threading.Thread] = []

    def adjust_after_a_sale(*args, **kwargs):
        # Between set_stock's read and its write: a checkout takes a unit (and commits, unless
        # the read holds the row).
        thread = threading.Thread(target=sell)
        thread.start()
        seller.append(thread)
        sold.wait(timeout=1.5)
        return real_adjust(*args, **kwargs)

    inventory.adjust = adjust_after_a_sale
    try:
        with write_transaction():
            inventory.set_stock(variant_id, 10, "count")
            # Asked before the staff's write commits: once it has, the waiting sale may commit
            # before this thread runs again (it did on a loaded machine).
            sold_before_the_write = sold.is_set()
    finally:
        inventory.adjust = real_adjust
    seller[0].join(timeout=30)
    assert sold.is_set()
    db.session.rollback()
    stock = db.session.execute(select(Variant.stock_quantity)
                               .where(Variant.id == variant_id)).scalar_one()
    # The staff's 10 stands if the sale came first; the sale comes off it if it came after.
    assert stock == (10 if sold_before_the_write else 9)
    assert not sold_before_the_write  # the locked read makes the sale wait


@pytest.mark.parametrize("line2", ["", "Flat 3"])
def test_the_confirmation_mail_puts_each_address_line_on_its_own_line(app, outbox, line2):
    """The text mail ran the address together ("12 Analytical StLondon N1 7AA", or
    "12 Analytical StFlat 3London ..."): the shop's Jinja drops the newline after a block tag."""
    variant = f.variant_of(f.product("Lamp", price="19.99", stock=4))
    owner = guest_cart(variant.id, 2)
    order = checkout.place_order(owner, CheckoutRequest(
        email="buyer@example.com", shipping_address=dict(f.ADDRESS, line2=line2)))
    text = next(outbox.glob("*.eml")).read_text()
    plain = text.split("Content-Type: text/plain", 1)[1].split("--=====", 1)[0]
    address = plain.split("Delivery to:\n", 1)[1].split("\n\n", 1)[0]
    assert address.splitlines() == ["Ada Lovelace", "12 Analytical St",
                                    *([line2] if line2 else []), "London N1 7AA",
                                    "United Kingdom"]
    assert f"2 x Lamp ({variant.sku}): $39.98" in plain
    assert "Total: $" + str(order.total) in plain
    # The HTML part names the country too, as the review page did (not the code "GB").
    html = text.split("Content-Type: text/html", 1)[1]
    assert "N1 7AA<br>United Kingdom" in html.replace("=\n", "")


def test_no_line_of_the_confirmation_mail_is_longer_than_mail_allows(app, outbox):
    """An address typed with '&' or '<' (each written &amp; or &lt; in the HTML part) made the
    HTML part's address one line of over 2,000 characters, sent as it was (7bit): a line of
    mail is at most 998 characters (RFC 5322), and mail servers refuse such a message or
    break the line. A part with a longer line now goes quoted-printable, whose lines are
    short; a mail reader shows the same text."""
    import email
    import email.policy

    variant = f.variant_of(f.product("Lamp", price="19.99", stock=4))
    checkout.place_order(guest_cart(variant.id), CheckoutRequest(
        email="buyer@example.com",
        shipping_address=dict(f.ADDRESS, line1="&" * 200, line2="<" * 200)))
    raw = next(outbox.glob("*.eml")).read_bytes()
    assert max(len(line.rstrip(b"\r")) for line in raw.split(b"\n")) <= 998
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    assert f"<br>{'&amp;' * 200}<br>{'&lt;' * 200}<br>" in html
    text = message.get_body(("plain",)).get_content()
    assert f"\n{'&' * 200}\n{'<' * 200}\n" in text


@pytest.mark.parametrize("currency", ["USD", "JPY"])
def test_the_placed_order_is_what_a_query_loads_without_reading_it_back(make_app, currency):
    """place_order makes the order and its lines from what it wrote instead of reading them
    back (a sixth of an order's cost). They must be what a query loads, column by column and
    in the same form (¥1,511 is loaded as 1511.00; MySQL keeps whole seconds), in the session
    as loaded, and their reading must cost no query."""
    from sqlalchemy import event, inspect

    app = make_app(CURRENCY=currency, TAX_RATE="0.08")
    with app.app_context():
        lamp = f.variant_of(f.product("Lamp", price="999", stock=9))
        vase = f.variant_of(f.product("Vase", price="10.50", stock=9))
        f.coupon("SAVE10")
        owner = guest_cart(lamp.id, 2, coupon="SAVE10")
        carts.add_item(owner, 1, variant_id=vase.id)
        billing = {**f.ADDRESS, "name": "Accounts Dept", "line1": "2 Other Road"}
        placed = checkout.place_order(owner, request(billing_address=billing,
                                                     idempotency_key="web:guard"))
        statements = []

        def count(*args) -> None:
            statements.append(args[2])

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            state = inspect(placed)
            assert state.persistent and not state.expired_attributes
            made = {c.key: getattr(placed, c.key) for c in Order.__table__.columns}
            lines = [{c.key: getattr(line, c.key) for c in OrderLine.__table__.columns}
                     for line in placed.lines]
            assert all(inspect(line).persistent for line in placed.lines)
            db.session.flush()  # nothing to write: the objects are as loaded, not new
            assert statements == []
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        loaded = dict(db.session.execute(select(Order.__table__).where(
            Order.__table__.c.id == placed.id)).mappings().one())
        loaded_lines = [dict(row) for row in db.session.execute(
            select(OrderLine.__table__).where(OrderLine.__table__.c.order_id == placed.id)
            .order_by(OrderLine.__table__.c.id)).mappings()]

        def same_form(row: dict) -> dict:
            return {key: (type(value).__name__, str(value)) for key, value in row.items()}

        assert same_form(made) == same_form(loaded)
        assert [same_form(line) for line in lines] == [same_form(row) for row in loaded_lines]
        assert len(lines) == 2 and made["coupon_code"] == "SAVE10"
        assert made["billing_address"]["name"] == "Accounts Dept"
