"""Many gunicorn processes on many hosts serve one shop, and no state lives in a process
(SPEC section 9). Two apps built in one test, on the same database and the same Redis (its
real server, each test under key prefixes of its own, removed afterwards; never a flush),
with the same settings and secret, are two hosts behind one load balancer: what is done
through one is what the other shows at once. Staff edits with the page cache on and off,
logins and their endings, revoked API tokens, rate-limit counts, Idempotency-Key replays,
used reset links and coupon limits.

Each host keeps copies in its memory (pages, the category tree, the catalogue version):
these tests show that each copy is checked against the shared state on every request."""
from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Order
from shop.services import accounts, api_tokens
from tests import factories as f
from tests.conftest import AuthActions, csrf_token
from tests.web.admin_support import login_staff, read_form, variant_prefix
from tests.web.api_support import bearer, error_of

REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
NEW_PASSWORD = "new-Password-2024"
ORDER_BODY = {"shipping_address": f.ADDRESS, "shipping_method": "standard",
              "payment_method": "manual"}
# A moving window: a fixed one could start again between two requests at a minute's end.
LIMITED = {"RATELIMIT_ENABLED": True, "RATELIMIT_STRATEGY": "moving-window"}


@pytest.fixture
def shop_hosts(make_app):
    """Builds the hosts of one shop: each call another app with the shop's one configuration
    (database, Redis, cache and rate-limit key prefixes, jobs queue, secret key), plus the
    call's own settings."""
    from tests.payments_helpers import drop_queue

    conn = Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except RedisError:
        pytest.skip("Redis is not running")
    tag = uuid.uuid4().hex
    shared = {"REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": f"shop-test-hosts:{tag}:",
              "RATELIMIT_KEY_PREFIX": f"shop-test-hosts-rl-{tag}",
              "JOBS_QUEUE": f"shop-test-hosts:{tag}:jobs", "SECRET_KEY": f"hosts-secret-{tag}"}
    built = []

    def host(**settings):
        app = make_app(**(shared | settings))
        built.append(app)
        return app

    host.tag = tag  # type: ignore[attr-defined]
    yield host
    if built:
        drop_queue(built[0])
    for key in conn.scan_iter(match=f"*{tag}*", count=500):
        conn.delete(key)


def one_browser(*hosts):
    """A test client on each host sharing one cookie jar: one browser whose requests the load
    balancer sends to any host."""
    clients = [host.test_client() for host in hosts]
    for client in clients[1:]:
        client._cookies = clients[0]._cookies
    return clients


def post(client, path: str, data: dict, page: str | None = None, **kwargs):
    """A form post with the CSRF token read from `page` (default: the same path), on the
    same client."""
    return client.post(path, data={"csrf_token": csrf_token(client, page or path), **data},
                       **kwargs)


def log_in(client, email: str = "customer@example.com", password: str = f.PASSWORD, **extra):
    response = post(client, "/account/login", {"email": email, "password": password, **extra})
    assert response.status_code == 303, response.get_data(as_text=True)


# Staff edits ----------------------------------------------------------------------------------

PAGES = ("/", "/products", "/c/shirts", "/p/linen-shirt")


def pages(host, cached: bool) -> dict[str, tuple[int, str]]:
    """Each catalogue page as new anonymous shoppers on `host` see it: asked twice, the second
    time from the page cache when it is on (and the page found)."""
    seen = {}
    for url in PAGES:
        first = host.test_client().get(url)
        again = host.test_client().get(url)
        assert again.status_code == first.status_code, url
        if cached and first.status_code == 200:
            assert again.headers.get("X-Cache") == "hit", url
        seen[url] = (again.status_code, again.get_data(as_text=True))
    return seen


def api(host, path: str):
    response = host.test_client().get(path)
    return response.status_code, response.get_json()


def staff_saves(staff, url: str, **changes) -> None:
    """Staff open a back-office form and save it with `changes` (None: a field left out, as an
    unticked box is)."""
    form = read_form(staff.get(url).get_data(as_text=True))
    form.update({k: v for k, v in changes.items() if v is not None})
    for name in [k for k, v in changes.items() if v is None]:
        form.pop(name, None)
    form["csrf_token"] = csrf_token(staff, url)
    response = staff.post(url, data=form)
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.mark.parametrize("cache_seconds", [30, 0], ids=["page-cache-on", "page-cache-off"])
def test_a_staff_edit_on_one_host_shows_at_once_on_the_others_pages_and_api(shop_hosts,
                                                                             cache_seconds):
    a, b = (shop_hosts(CATALOG_CACHE_SECONDS=cache_seconds) for _ in range(2))
    cached = cache_seconds > 0
    with a.app_context():
        shirts = f.category("Shirts", slug="shirts")
        shirt = f.product("Linen Shirt", category=shirts, slug="linen-shirt", price="30.00",
                          stock=50)
        shirts_id, shirt_id, sku = shirts.id, shirt.id, shirt.variants[0].sku
        staff = a.test_client()
        login_staff(AuthActions(staff))
    product_form = f"/admin/product/edit/?id={shirt_id}"
    variant = variant_prefix(read_form(staff.get(product_form).get_data(as_text=True)), sku)
    before = pages(b, cached)  # B holds every page (and the tree) of before the edits
    assert all(status == 200 and "$30.00" in html for status, html in before.values())
    assert api(b, "/api/v1/products/linen-shirt")[1]["price"] == "30.00"

    staff_saves(staff, product_form, **{variant + "price": "24.50"})
    for url, (status, html) in pages(b, cached).items():
        assert status == 200 and "$24.50" in html and "$30.00" not in html, url
    status, item = api(b, "/api/v1/products/linen-shirt")
    assert item["price"] == "24.50" and item["variants"][0]["price"] == "24.50"
    assert api(b, "/api/v1/products")[1]["items"][0]["price"] == "24.50"

    staff_saves(staff, product_form, **{variant + "stock_quantity": "0"})
    assert "Sold out" in pages(b, cached)["/p/linen-shirt"][1]
    item = api(b, "/api/v1/products/linen-shirt")[1]
    assert item["in_stock"] is False and item["variants"][0]["stock_quantity"] == 0
    staff_saves(staff, product_form, **{variant + "stock_quantity": "7"})
    assert "Sold out" not in pages(b, cached)["/p/linen-shirt"][1]
    assert api(b, "/api/v1/products/linen-shirt")[1]["variants"][0]["stock_quantity"] == 7

    staff_saves(staff, f"/admin/category/edit/?id={shirts_id}", name="Summer Shirts")
    seen = pages(b, cached)
    for url in ("/", "/products", "/c/shirts", "/p/linen-shirt"):
        assert ">Summer Shirts<" in seen[url][1] and ">Shirts<" not in seen[url][1], url
    assert [c["name"] for c in api(b, "/api/v1/categories")[1]["items"]] == ["Summer Shirts"]
    assert api(b, "/api/v1/products/linen-shirt")[1]["category"]["name"] == "Summer Shirts"

    new = read_form(staff.get("/admin/product/new/").get_data(as_text=True)) | {
        "csrf_token": csrf_token(staff, "/admin/product/new/"), "name": "Oak Board",
        "slug": "oak-board", "description": "A board.", "active": "y",
        "category": str(shirts_id), "variants-0-sku": "OAK-1", "variants-0-options": "",
        "variants-0-price": "45", "variants-0-stock_quantity": "8",
        "variants-0-stock_seen": "0", "variants-0-low_stock_threshold": "2",
        "variants-0-position": "0"}
    assert staff.post("/admin/product/new/", data=new).status_code == 302
    seen = pages(b, cached)
    for url in ("/", "/products", "/c/shirts"):
        assert "Oak Board" in seen[url][1], url
    assert b.test_client().get("/p/oak-board").status_code == 200
    assert api(b, "/api/v1/products/oak-board")[1]["price"] == "45.00"
    assert {p["slug"] for p in api(b, "/api/v1/products?category=shirts")[1]["items"]} == {
        "oak-board", "linen-shirt"}
    assert [p["slug"] for p in api(b, "/api/v1/products?q=oak")[1]["items"]] == ["oak-board"]
    assert "Oak Board" in b.test_client().get("/products?q=oak").get_data(as_text=True)

    staff_saves(staff, product_form, active=None)  # "Active" unticked
    seen = pages(b, cached)
    assert seen["/p/linen-shirt"][0] == 404
    for url in ("/", "/products", "/c/shirts"):
        assert "Linen Shirt" not in seen[url][1] and "Oak Board" in seen[url][1], url
    assert api(b, "/api/v1/products/linen-shirt")[0] == 404
    listed = api(b, "/api/v1/products")[1]
    assert [p["slug"] for p in listed["items"]] == ["oak-board"] and listed["total"] == 1


# Sessions and tokens --------------------------------------------------------------------------

def test_a_login_on_one_host_is_a_login_on_the_other_and_ends_on_both(shop_hosts):
    a, b = shop_hosts(), shop_hosts()
    with a.app_context():
        f.user("customer@example.com", name="Ada Lovelace")
    phone_a, phone_b = one_browser(a, b)
    # The form read from A, sent to B: the CSRF token and the login are B's too.
    token = csrf_token(phone_a, "/account/login")
    assert phone_b.post("/account/login", data={
        "email": "customer@example.com", "password": f.PASSWORD, "csrf_token": token,
        "remember": "yes"}).status_code == 303
    for client in (phone_a, phone_b):
        page = client.get("/account")
        assert page.status_code == 200 and "Ada Lovelace" in page.get_data(as_text=True)

    # A copy of the phone's cookies (a shared computer), used on B; the phone logs out on A.
    copy = b.test_client()
    for name in ("session", "remember_token", "shop_remember_fp"):
        copy.set_cookie(name, phone_a.get_cookie(name, domain="shop.test").value,
                        domain="shop.test")
    assert copy.get("/account").status_code == 200
    assert post(phone_a, "/account/logout", {}, page="/").status_code == 303
    assert copy.get("/account").status_code == 302
    assert phone_b.get("/account").status_code == 302

    # A laptop logged in through B; a password change through A ends its session there.
    laptop_a, laptop_b = one_browser(a, b)
    log_in(laptop_b)
    phone_a, phone_b = one_browser(a, b)
    log_in(phone_a)
    assert post(phone_a, "/account/password", {
        "current_password": f.PASSWORD, "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD}).status_code == 303
    assert phone_b.get("/account").status_code == 200  # the session that changed it goes on
    assert laptop_b.get("/account").status_code == 302
    assert laptop_a.get("/account").status_code == 302
    log_in(laptop_b, password=NEW_PASSWORD)


def test_an_api_token_revoked_on_one_host_is_refused_on_the_other(shop_hosts):
    a, b = shop_hosts(), shop_hosts()
    with a.app_context():
        f.user("customer@example.com")
    issued = a.test_client().post("/api/v1/auth/token", json={
        "email": "customer@example.com", "password": f.PASSWORD})
    token = issued.get_json()["token"]
    assert b.test_client().get("/api/v1/cart", headers=bearer(token)).status_code == 200
    assert a.test_client().delete("/api/v1/auth/token", headers=bearer(token)).status_code == 204
    refused = b.test_client().get("/api/v1/cart", headers=bearer(token))
    assert refused.status_code == 401 and error_of(refused)["code"] == "token_revoked"

    # A password changed through A ends the account's tokens on B too.
    token = b.test_client().post("/api/v1/auth/token", json={
        "email": "customer@example.com", "password": f.PASSWORD}).get_json()["token"]
    assert a.test_client().get("/api/v1/cart", headers=bearer(token)).status_code == 200
    browser = a.test_client()
    log_in(browser)
    assert post(browser, "/account/password", {
        "current_password": f.PASSWORD, "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD}).status_code == 303
    refused = b.test_client().get("/api/v1/cart", headers=bearer(token))
    assert refused.status_code == 401 and error_of(refused)["code"] == "token_revoked"


# Rate limits ----------------------------------------------------------------------------------

def test_login_and_api_rate_limits_count_across_hosts(shop_hosts):
    """Counted on A, then on B: B is built after A counted, so a host that kept its counts in
    its own memory would start B at nothing (the two apps of a test share one limiter object,
    and building B gives it B's storage)."""
    settings = LIMITED | {"RATELIMIT_LOGIN": "3 per minute", "RATELIMIT_API": "4 per minute"}
    a = shop_hosts(**settings)
    with a.app_context():
        f.user("customer@example.com")
        token = api_tokens.create(f.user("other@example.com").id)[1]
    guesser = a.test_client()
    wrong = {"email": "customer@example.com", "password": "wrong-password-1"}
    for _ in range(2):
        assert post(guesser, "/account/login", wrong).status_code == 401
    for _ in range(2):
        assert a.test_client().get("/api/v1/cart", headers=bearer(token)).status_code == 200

    b = shop_hosts(**settings)
    guesser = b.test_client()
    assert post(guesser, "/account/login", wrong).status_code == 401
    assert post(guesser, "/account/login", wrong).status_code == 429
    assert post(a.test_client(), "/account/login", wrong).status_code == 429
    for _ in range(2):
        assert b.test_client().get("/api/v1/cart", headers=bearer(token)).status_code == 200
    assert b.test_client().get("/api/v1/cart", headers=bearer(token)).status_code == 429
    assert a.test_client().get("/api/v1/cart", headers=bearer(token)).status_code == 429
    counted = Redis.from_url(REDIS_URL).scan_iter(match=f"*{shop_hosts.tag}*", count=500)
    assert any(b"rl" in key for key in counted)


# Idempotency, reset links, coupons ------------------------------------------------------------

def _shopper_with_a_cart(host, email: str, sku: str = "OAK-1") -> str:
    """A customer's token, with one item in their cart (added through `host`)."""
    with host.app_context():
        token = api_tokens.create(f.user(email).id)[1]
    added = host.test_client().post("/api/v1/cart/items", json={"sku": sku, "quantity": 1},
                                    headers=bearer(token))
    assert added.status_code == 200, added.get_json()
    return token


def test_an_idempotency_key_used_on_one_host_replays_on_the_other(shop_hosts):
    a, b = shop_hosts(), shop_hosts()
    with a.app_context():
        f.product("Oak Board", slug="oak-board", variants=[{"sku": "OAK-1", "stock": 5}])
    token = _shopper_with_a_cart(a, "customer@example.com")
    headers = bearer(token) | {"Idempotency-Key": "order-7f3a"}
    first = a.test_client().post("/api/v1/orders", json=ORDER_BODY, headers=headers)
    assert first.status_code == 201, first.get_json()
    again = b.test_client().post("/api/v1/orders", json=ORDER_BODY, headers=headers)
    assert again.status_code == 201 and again.get_json() == first.get_json()
    with b.app_context():
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


def test_a_reset_link_used_on_one_host_cannot_be_used_on_the_other(shop_hosts):
    a, b = shop_hosts(), shop_hosts()
    with a.app_context():
        user = f.user("customer@example.com")
        link = f"/account/password/reset/{accounts.reset_token(user)}"
    browser_a, browser_b = a.test_client(), b.test_client()
    assert browser_b.get(link).status_code == 200  # a link from either host works on both
    assert post(browser_a, link, {"password": NEW_PASSWORD,
                                  "password_confirm": NEW_PASSWORD}).status_code == 303
    page = browser_b.get(link)
    assert page.status_code == 400 and "already used" in page.get_data(as_text=True)
    refused = browser_b.post(link, data={"password": "Another-pass-99",
                                         "password_confirm": "Another-pass-99",
                                         "csrf_token": csrf_token(browser_b, "/account/login")})
    assert refused.status_code == 400
    log_in(b.test_client(), password=NEW_PASSWORD)


def test_a_coupons_limits_hold_across_hosts(shop_hosts):
    a, b = shop_hosts(), shop_hosts()
    with a.app_context():
        f.product("Oak Board", slug="oak-board", variants=[{"sku": "OAK-1", "stock": 20}])
        f.coupon("ONCE", usage_limit=1)
        f.coupon("EACH", per_customer_limit=1)

    def order_with(host, token: str, code: str):
        applied = host.test_client().post("/api/v1/cart/coupon", json={"code": code},
                                          headers=bearer(token))
        if applied.status_code != 200:
            return applied
        return host.test_client().post("/api/v1/orders", json=ORDER_BODY, headers=bearer(token))

    first = _shopper_with_a_cart(a, "first@example.com")
    assert order_with(a, first, "ONCE").status_code == 201
    second = _shopper_with_a_cart(b, "second@example.com")
    refused = order_with(b, second, "ONCE")
    assert refused.status_code == 409 and error_of(refused)["code"] == "coupon_used_up"

    assert order_with(a, second, "EACH").status_code == 201
    b.test_client().post("/api/v1/cart/items", json={"sku": "OAK-1", "quantity": 1},
                         headers=bearer(second))
    refused = order_with(b, second, "EACH")
    assert refused.status_code == 409 and error_of(refused)["code"] == "coupon_customer_limit"
    with b.app_context():
        discounts = db.session.execute(select(Order.discount).order_by(Order.id)).scalars()
        assert [d > Decimal("0") for d in discounts] == [True, True]
