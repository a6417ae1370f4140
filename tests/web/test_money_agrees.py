"""One order's money is the same wherever it is shown: the cart page, the API's cart, the
checkout's review, the order page, the confirmation mail, the API's order, the back office's
order page and CSV export, the Stripe Checkout Session and the dashboard's revenue. Each case
prices a cart of several lines at awkward prices with one kind of coupon (33 % and 12.5 %
off, which round half up; an amount off larger than the cart; free shipping on express; a
minimum met to the cent) and tax on goods and shipping."""
from __future__ import annotations

import csv
import email
import email.policy
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from shop.extensions import db
from shop.models import Order
from shop.services import api_tokens
from shop.services.money import to_minor_units
from tests import factories as f
from tests.conftest import AuthActions, csrf_token
from tests.payments_helpers import standin, stripe_settings
from tests.web.admin_support import login_staff
from tests.web.api_support import ApiClient

__all__ = ["standin"]  # the fixture, imported for this module's tests

PARTS = ("subtotal", "discount", "shipping", "tax", "total")
# Several lines at prices that do not divide evenly: 1 x 9.99, 3 x 3.33, 2 x 3.39 = 26.76.
LINES = (("Mug", "9.99", 1), ("Spoon", "3.33", 3), ("Cloth", "3.39", 2))
DOLLARS = {"CURRENCY": "USD", "TAX_RATE": "0.08", "SHIPPING_STANDARD": "5.00",
           "SHIPPING_EXPRESS": "15.00", "FREE_SHIPPING_OVER": "50.00"}
YEN = {"CURRENCY": "JPY", "TAX_RATE": "0.08", "SHIPPING_STANDARD": "500",
       "SHIPPING_EXPRESS": "1500", "FREE_SHIPPING_OVER": None}

# (coupon: code, kind, value, minimum), shipping, payment, then the amounts worked by hand.
CASES = {
    # 33 % of 26.76 is 8.8308: 8.83; tax 8 % of 22.93 (1.8344): 1.83.
    "percent 33": (("P33", "percent", "33", None), "standard", "stripe",
                   ("26.76", "8.83", "5.00", "1.83", "24.76")),
    # 12.5 % of 26.76 is 3.345 exactly: half up, 3.35 (half even would say 3.34); tax 8 % of
    # 38.41 (3.0728): 3.07.
    "percent 12.5 half up": (("P125", "percent", "12.5", None), "express", "stripe",
                             ("26.76", "3.35", "15.00", "3.07", "41.48")),
    # 100.00 off a 26.76 cart takes 26.76 off; shipping and its tax are still paid.
    "fixed above the subtotal": (("BIG", "fixed", "100", None), "standard", "stripe",
                                 ("26.76", "26.76", "5.00", "0.40", "5.40")),
    # Free shipping on express too; 8 % of 26.76 (2.1408): 2.14.
    "free shipping on express": (("SHIPFREE", "free_shipping", "0", None), "express", "stripe",
                                 ("26.76", "0.00", "0.00", "2.14", "28.90")),
    # A minimum of exactly the subtotal is met.
    "minimum met to the cent": (("EDGE", "fixed", "5", "26.76"), "standard", "manual",
                                ("26.76", "5.00", "5.00", "2.14", "28.90")),
    "no coupon": (None, "standard", "stripe", ("26.76", "0.00", "5.00", "2.54", "34.30")),
}
YEN_CASES = {
    # 12.5 % of ¥2,676 is ¥334.5: half up, ¥335; 8 % of ¥2,841 (227.28): ¥227.
    "yen percent 12.5 half up": (("P125", "percent", "12.5", None), "standard", "stripe",
                                 ("2676", "335", "500", "227", "3068")),
    # 33 % of ¥2,676 is ¥883.08: ¥883; 8 % of ¥3,293 (263.44): ¥263.
    "yen percent 33 on express": (("P33", "percent", "33", None), "express", "manual",
                                  ("2676", "883", "1500", "263", "3556")),
}
YEN_LINES = (("Mug", "999", 1), ("Spoon", "333", 3), ("Cloth", "339", 2))
MONEY_TEXT = r"[$¥][0-9,]+(?:\.[0-9]{2})?"


def post_event(client, standin, event_type: str, obj: dict):
    """Stripe's webhook delivering one event, signed."""
    payload, signature = standin.event(event_type, obj)
    return client.post("/payments/stripe/webhook", data=payload, headers={
        "Stripe-Signature": signature, "Content-Type": "application/json"})


def amount(text: str) -> Decimal:
    """An amount as shown ("$1,234.50", "−$3.35", "¥1,511", "Free"), a discount's sign
    dropped."""
    text = re.sub(r"<[^>]+>", "", text).strip()
    return Decimal(0) if text == "Free" else Decimal(re.sub(r"[^0-9.]", "", text))


def key(label: str) -> str:
    return re.sub(r"<[^>]+>", "", label).strip().split()[0].rstrip(":,").lower()


def totals_of(html: str) -> dict[str, Decimal]:
    """The <dt>/<dd> pairs of a totals list (the cart, the review, the order page)."""
    found = {key(dt): amount(dd) for dt, dd in
             re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", html, re.S)}
    found.setdefault("discount", Decimal(0))
    return {part: found[part] for part in PARTS}


def admin_totals(html: str) -> dict[str, Decimal]:
    foot = html[html.index("<tfoot>"):html.index("</tfoot>")]
    found = {key(th): amount(td) for th, td in
             re.findall(r"<th[^>]*>(.*?)</th><td[^>]*>(.*?)</td>", foot, re.S)}
    found.setdefault("discount", Decimal(0))
    return {part: found[part] for part in PARTS}


def mail_totals(text: str) -> dict[str, Decimal]:
    found = {key(label): amount(value) for label, value in re.findall(
        r"^((?:Subtotal|Discount|Shipping|Tax|Total)\b[^\n]*?): (\S+)$", text, re.M)}
    found.setdefault("discount", Decimal(0))
    return {part: found[part] for part in PARTS}


def api_totals(body: dict, pattern: str) -> dict[str, Decimal]:
    for part in PARTS:
        assert re.fullmatch(pattern, body[part]), (part, body[part])
    for line in body.get("items", body.get("lines")):
        assert re.fullmatch(pattern, line["unit_price"]) and \
            re.fullmatch(pattern, line["line_total"]), line
    return {part: Decimal(body[part]) for part in PARTS}


def revenue(html: str) -> dict[str, Decimal]:
    return {period: amount(re.search(r'data-figure="revenue">([^<]+)<',
                                     html[html.index(f'id="kpi-{period}"'):]).group(1))
            for period in ("today", "7d", "30d")}


def mail_texts(outbox) -> dict[str, str]:
    """The plain text of each mail sent, by subject."""
    found = {}
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[str(message["Subject"])] = message.get_body(("plain",)).get_content()
    return found


def buy_and_compare(app, standin, outbox, lines, case, pattern: str) -> None:
    """Build the cart through the pages, compare every place that shows its amounts, pay,
    refund, and watch the dashboard's revenue."""
    coupon, method, payment, expected = case
    expected = dict(zip(PARTS, map(Decimal, expected), strict=True))
    assert expected["total"] == (expected["subtotal"] - expected["discount"]
                                 + expected["shipping"] + expected["tax"])
    currency = app.config["CURRENCY"]
    variants = [f.variant_of(f.product(name, price=price, stock=20)) for name, price, _ in lines]
    if coupon:
        code, kind, value, minimum = coupon
        f.coupon(code, kind, value, min_subtotal=Decimal(minimum) if minimum else None)
    shopper = f.user("ada@example.com")
    _record, token = api_tokens.create(shopper.id, "tests")
    api = ApiClient(app.test_client(), token)
    client = app.test_client()
    AuthActions(client).login("ada@example.com")
    for variant, (_name, _price, quantity) in zip(variants, lines, strict=True):
        assert client.post("/cart/add", data={"variant_id": variant.id, "quantity": quantity,
                                              "csrf_token": csrf_token(client, "/products")}
                           ).status_code == 303
    if coupon:
        assert client.post("/cart/coupon", data={
            "code": coupon[0].lower(), "csrf_token": csrf_token(client, "/cart")}
        ).status_code == 303

    cart_page = client.get(f"/cart?shipping={method}").get_data(as_text=True)
    cart_totals = re.search(r'<div id="cart-totals".*?</dl>', cart_page, re.S).group()
    assert totals_of(cart_totals) == expected, "cart page"
    api_cart = api.get(f"/api/v1/cart?shipping_method={method}").get_json()
    assert api_totals(api_cart, pattern) == expected, "API cart"
    assert api_cart["currency"] == currency
    assert sum(Decimal(line["line_total"]) for line in api_cart["items"]) == expected["subtotal"]

    details = {"csrf_token": csrf_token(client, "/checkout"), "shipping_method": method,
               "payment_method": payment, **f.ADDRESS}
    assert client.post("/checkout", data=details).status_code == 303
    review = client.get("/checkout/review").get_data(as_text=True)
    summary = review[review.index('id="checkout-summary"'):]
    assert totals_of(summary[:summary.index("</dl>")]) == expected, "review"
    form = {name: re.search(rf'name="{name}" value="([^"]*)"', review).group(1)
            for name in ("csrf_token", "token", "expected_total", "reviewed_cart")}
    assert Decimal(form["expected_total"]) == expected["total"]
    placed = client.post("/checkout/place", data=form)
    assert placed.status_code == 303, placed.get_data(as_text=True)

    db.session.rollback()
    order = db.session.execute(select(Order)).scalar_one()
    stored = {part: getattr(order, part) for part in PARTS}
    assert stored == expected, "database"
    assert sum(line.line_total for line in order.lines) == order.subtotal
    assert order.payment.amount == order.total
    page = client.get(f"/orders/{order.number}").get_data(as_text=True)
    shown = page[page.index('class="totals"'):]
    assert totals_of(shown[:shown.index("</dl>")]) == expected, "order page"
    shown_lines = re.findall(r'<td class="num">([^<]+)</td><td class="num">(\d+)</td>'
                             r'<td class="num">([^<]+)</td>', page)
    assert [(amount(unit), int(qty), amount(total)) for unit, qty, total in shown_lines] == [
        (line.unit_price, line.quantity, line.line_total) for line in order.lines]
    confirmation = mail_texts(outbox)[f"Your order {order.number}"]
    assert mail_totals(confirmation) == expected, "mail"
    api_order = api.get(f"/api/v1/orders/{order.number}").get_json()
    assert api_totals(api_order, pattern) == expected, "API order"
    assert sum(Decimal(line["line_total"]) for line in api_order["lines"]) == \
        expected["subtotal"]

    staff = app.test_client()
    login_staff(AuthActions(staff))
    detail = staff.get(f"/admin/order/details/?id={order.id}").get_data(as_text=True)
    assert admin_totals(detail) == expected, "back office"
    exported = list(csv.DictReader(io.StringIO(
        staff.get("/admin/order/export.csv").get_data().decode("utf-8-sig"))))
    (row,) = [r for r in exported if r["number"] == order.number]
    for part in PARTS:
        assert re.fullmatch(pattern, row[part]) and Decimal(row[part]) == expected[part], part

    nothing = dict.fromkeys(("today", "7d", "30d"), Decimal(0))
    assert revenue(staff.get("/admin/").get_data(as_text=True)) == nothing  # awaiting payment
    if payment == "stripe":
        session = standin.sessions[order.payment.reference]
        assert placed.headers["Location"] == session["url"]
        assert session["amount_total"] == to_minor_units(expected["total"], currency)
        assert session["currency"] == currency.lower()
        paid = post_event(client, standin, "checkout.session.completed",
                          standin.complete(session["id"]))
        assert paid.get_json()["outcome"] == "paid"
    else:
        assert staff.post(f"/admin/order/transition/{order.id}", data={
            "csrf_token": csrf_token(staff, f"/admin/order/details/?id={order.id}"),
            "to_status": "paid"}).status_code in (302, 303)
    db.session.rollback()
    assert db.session.get(Order, order.id).status == "paid"
    assert revenue(staff.get("/admin/").get_data(as_text=True)) == dict.fromkeys(
        ("today", "7d", "30d"), expected["total"])

    refunded = staff.post(f"/admin/order/transition/{order.id}", data={
        "csrf_token": csrf_token(staff, f"/admin/order/details/?id={order.id}"),
        "to_status": "refunded"})
    assert refunded.status_code in (302, 303)
    db.session.rollback()
    assert db.session.get(Order, order.id).status == "refunded"
    if payment == "stripe":
        assert sum(r["amount"] for r in standin.refunds.values()
                   if r["payment_intent"] == session["payment_intent"]) == session["amount_total"]
    for news in ("We have received your payment of", "We have refunded"):
        told = [re.search(rf"{news} ({MONEY_TEXT})", text) for text in mail_texts(outbox).values()
                if news in text]
        assert len(told) == 1 and amount(told[0].group(1)) == expected["total"], news
    board = staff.get("/admin/").get_data(as_text=True)
    assert revenue(board) == nothing  # refunded: not revenue, as the dashboard says
    assert re.search(r'id="kpi-today".*?data-figure="orders">1<', board, re.S)


@pytest.fixture
def dollars(make_app, standin):
    app = make_app(**stripe_settings(standin, **DOLLARS))
    with app.app_context():
        yield app


@pytest.fixture
def yen(make_app, standin):
    app = make_app(**stripe_settings(standin, **YEN))
    with app.app_context():
        yield app


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_every_place_shows_the_same_amounts(dollars, standin, case):
    buy_and_compare(dollars, standin, Path(dollars.config["OUTBOX_DIR"]), LINES, case,
                    r"[0-9]+\.[0-9]{2}")


@pytest.mark.parametrize("case", list(YEN_CASES.values()), ids=list(YEN_CASES))
def test_every_place_shows_the_same_whole_yen(yen, standin, case):
    buy_and_compare(yen, standin, Path(yen.config["OUTBOX_DIR"]), YEN_LINES, case, r"[0-9]+")

