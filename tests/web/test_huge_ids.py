"""A record id beyond any database id, in a URL or a form field, names nothing: the page
answers as for any unknown id (404, or the form's message), never 500. SQLite cannot even bind
a number beyond 64 bits, so such an id used to fail the query."""
from __future__ import annotations

import pytest

from shop.extensions import db
from shop.models import CartLine, Review, User
from tests import factories as f
from tests.conftest import csrf_token
from tests.services.test_reviews import buy
from tests.web.admin_support import login_staff

HUGE = str(10**25)


@pytest.fixture
def mug(app):
    return f.product("Mug", price="12.00", stock=5, slug="mug")


@pytest.mark.parametrize("path", [
    f"/cart/lines/{HUGE}/update", f"/cart/lines/{HUGE}/remove",
    f"/account/addresses/{HUGE}/edit", f"/account/addresses/{HUGE}/delete",
    f"/account/addresses/{HUGE}/default", f"/account/tokens/{HUGE}/revoke",
])
def test_a_huge_id_in_a_shopper_url_is_not_found(client, auth, path):
    f.user("customer@example.com")
    auth.login()
    token = csrf_token(client, "/account")
    assert client.post(path, data={"csrf_token": token, "quantity": "1"}).status_code == 404
    if path.endswith("/edit"):
        assert client.get(path).status_code == 404


def test_adding_a_huge_variant_id_says_the_option_does_not_exist(client, mug):
    token = csrf_token(client, "/products")
    response = client.post("/cart/add", data={"variant_id": HUGE, "quantity": "1",
                                              "csrf_token": token},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "That product option does not exist." in response.get_data(as_text=True)
    assert db.session.query(CartLine).count() == 0


def test_a_huge_saved_address_id_at_checkout_uses_the_typed_address(client, auth, mug):
    f.user("customer@example.com")
    auth.login()
    token = csrf_token(client, "/products")
    client.post("/cart/add", data={"variant_id": f.variant_of(mug).id, "quantity": "1",
                                   "csrf_token": token})
    response = client.post("/checkout", data={
        **f.ADDRESS, "saved_address_id": HUGE, "shipping_method": "standard",
        "payment_method": "manual", "csrf_token": csrf_token(client, "/checkout")})
    assert response.status_code == 303 and response.headers["Location"].endswith("/review")
    assert "12 Analytical St" in client.get("/checkout/review").get_data(as_text=True)


@pytest.mark.parametrize("path,data", [
    (f"/admin/order/transition/{HUGE}", {"to_status": "paid"}),
    (f"/admin/review/decide/{HUGE}", {"decision": "approve"}),
    (f"/admin/customer/active/{HUGE}", {"active": "0"}),
])
def test_a_huge_id_in_a_back_office_url_is_not_found(client, auth, path, data):
    login_staff(auth, "admin")
    token = csrf_token(client, "/admin/order/")
    assert client.post(path, data={"csrf_token": token, **data}).status_code == 404


def test_bulk_actions_with_a_huge_row_id_change_only_the_real_rows(client, auth, mug):
    login_staff(auth, "admin")
    buyer = f.user("buyer@example.com", name="Ada Lovelace")
    buy(buyer, mug)
    from shop.services import reviews

    review = reviews.submit(buyer.id, mug.id, 5, "Lovely")
    token = csrf_token(client, "/admin/review/")
    response = client.post("/admin/review/action/", data={
        "csrf_token": token, "action": "approve", "rowid": [HUGE, str(review.id)]})
    assert response.status_code == 302
    response = client.post("/admin/customer/action/", data={
        "csrf_token": token, "action": "deactivate", "rowid": [HUGE, str(buyer.id)]})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Review, review.id).status == "approved"
    assert db.session.get(User, buyer.id).active is False
