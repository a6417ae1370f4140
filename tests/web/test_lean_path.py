"""The lean path (blueprints/catalog/page_cache.py, PageCache._render): an anonymous shopper's
catalogue GET is rendered by its view without Flask's request hooks. What a shopper gets must
not depend on it: the same status, bytes and headers as the full request cycle (the same app
with CATALOG_LEAN_PATH off, same database and secret key), for a new visitor and for a
returning one; a form token that works; a single access line; and everything the lean path
must not answer (errors, personal pages) answered by the full cycle."""
from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy.exc import OperationalError

from shop.blueprints.catalog import page_cache
from shop.services import catalog
from tests import factories as f
from tests.conftest import AuthActions
from tests.logs import ShopLog

TOKEN = re.compile(r'(name="csrf_token" value="|"X-CSRFToken": ")([^"]+)"')
URLS = [
    "/",
    "/products",
    "/products?page=2&per_page=2",
    "/products?q=linen",
    "/products?sort=-price&in_stock=true&min_price=1&max_price=500",
    "/products?category=shirts",
    "/c/clothing",
    "/c/shirts?sort=name",
    "/p/linen-shirt",
    "/p/linen-shirt?variant={variant}",
    "/p/wool-socks",
]
# Answers the lean path leaves to the full cycle: they must be the same too.
OTHER_URLS = [
    "/p/no-such-thing",
    "/c/no-such-thing",
    "/products?page=99",
    "/products?min_price=abc",
    "/products?utm_source=mail",
    "/p/LINEN-SHIRT",
]
VOLATILE = {"date", "x-request-id", "set-cookie", "content-length"}


@pytest.fixture
def pair(make_app):
    """The same shop twice: the lean path on (the default) and off."""
    secret = "lean-test-" + uuid.uuid4().hex
    lean = make_app(SECRET_KEY=secret)
    full = make_app(SECRET_KEY=secret, CATALOG_LEAN_PATH=False)
    assert lean.config["CATALOG_LEAN_PATH"] is True
    with lean.app_context():
        clothing = f.category("Clothing", slug="clothing")
        shirts = f.category("Shirts", parent=clothing, slug="shirts")
        shirt = f.product("Linen Shirt", category=shirts, slug="linen-shirt", price="30.00",
                          stock=5, variants=[{"options": {"size": "S"}, "stock": 5},
                                             {"options": {"size": "M"}, "stock": 0}])
        f.product("Wool Socks", category=clothing, slug="wool-socks", price="8.50", stock=9)
        f.product("Linen Towel", slug="linen-towel", price="12.00", stock=0)
        variant = f.variant_of(shirt, 1).id
    return lean, full, variant


@pytest.fixture
def rendered(monkeypatch):
    """What each lean render returned (None: left to the full cycle)."""
    results: list = []
    render = page_cache.PageCache._render

    def recording(self, environ, version):
        entry, storable = render(self, environ, version)
        results.append(entry)
        return entry, storable

    monkeypatch.setattr(page_cache.PageCache, "_render", recording)
    return results


def _tokens(body: str) -> tuple[str, list[str]]:
    tokens = [m.group(2) for m in TOKEN.finditer(body)]
    return TOKEN.sub(lambda m: m.group(1) + "TOKEN\"", body), tokens


def _headers(response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in VOLATILE}


def _cookie_attributes(response) -> list[str]:
    return sorted(v.split(";", 1)[1] for k, v in response.headers.items()
                  if k.lower() == "set-cookie")


def _same(lean_answer, full_answer, url: str) -> None:
    assert lean_answer.status_code == full_answer.status_code, url
    lean_body, lean_tokens = _tokens(lean_answer.get_data(as_text=True))
    full_body, full_tokens = _tokens(full_answer.get_data(as_text=True))
    assert lean_body == full_body, url
    assert len(set(lean_tokens)) <= 1 and len(lean_tokens) == len(full_tokens), url
    assert _headers(lean_answer) == _headers(full_answer), url
    if full_tokens:
        assert _cookie_attributes(lean_answer) == _cookie_attributes(full_answer), url
    else:  # no form on it (no card with "Add to cart"): no session is started for it
        assert "Set-Cookie" not in lean_answer.headers, url
    assert lean_answer.headers["Content-Length"] == str(len(lean_answer.get_data())), url


def test_a_new_visitor_gets_the_same_pages_either_way(pair, rendered):
    lean, full, variant = pair
    for url in [u.format(variant=variant) for u in URLS]:
        for headers in ({}, {"HX-Request": "true"}):
            rendered.clear()
            lean_answer = lean.test_client().get(url, headers=headers)
            assert rendered and rendered[-1] is not None, f"{url} {headers}: not lean"
            full_answer = full.test_client().get(url, headers=headers)
            _same(lean_answer, full_answer, f"{url} {headers}")
            assert lean_answer.status_code == 200, url
            if "X-CSRFToken" in lean_answer.get_data(as_text=True):
                # A new visitor's session: the secret its forms' token is signed for.
                assert _cookie_attributes(lean_answer), url


def test_a_returning_visitor_gets_the_same_pages_either_way(pair, rendered):
    lean, full, variant = pair
    lean_client, full_client = lean.test_client(), full.test_client()
    first = lean_client.get("/products")
    cookie = next(v for k, v in first.headers.items() if k.lower() == "set-cookie")
    session_value = cookie.split(";", 1)[0].split("=", 1)[1]
    full_client.set_cookie("session", session_value, domain="shop.test")
    _, first_tokens = _tokens(first.get_data(as_text=True))
    for url in [u.format(variant=variant) for u in URLS]:
        rendered.clear()
        lean_answer = lean_client.get(url)
        assert rendered and rendered[-1] is not None, url
        full_answer = full_client.get(url)
        _same(lean_answer, full_answer, url)
        assert "Set-Cookie" not in lean_answer.headers, url
        # The session's secret is the same: so is the token signed for it (to the second).
        _, tokens = _tokens(lean_answer.get_data(as_text=True))
        assert tokens, url


def test_answers_the_lean_path_leaves_to_the_full_cycle_are_the_same(pair, rendered):
    lean, full, _ = pair
    for url in OTHER_URLS:
        rendered.clear()
        lean_answer = lean.test_client().get(url)
        assert all(entry is None for entry in rendered), url
        full_answer = full.test_client().get(url)
        _same(lean_answer, full_answer, url)
        assert lean_answer.status_code != 200 or "utm_source" in url, url


def test_the_token_of_a_lean_page_adds_to_the_cart_and_then_the_cart_shows(pair, rendered):
    lean, _, _ = pair
    client = lean.test_client()
    page = client.get("/products")
    assert rendered[-1] is not None
    body = page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
    variant = re.search(r'name="variant_id" value="(\d+)"', body).group(1)
    added = client.post("/cart/add", data={"csrf_token": token, "variant_id": variant,
                                           "quantity": "1"})
    assert added.status_code in (200, 302, 303), added.get_data(as_text=True)[:300]
    rendered.clear()
    again = client.get("/products")
    assert rendered == []  # a session naming a cart: not even tried
    assert '<span class="cart-count">(1)</span>' in again.get_data(as_text=True)
    assert again.headers["Cache-Control"] == "private, no-cache"


def test_a_logged_in_shopper_never_gets_a_lean_page(pair, rendered):
    lean, _, _ = pair
    with lean.app_context():
        f.user(email="ann@example.com", password="correct-horse-9", name="Ann Lee")
    client = lean.test_client()
    assert AuthActions(client).login("ann@example.com").status_code in (302, 303)
    rendered.clear()
    page = client.get("/products")
    assert rendered == []  # not even tried: the session is personal
    assert "Log out" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "private, no-cache"


def test_one_access_line_per_request_on_either_path(pair, rendered):
    lean, _, _ = pair
    client = lean.test_client()
    with ShopLog() as log:
        client.get("/products", headers={"X-Request-ID": "lean-request-0001"})
        client.get("/p/no-such-thing", headers={"X-Request-ID": "lean-request-0002"})
    lines = [r for r in log.records if r.name == "shop.access"]
    assert [(r.request_id, r.status) for r in lines] == [  # type: ignore[attr-defined]
        ("lean-request-0001", 200), ("lean-request-0002", 404)]


def test_a_database_error_in_the_lean_path_gets_the_full_cycles_answer_at_once(
        pair, rendered, monkeypatch):
    """Answered from the lean path's own request, as the full cycle answers it (503, its
    page, one access line), without reading the database a second time: a hung database
    would have cost two timeouts."""
    lean, full, _ = pair
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise OperationalError("SELECT 1", {}, Exception("server has gone away"))

    monkeypatch.setattr(catalog, "list_products", broken)
    with ShopLog() as log:
        answer = lean.test_client().get("/products")
    assert len(calls) == 1 and rendered == []
    assert answer.status_code == 503
    assert "Retry-After" in answer.headers and "X-Request-ID" in answer.headers
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert page_cache.PLACEHOLDER not in answer.get_data()
    assert len([r for r in log.records if r.name == "shop.access"]) == 1
    _same(answer, full.test_client().get("/products"), "/products (database down)")
