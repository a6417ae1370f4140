"""A shop in a zero-decimal currency (JPY) keeps, shows and charges whole yen: a 10% coupon
on ¥999 was ¥99.90 off, tax had fractions of a yen, the pages said "¥1,511.03" and Stripe
charged ¥1,511. Here the cart, the review, the order page, the mail, the API and Stripe all
say the same whole amount, and staff cannot enter a price with a fraction of a yen. The
Icelandic króna, which Stripe counts in hundredths, is kept in whole krónur too."""
from __future__ import annotations

import email
import email.policy
import re
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import pytest
from sqlalchemy import select

from shop.extensions import db
from shop.models import Coupon, Order, Variant
from shop.services import api_tokens
from shop.services.money import to_minor_units
from tests import factories as f
from tests.conftest import csrf_token
from tests.payments_helpers import buy, last_order, standin, stripe_settings
from tests.web.admin_support import login_staff, read_form, variant_prefix
from tests.web.api_support import ApiClient

__all__ = ["standin"]  # the fixture, imported for this module's tests

YEN = {"CURRENCY": "JPY", "TAX_RATE": "0.08", "SHIPPING_STANDARD": "500",
       "SHIPPING_EXPRESS": "1500", "FREE_SHIPPING_OVER": None}
# ¥999, 10% off (99.90, so ¥100), shipping ¥500, 8% tax on ¥1,399 (111.92, so ¥112).
EXPECTED = {"subtotal": 999, "discount": 100, "shipping": 500, "tax": 112, "total": 1511}
FRACTION_OF_A_YEN = re.compile(r"¥[0-9,]*\.[0-9]")


@pytest.fixture
def app(make_app, standin):
    application = make_app(**stripe_settings(standin, **YEN))
    with application.app_context():
        yield application


@pytest.fixture
def teapot(app):
    f.coupon("SAVE10", "percent", "10")
    return f.variant_of(f.product("Tetsubin Teapot", price="999", stock=5, slug="teapot"))


def mails(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(outbox.glob("*.eml"))]


def shown(html: str) -> str:
    """The page's text as one line, so amounts split over lines are found."""
    return re.sub(r"\s+", " ", html)


def assert_whole_yen(text: str) -> None:
    assert not FRACTION_OF_A_YEN.search(text), FRACTION_OF_A_YEN.search(text).group(0)
    for amount in ("¥999", "¥100", "¥500", "¥112", "¥1,511"):
        assert amount in text, amount


def test_the_order_is_priced_shown_and_mailed_in_whole_yen(client, teapot, outbox):
    response = buy(client, teapot.id, method="manual", coupon="SAVE10")
    assert response.status_code == 303, response.get_data(as_text=True)
    order = db.session.execute(select(Order)).scalar_one()
    assert {name: getattr(order, name) for name in EXPECTED} == {
        name: Decimal(value) for name, value in EXPECTED.items()}
    assert order.lines[0].unit_price == order.lines[0].line_total == Decimal(999)
    assert_whole_yen(shown(client.get(response.headers["Location"]).get_data(as_text=True)))
    (message,) = mails(outbox)
    for part in message.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            assert_whole_yen(shown(part.get_content()))


def test_the_cart_and_the_review_show_whole_yen(client, teapot):
    client.post("/cart/add", data={"variant_id": teapot.id, "quantity": 1,
                                   "csrf_token": csrf_token(client, "/products")})
    client.post("/cart/coupon", data={"code": "SAVE10", "csrf_token": csrf_token(client, "/cart")})
    cart = shown(client.get("/cart").get_data(as_text=True))
    assert not FRACTION_OF_A_YEN.search(cart) and "¥1,511" in cart and "¥100" in cart
    details = {"csrf_token": csrf_token(client, "/checkout"), "email": "ada@example.com",
               "shipping_method": "standard", "payment_method": "manual", **f.ADDRESS}
    assert client.post("/checkout", data=details).status_code == 303
    review = client.get("/checkout/review").get_data(as_text=True)
    assert_whole_yen(shown(review))
    assert Decimal(re.search(r'name="expected_total" value="([^"]*)"', review).group(1)) == 1511


def test_the_api_cart_and_order_are_whole_numbers(app, teapot):
    user = f.user("api@example.com")
    _record, token = api_tokens.create(user.id, "tests")
    api = ApiClient(app.test_client(), token)
    assert api.post("/api/v1/cart/items", json={"sku": teapot.sku, "quantity": 1}
                    ).status_code in (200, 201)
    # A coupon's minimum, in the refusal's details, in whole yen too (was "5000.00").
    f.coupon("BIGSPEND", kind="fixed", value="300", min_subtotal="5000")
    below = api.post("/api/v1/cart/coupon", json={"code": "BIGSPEND"})
    assert below.status_code == 409
    assert below.get_json()["error"]["details"]["min_subtotal"] == "5000"
    assert api.post("/api/v1/cart/coupon", json={"code": "SAVE10"}).status_code == 200
    cart = api.get("/api/v1/cart").get_json()
    assert (cart["currency"], cart["items"][0]["unit_price"], cart["discount"], cart["total"]) \
        == ("JPY", "999", "100", "1511")
    response = api.post("/api/v1/orders", json={
        "shipping_address": f.ADDRESS, "shipping_method": "standard", "payment_method": "manual"})
    assert response.status_code == 201, response.get_json()
    order = response.get_json()
    assert {name: order[name] for name in EXPECTED} == {
        name: str(value) for name, value in EXPECTED.items()}
    assert (order["lines"][0]["unit_price"], order["lines"][0]["line_total"]) == ("999", "999")
    assert api.get(f"/api/v1/orders/{order['number']}").get_json()["total"] == "1511"
    product = app.test_client().get("/api/v1/products/teapot").get_json()
    assert (product["price"], product["variants"][0]["price"]) == ("999", "999")


def test_a_card_order_charges_exactly_the_total_shown(client, standin, teapot):
    buy(client, teapot.id, coupon="SAVE10")
    order = last_order()
    assert order.total == Decimal(1511) and order.currency == "JPY"
    session = standin.sessions[order.payment.reference]
    assert session["currency"] == "jpy"
    assert session["amount_total"] == to_minor_units(order.total, "JPY") == 1511
    assert order.payment.amount == order.total


def test_admin_refuses_a_price_with_a_fraction_of_a_yen(client, auth, teapot):
    login_staff(auth)
    product = teapot.product
    url = f"/admin/product/edit/?id={product.id}"
    form = read_form(client.get(url).get_data(as_text=True))
    price = variant_prefix(form, teapot.sku) + "price"
    assert form[price] == "999"  # shown in whole yen, as typed
    form.update({price: "12.50", "csrf_token": csrf_token(client, url)})
    html = client.post(url, data=form).get_data(as_text=True)
    assert "JPY has no decimals: enter a whole amount such as 13." in html
    db.session.expire_all()
    assert db.session.get(Variant, teapot.id).price == Decimal(999)
    form.update({price: "1200", "csrf_token": csrf_token(client, url)})
    assert client.post(url, data=form).status_code == 302
    db.session.expire_all()
    assert db.session.get(Variant, teapot.id).price == Decimal(1200)


def test_admin_saves_a_whole_yen_compare_at_price_only_above_the_price(client, auth, teapot):
    """A compare-at price at or below the price was kept (the shop showed a "was" price
    lower than the price); in yen too it must be higher, or empty."""
    login_staff(auth)
    url = f"/admin/product/edit/?id={teapot.product.id}"
    form = read_form(client.get(url).get_data(as_text=True))
    compare = variant_prefix(form, teapot.sku) + "compare_at_price"
    form.update({compare: "999", "csrf_token": csrf_token(client, url)})
    html = client.post(url, data=form).get_data(as_text=True)
    assert "A compare-at price must be higher than the price" in html
    db.session.expire_all()
    assert db.session.get(Variant, teapot.id).compare_at_price is None
    form.update({compare: "1500", "csrf_token": csrf_token(client, url)})
    assert client.post(url, data=form).status_code == 302
    db.session.expire_all()
    assert db.session.get(Variant, teapot.id).compare_at_price == Decimal(1500)


def test_csv_import_refuses_a_price_with_a_fraction_of_a_yen(client, auth, teapot):
    login_staff(auth)
    content = ("product_slug,product_name,sku,price,compare_at_price\n"
               f"teapot,Tetsubin Teapot,{teapot.sku},12.50,1500.5\n")
    html = client.post("/admin/product/import", data={
        "csrf_token": csrf_token(client, "/admin/product/import"),
        "file": (BytesIO(content.encode()), "products.csv")},
        content_type="multipart/form-data").get_data(as_text=True)
    assert "price: JPY has no decimals: enter a whole amount such as 13." in html
    assert "compare_at_price: JPY has no decimals: enter a whole amount such as 1501." in html
    db.session.expire_all()
    assert db.session.get(Variant, teapot.id).price == Decimal(999)


def coupon_form(client, **fields) -> dict:
    data = {"csrf_token": csrf_token(client, "/admin/coupon/new/"), "code": "YEN500",
            "kind": "fixed", "value": "500", "min_subtotal": "", "starts_at": "",
            "ends_at": "", "usage_limit": "", "per_customer_limit": "", "active": "y"}
    return data | fields


def test_a_coupon_with_a_fraction_of_a_yen_is_refused_beside_the_field(client, auth, teapot):
    """¥12.50 off was kept, then rounded at checkout: staff saw one amount and shoppers got
    another. A percentage may still have decimals."""
    login_staff(auth)
    for fields, message in (
            ({"value": "12.50"}, "JPY has no decimals: enter a whole amount such as 13."),
            ({"min_subtotal": "2999.5"},
             "JPY has no decimals: enter a whole amount such as 3000.")):
        html = client.post("/admin/coupon/new/", data=coupon_form(client, **fields))
        assert message in html.get_data(as_text=True), fields
    assert db.session.execute(select(Coupon).where(Coupon.code != "SAVE10")).first() is None
    for fields in ({}, {"code": "HALF", "kind": "percent", "value": "12.5",
                        "min_subtotal": "3000"}):
        response = client.post("/admin/coupon/new/", data=coupon_form(client, **fields))
        assert response.status_code == 302, response.get_data(as_text=True)
    kept = {c.code: (c.value, c.min_subtotal) for c in db.session.execute(select(Coupon)).scalars()}
    assert kept["YEN500"] == (Decimal(500), None)
    assert kept["HALF"] == (Decimal("12.5"), Decimal(3000))


def test_csv_exports_write_whole_yen(client, auth, teapot):
    """The exports wrote "999.00": a spreadsheet showed sen that do not exist, and the amounts
    did not match the shop's pages."""
    buy(client, teapot.id, method="manual", coupon="SAVE10")
    login_staff(auth)
    products = client.get("/admin/product/export.csv").get_data(as_text=True)
    row = next(line for line in products.splitlines() if teapot.sku in line)
    assert ",999," in row and "999.00" not in products
    orders = client.get("/admin/order/export.csv").get_data(as_text=True)
    header, line = orders.lstrip("\ufeff").splitlines()[:2]
    values = dict(zip(header.split(","), line.split(","), strict=True))
    assert {k: values[k] for k in EXPECTED} == {k: str(v) for k, v in EXPECTED.items()}


@pytest.mark.parametrize("query,listed", [("min_price=999", True), ("min_price=998.5", True),
                                          ("min_price=999.01", False),
                                          ("max_price=998.99", False), ("min_price=", True)])
def test_the_api_reads_a_price_filter_in_yen_as_the_page_does(app, teapot, query, listed):
    """The API checks price filters with the page's rule (catalog.parse_filters): an amount
    with decimals is a bound in yen there too, and a bad one (a comma, more than cents) has
    the page's message (it had a regular expression)."""
    client = app.test_client()
    api = client.get(f"/api/v1/products?{query}")
    assert api.status_code == 200, api.get_json()
    assert ([item["slug"] for item in api.get_json()["items"]] == ["teapot"]) is listed
    assert ("Tetsubin Teapot" in client.get(f"/products?{query}").get_data(as_text=True)) \
        is listed
    for typed in ("12,50", "999.005"):
        bad = client.get(f"/api/v1/products?min_price={typed}")
        assert bad.status_code == 422
        message = bad.get_json()["error"]["details"]["fields"]["min_price"]
        assert f'<p id="min_price-error" class="field-error">{message}</p>' in client.get(
            f"/products?min_price={typed}").get_data(as_text=True)


KRONA = {"CURRENCY": "ISK", "TAX_RATE": "0.08", "SHIPPING_STANDARD": "500",
         "SHIPPING_EXPRESS": "1500", "FREE_SHIPPING_OVER": None}


def test_a_krona_shop_keeps_shows_and_charges_whole_kronur(make_app, standin):
    """The Icelandic króna has no minor unit, and Stripe (which counts ISK in hundredths)
    refuses an amount that is not whole krónur. A 10% coupon on 1,995 kr was 199.50 kr off,
    the tax 183.64 kr, the API said "2479.14", and every card order's payment page failed
    (Stripe out of reach, said the shop). Now: whole krónur, and Stripe is asked 247900."""
    shop = make_app(**stripe_settings(standin, **KRONA))
    with shop.app_context():
        f.coupon("SAVE10", "percent", "10")
        sweater = f.variant_of(f.product("Lopapeysa", price="1995", stock=5, slug="peysa"))
        user = f.user("api@example.com")
        _record, token = api_tokens.create(user.id, "tests")
        api = ApiClient(shop.test_client(), token)
        assert api.post("/api/v1/cart/items", json={"sku": sweater.sku, "quantity": 1}
                        ).status_code in (200, 201)
        assert api.post("/api/v1/cart/coupon", json={"code": "SAVE10"}).status_code == 200
        # 10% of 1,995 kr is 199.5: 200 kr; 8% tax on 2,295 kr (183.6): 184 kr.
        expected = {"subtotal": "1995", "discount": "200", "shipping": "500", "tax": "184",
                    "total": "2479"}
        cart = api.get("/api/v1/cart").get_json()
        assert {name: cart[name] for name in expected} == expected
        placed = api.post("/api/v1/orders", json={
            "shipping_address": f.ADDRESS, "shipping_method": "standard",
            "payment_method": "stripe"})
        assert placed.status_code == 201, placed.get_json()
        order = placed.get_json()
        assert {name: order[name] for name in expected} == expected
        stored = last_order()
        session = standin.sessions[stored.payment.reference]
        assert order["payment_url"] == session["url"]
        assert (session["currency"], session["amount_total"]) == ("isk", 247900)
