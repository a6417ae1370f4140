"""Shared fixtures and helpers for the JSON API tests (tests/web/test_api*.py)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from shop.models import User
from shop.services import api_tokens
from tests import factories as f


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class ApiClient:
    """The Flask test client speaking JSON with one bearer token."""

    def __init__(self, client, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def request(self, method: str, path: str, json=None, headers: dict | None = None, **kw):
        all_headers = dict(bearer(self.token)) if self.token else {}
        all_headers.update(headers or {})
        if json is not None:
            kw["json"] = json
        return self.client.open(path, method=method, headers=all_headers, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

    def patch(self, path: str, json=None, **kw):
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path: str, **kw):
        return self.request("DELETE", path, **kw)


@dataclass
class Shopper:
    user: User
    token: str
    api: ApiClient


def make_shopper(app, role: str = "customer", email: str | None = None) -> Shopper:
    """A user with a live token and an API client of their own."""
    user = f.user(email, role=role)
    _record, token = api_tokens.create(user.id, "tests")
    return Shopper(user, token, ApiClient(app.test_client(), token))


def error_of(response) -> dict:
    """The error envelope's inner object (and proof the envelope has its fixed shape)."""
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def catalog(app):
    """Clothing > Shirts, Home; a shirt with two sizes, a mug, a sold-out tee, a hidden item."""
    clothing = f.category("Clothing", slug="clothing")
    shirts = f.category("Shirts", parent=clothing, slug="shirts")
    home = f.category("Home", slug="home")
    return {
        "clothing": clothing, "shirts": shirts, "home": home,
        "shirt": f.product("Linen Shirt", category=shirts, slug="linen-shirt",
                           description="A breathable linen shirt.", variants=[
                               {"options": {"size": "M"}, "price": "30.00", "stock": 5,
                                "sku": "SHIRT-M", "compare_at_price": None},
                               {"options": {"size": "L"}, "price": "32.50", "stock": 2,
                                "sku": "SHIRT-L"}]),
        "mug": f.product("Stoneware Mug", price="12.50", stock=40, category=home,
                         slug="stoneware-mug", variants=[
                             {"options": {}, "price": "12.50", "stock": 40, "sku": "MUG"}]),
        "tee": f.product("Sold Out Tee", price="15.00", stock=0, category=shirts,
                         slug="sold-out-tee", variants=[
                             {"options": {}, "price": "15.00", "stock": 0, "sku": "TEE"}]),
        "hidden": f.product("Hidden Thing", price="5.00", category=home, active=False,
                            slug="hidden-thing",
                            variants=[{"options": {}, "price": "5.00", "sku": "HIDDEN"}]),
    }


@pytest.fixture
def shopper(app) -> Shopper:
    return make_shopper(app)


@pytest.fixture
def other(app) -> Shopper:
    return make_shopper(app)


@pytest.fixture
def staff(app) -> Shopper:
    return make_shopper(app, role="staff")


@pytest.fixture
def anonymous(client) -> ApiClient:
    return ApiClient(client)
