"""Checkout through the pages: details, review, place order, confirmation, access to orders."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Order, Variant
from tests import factories as f
from tests.conftest import csrf_token

FORM = {"email": "guest@example.com", "name": "Ada Lovelace", "line1": "12 Analytical St",
        "line2": "", "city": "London", "region": "", "postal_code": "N1 7AA", "country": "GB",
        "phone": "", "shipping_method": "standard", "payment_method": "manual"}


@pytest.fixture
def lamp(app):
    return f.variant_of(f.product("Desk Lamp", price="40.00", stock=3, slug="desk-lamp"))


def fill_cart(client, variant_id, quantity=1):
    token = csrf_token(client, "/products")
    client.post("/cart/add", data={"variant_id": variant_id, "quantity": quantity,
                                   "csrf_token": token})


def review(client, **changes):
    data = dict(FORM, **changes)
    data["csrf_token"] = csrf_token(client, "/checkout")
    return client.post("/checkout", data=data)


def reviewed(client):
    """What the review page's "Place order" form would send."""
    page = client.get("/checkout/review").get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    total = re.search(r'name="expected_total" value="([^"]+)"', page).group(1)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return {"token": token, "expected_total": total, "csrf_token": csrf}


def place(client, form=None):
    form = form or reviewed(client)
    return (client.post("/checkout/place", data=form), form["token"], form["expected_total"],
            form["csrf_token"])


def test_guest_checkout_end_to_end(client, lamp, outbox):
    fill_cart(client, lamp.id, 2)
    assert review(client).status_code == 303
    page = client.get("/checkout/review").get_data(as_text=True)
    assert "guest@example.com" in page and "12 Analytical St" in page and "Place order" in page
    response, *_ = place(client)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert re.search(r"/orders/SO-[A-Z0-9]+\?token=", location)
    confirmation = client.get(location).get_data(as_text=True)
    order = db.session.execute(select(Order)).scalar_one()
    assert order.number in confirmation and "Awaiting payment" in confirmation
    assert order.email == "guest@example.com" and order.total == order.subtotal + order.tax
    assert db.session.get(Variant, lamp.id).stock_quantity == 1
    assert "(0)" in client.get("/").get_data(as_text=True)  # cart emptied


def test_missing_fields_are_named_and_kept(client, lamp):
    fill_cart(client, lamp.id)
    response = review(client, email="nope", line1="", city="", country="ZZ")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter a valid email address." in html
    assert "Enter the address line 1." in html and "Enter the city." in html
    assert "Choose a country" in html
    assert 'value="Ada Lovelace"' in html and 'value="nope"' in html  # kept what was typed
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_a_country_left_unchosen_stays_unchosen(client, lamp):
    """The form sent back with "Enter the country." shows no country chosen, as the shopper
    left it, not the United States the first visit preselects."""
    fill_cart(client, lamp.id)
    assert '<option value="US" selected>' in client.get("/checkout").get_data(as_text=True)
    response = review(client, country="")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<p id="country-error" class="field-error">Enter the country.</p>' in html
    assert re.search(r'<select id="country"[^>]*aria-invalid="true"', html)
    assert " selected>" not in html.split('<select id="country"')[1].split("</select>")[0]
    kept = review(client, country="FR", city="").get_data(as_text=True)
    assert '<option value="FR" selected>' in kept
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_shipping_and_payment_messages_belong_to_their_choices(client, lamp):
    """A method the shop does not offer (payment by card once Stripe is switched off) is said
    in the error slot its group of choices refers to."""
    fill_cart(client, lamp.id)
    response = review(client, shipping_method="teleport", payment_method="stripe")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    for key, message in (("shipping_method", "Choose standard or express shipping."),
                         ("payment_method", "Choose an available payment method.")):
        assert f'<fieldset class="has-error" aria-describedby="{key}-error">' in html
        assert f'<p id="{key}-error" class="field-error">{message}</p>' in html
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_double_submit_creates_one_order(client, lamp):
    fill_cart(client, lamp.id)
    review(client)
    first, token, total, csrf = place(client)
    second = client.post("/checkout/place", data={"token": token, "expected_total": total,
                                                  "csrf_token": csrf})
    assert second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


@pytest.mark.parametrize("total", ["sNaN", "NaN", "Infinity", "abc"])
def test_a_confirmed_total_that_is_no_amount_is_not_a_500(client, lamp, total):
    """A signalling NaN failed the comparison with the cart's total (500); like any text that
    is no amount, it is now not compared and the order is placed once."""
    fill_cart(client, lamp.id)
    review(client)
    form = reviewed(client) | {"expected_total": total}
    response, *_ = place(client, form)
    assert response.status_code == 303 and "/orders/SO-" in response.headers["Location"]
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


def test_cart_changed_since_review_sends_the_shopper_back(client, lamp):
    fill_cart(client, lamp.id)
    review(client)
    form = reviewed(client)
    variant = db.session.get(Variant, lamp.id)
    from decimal import Decimal

    variant.price = Decimal("45.00")
    db.session.commit()
    response, *_ = place(client, form)
    assert response.headers["Location"].endswith("/checkout/review")
    assert "changed since you reviewed it" in client.get("/checkout/review").get_data(as_text=True)
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_sold_out_between_review_and_order(client, lamp):
    fill_cart(client, lamp.id, 2)
    review(client)
    form = reviewed(client)
    variant = db.session.get(Variant, lamp.id)
    variant.stock_quantity = 1
    db.session.commit()
    response, *_ = place(client, form)
    assert response.headers["Location"].endswith("/cart")
    assert "Only 1 of Desk Lamp left" in client.get("/cart").get_data(as_text=True)
    assert db.session.get(Variant, lamp.id).stock_quantity == 1


def test_empty_cart_cannot_check_out(client, app):
    response = client.get("/checkout")
    assert response.status_code == 303 and response.headers["Location"].endswith("/cart")


def test_customer_checkout_uses_account_email_and_saves_address(client, auth, lamp):
    f.user("shopper@example.com")
    auth.login("shopper@example.com")
    fill_cart(client, lamp.id)
    review(client, email="someone-else@example.com", save_address="yes")
    response, *_ = place(client)
    order = db.session.execute(select(Order)).scalar_one()
    assert order.email == "shopper@example.com" and order.user_id is not None
    detail = client.get(f"/orders/{order.number}")  # the owner needs no token
    assert detail.status_code == 200
    from shop.models import Address

    assert db.session.execute(select(Address.line1)).scalar_one() == "12 Analytical St"


def test_orders_are_private(app, lamp):
    buyer, stranger = app.test_client(), app.test_client()
    fill_cart(buyer, lamp.id)
    review(buyer)
    response, *_ = place(buyer)
    number = re.search(r"/orders/([^?]+)", response.headers["Location"]).group(1)
    assert stranger.get(f"/orders/{number}").status_code == 404
    assert stranger.get(f"/orders/{number}?token=forged").status_code == 404
    assert stranger.get(response.headers["Location"]).status_code == 200  # the signed link


def test_staff_can_see_any_order(app, client, auth, lamp):
    buyer = app.test_client()
    fill_cart(buyer, lamp.id)
    review(buyer)
    response, *_ = place(buyer)
    number = re.search(r"/orders/([^?]+)", response.headers["Location"]).group(1)
    f.user("staff@example.com", role="staff")
    auth.login("staff@example.com")
    assert client.get(f"/orders/{number}").status_code == 200
