"""Orders placed as a guest, later linked to the account with their email: only through a link
mailed to that address (the shop never verifies the email an account registers with), followed
while logged in; the customer then sees them and may review what they bought."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from shop.extensions import db
from shop.models import Order
from shop.services import accounts, checkout, orders
from shop.services import cart as carts
from shop.services.cart import CartOwner
from shop.services.checkout import CheckoutRequest
from shop.services.orders import Actor
from tests import factories as f
from tests.conftest import AuthActions
from tests.web.test_accounts import mails, post, text_of

STAFF = Actor(None, "staff@test")
ORDERS = "/account/orders"
PAGE = "/p/stoneware-mug"
LINK = re.compile(r"http://shop\.test(/account/orders/link/\S+)")


@pytest.fixture
def mug(app):
    return f.product("Stoneware Mug", price="12.50", stock=50, slug="stoneware-mug")


def guest_buy(email: str, product, status: str = "paid") -> str:
    """A guest's order (no account) placed through checkout with `email`; its number."""
    owner = CartOwner(token=CartOwner.new_guest_token())
    carts.add_item(owner, 1, variant_id=f.variant_of(product).id)
    order = checkout.place_order(owner, CheckoutRequest(email=email,
                                                        shipping_address=dict(f.ADDRESS)))
    if status == "paid":
        orders.transition(order.id, "paid", STAFF)
    return order.number


def owners() -> dict[str, int | None]:
    db.session.rollback()
    return dict(db.session.execute(select(Order.number, Order.user_id)).all())


def link_mails(outbox: Path) -> list:
    """The mails with a link to earlier orders (not the guests' order confirmations)."""
    return [m for m in mails(outbox) if "earlier orders" in m["Subject"]]


def ask_for_link(client, outbox) -> str:
    response = post(client, f"{ORDERS}/link", {}, page=ORDERS)
    assert response.status_code == 303 and response.headers["Location"] == ORDERS
    (message,) = link_mails(outbox)
    match = LINK.search(text_of(message))
    assert match, text_of(message)
    return match.group(1)


def test_a_guest_who_registers_links_their_orders_through_a_mailed_link_and_may_review(
        client, auth, mug, outbox):
    paid = guest_buy("Ada@Example.com ", mug)
    pending = guest_buy("ada@example.com", mug, status="pending")
    # Another guest's, and one MySQL's collation would take for the same address: not hers.
    others = [guest_buy("bob@example.com", mug), guest_buy("adá@example.com", mug)]
    user = f.user("ada@example.com", name="Ada Lovelace")
    # Registering with the email links nothing: anyone can register with any email.
    assert owners()[paid] is None and owners()[pending] is None
    auth.login("ada@example.com")
    page = client.get(PAGE).get_data(as_text=True)
    assert "Only customers who bought this product can review it." in page

    history = client.get(ORDERS).get_data(as_text=True)
    assert "No orders yet." in history and paid not in history
    assert "Link my earlier orders" in history
    assert 'action="/account/orders/link" method="post"' in history

    link = ask_for_link(client, outbox)
    (message,) = link_mails(outbox)
    assert message["To"] == "ada@example.com"
    assert "2 such orders" in text_of(message)
    html_part = next(p.get_content() for p in message.walk()
                     if p.get_content_type() == "text/html")
    assert "http://shop.test" + link in html_part
    told = client.get(ORDERS).get_data(as_text=True)
    assert ("If orders were placed with ada@example.com without an account, we have emailed "
            "that address a link") in told
    assert owners()[paid] is None  # asking attaches nothing yet

    from tests.logs import ShopLog

    with ShopLog("shop.access") as log:
        shown = client.get(link)
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    assert "2 orders placed with ada@example.com" in shown.get_data(as_text=True)
    assert owners()[paid] is None  # opening the link (a mail scanner) attaches nothing
    token = link.rsplit("/", 1)[1]
    assert not any(token in str(vars(record)) for record in log.records)

    done = post(client, link, {}, page=ORDERS)
    assert done.status_code == 303 and done.headers["Location"] == ORDERS
    found = owners()
    assert found[paid] == user.id and found[pending] == user.id
    assert all(found[number] is None for number in others)
    history = client.get(ORDERS).get_data(as_text=True)
    assert "2 earlier orders added to your account." in history
    assert paid in history and pending in history

    page = client.get(PAGE).get_data(as_text=True)
    assert "Only customers who bought this product can review it." not in page
    review = post(client, f"{PAGE}/reviews", {"rating": "5", "title": "Lovely mug"}, page=PAGE)
    assert review.status_code == 303
    assert "waiting for approval" in client.get(PAGE).get_data(as_text=True)

    # The link works once.
    again = client.get(link)
    assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
    assert post(client, link, {}, page=ORDERS).status_code == 400


def test_an_account_without_guest_orders_learns_nothing_the_mailbox_would_not(client, auth,
                                                                               mug, outbox):
    """Anyone can register with any email: the orders page and the answer to asking are the
    same whether or not guest orders use it (as the password reset's are); only the mailbox
    gets the link, when there are such orders."""
    guest_buy("bob@example.com", mug)
    f.user("ada@example.com")
    f.user("bob@example.com")
    answers = {}
    for email in ("ada@example.com", "bob@example.com"):
        auth.login(email)
        page = client.get(ORDERS).get_data(as_text=True)
        assert "Link my earlier orders" in page
        response = post(client, f"{ORDERS}/link", {}, page=ORDERS)
        assert response.status_code == 303 and response.headers["Location"] == ORDERS
        shown = client.get(ORDERS).get_data(as_text=True)
        # The same page, the email and the per-session tokens aside.
        answers[email] = re.sub(r'(value|content|hx-headers)=("[^"]*"|\'[^\']*\')', "",
                                shown.replace(email, "EMAIL"))
        assert f"If orders were placed with {email} without an account" in shown
        auth.logout()
    assert answers["ada@example.com"] == answers["bob@example.com"]
    assert [m["To"] for m in link_mails(outbox)] == ["bob@example.com"]


def test_the_link_expires(client, auth, mug, outbox, monkeypatch):
    number = guest_buy("ada@example.com", mug)
    f.user("ada@example.com")
    auth.login("ada@example.com")
    link = ask_for_link(client, outbox)
    hours = client.application.config["LINK_ORDERS_HOURS"]
    later = int(time.time()) + (hours + 1) * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    page = client.get(link)
    assert page.status_code == 400 and "expired" in page.get_data(as_text=True)
    assert post(client, link, {}, page=ORDERS).status_code == 400
    assert owners()[number] is None


def test_a_tampered_link_is_refused(client, auth, mug, outbox):
    number = guest_buy("ada@example.com", mug)
    f.user("ada@example.com")
    auth.login("ada@example.com")
    link = ask_for_link(client, outbox)
    payload, stamp, signature = link.rsplit("/", 1)[1].split(".")
    forged = [f"{ORDERS}/link/not-a-real-token",
              f"{ORDERS}/link/{payload}.{stamp}.{signature[::-1]}",
              f"{ORDERS}/link/{payload[:-2]}.{stamp}.{signature}"]
    for path in forged:
        page = client.get(path)
        assert page.status_code == 400 and "not valid" in page.get_data(as_text=True), path
        assert post(client, path, {}, page=ORDERS).status_code == 400
    assert owners()[number] is None


def test_a_link_followed_by_another_account_attaches_nothing(app, client, auth, mug, outbox):
    number = guest_buy("ada@example.com", mug)
    f.user("ada@example.com")
    eve = f.user("eve@example.com")
    auth.login("ada@example.com")
    link = ask_for_link(client, outbox)

    other = app.test_client()
    AuthActions(other).login("eve@example.com")
    page = other.get(link)
    assert page.status_code == 403 and "sent to another account" in page.get_data(as_text=True)
    assert post(other, link, {}, page=ORDERS).status_code == 403
    assert owners()[number] is None and eve.id not in owners().values()

    # Without logging in: to the login page first, and back to the link afterwards.
    anonymous = app.test_client().get(link)
    assert anonymous.status_code == 302 and "/account/login" in anonymous.headers["Location"]
    # Without a CSRF token, nothing happens.
    assert client.post(link).status_code == 400
    assert owners()[number] is None


def test_a_link_stops_working_once_the_accounts_email_changes(client, auth, mug, outbox):
    number = guest_buy("ada@example.com", mug)
    user = f.user("ada@example.com")
    auth.login("ada@example.com")
    link = ask_for_link(client, outbox)
    accounts.update_profile(user.id, "Ada", "ada@elsewhere.example", f.PASSWORD)
    page = client.get(link)
    assert page.status_code == 400 and "already used" in page.get_data(as_text=True)
    assert owners()[number] is None


def test_asking_for_links_is_rate_limited(make_app):
    """Each request mails the account: limited as asking for a password reset is."""
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_PASSWORD_RESET="2 per hour")
    with app.app_context():
        product = f.product("Stoneware Mug", stock=50, slug="stoneware-mug")
        guest_buy("ada@example.com", product)
        f.user("ada@example.com")
        client = app.test_client()
        AuthActions(client).login("ada@example.com")
        statuses = [post(client, f"{ORDERS}/link", {}, page=ORDERS).status_code
                    for _ in range(3)]
        assert statuses == [303, 303, 429]
        assert len(link_mails(Path(app.config["OUTBOX_DIR"]))) == 2
