"""The OpenAPI document against the running code: schemathesis generates requests for every
operation (a bounded number each) and checks that no answer is a 5xx and that every answer
matches the document. Also the document's coverage of SPEC section 7 and the /api/docs page."""
from __future__ import annotations

import dataclasses
import inspect
import re

import pydantic
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_headers_conformance,
    response_schema_conformance,
)

from shop import create_app
from shop.services import api_tokens
from shop.services import cart as cart_service
from shop.services.cart import CartOwner
from tests import factories as f

SPEC_OPERATIONS = {
    ("get", "/api/v1/products"), ("get", "/api/v1/products/{key}"),
    ("get", "/api/v1/categories"), ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/token"), ("delete", "/api/v1/auth/token"),
    ("get", "/api/v1/cart"), ("post", "/api/v1/cart/items"),
    ("patch", "/api/v1/cart/items/{line_id}"), ("delete", "/api/v1/cart/items/{line_id}"),
    ("post", "/api/v1/cart/coupon"), ("delete", "/api/v1/cart/coupon"),
    ("post", "/api/v1/orders"), ("get", "/api/v1/orders"), ("get", "/api/v1/orders/{number}"),
    ("patch", "/api/v1/orders/{number}"), ("get", "/api/v1/openapi.json"),
}
# Beyond SPEC 7: the shop's "Pay now" for a card order whose payment_url was null or lost.
MORE_OPERATIONS = {("post", "/api/v1/orders/{number}/payment")}


@pytest.fixture
def fuzz_app(make_app):
    """A shop with a small catalogue, a staff user with a cart, and one order."""
    app = make_app()
    with app.app_context():
        shirts = f.category("Shirts", slug="shirts")
        f.product("Linen Shirt", category=shirts, slug="linen-shirt", variants=[
            {"options": {"size": "M"}, "price": "30.00", "stock": 500, "sku": "SHIRT-M"},
            {"options": {"size": "L"}, "price": "32.50", "stock": 500, "sku": "SHIRT-L"}])
        f.product("Mug", slug="mug",
                  variants=[{"options": {}, "price": "12.50", "stock": 500, "sku": "MUG"}])
        f.coupon("WELCOME10", "percent", "10")
        staff = f.user("staff@example.com", role="staff")
        app.config["FUZZ_USER_ID"] = staff.id
    return app


# The document depends only on the code, so it is read once, at collection, from an app with
# no database; every generated request then goes to the test's own app (`app=fuzz_app`).
schema = schemathesis.openapi.from_wsgi(
    "/api/v1/openapi.json", create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"}, env="testing"))


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case, fuzz_app):
    # A fresh staff token per case (a case may revoke its token with DELETE /auth/token), and
    # something in the cart, so that generated checkouts can succeed too.
    user_id = fuzz_app.config["FUZZ_USER_ID"]
    with fuzz_app.app_context():
        _record, token = api_tokens.create(user_id, "fuzz")
        if not cart_service.item_count(CartOwner(user_id=user_id)):
            cart_service.add_item(CartOwner(user_id=user_id), 1, sku="MUG")
    headers = dict(case.headers or {})
    if not headers.get("Authorization", "").startswith("Bearer shp_"):
        headers["Authorization"] = f"Bearer {token}"
    response = case.call(headers=headers, app=fuzz_app)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                           response_headers_conformance])


def test_document_covers_spec_section_7(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    operations = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert operations == SPEC_OPERATIONS | MORE_OPERATIONS
    envelope = doc["components"]["schemas"]["ErrorOut"]
    assert envelope["required"] == ["error"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            statuses = set(op["responses"])
            assert {"429", "503"} <= statuses, (method, path)
            for status, answer in op["responses"].items():
                if status.startswith("4"):
                    schema_ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert schema_ref.endswith("/ErrorOut"), (method, path, status)
            if "requestBody" in op:
                assert {"400", "422"} <= statuses, (method, path)
            if op["security"]:
                assert "401" in statuses, (method, path)
                assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
            if "{" in path:
                assert "404" in statuses, (method, path)
    patch = doc["paths"]["/api/v1/orders/{number}"]["patch"]
    assert {"403", "409"} <= set(patch["responses"])
    place = doc["paths"]["/api/v1/orders"]["post"]
    assert [p["name"] for p in place["parameters"]] == ["Idempotency-Key"]
    assert place["responses"]["201"]["headers"]["Location"]["required"] is True
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "201" in op["responses"] and (method, path) != ("post", "/api/v1/orders"):
                # Nothing in the API reads an account or a token back: the answer is all.
                assert "Location" not in op["responses"]["201"].get("headers", {}), path
    assert "payment_url" in doc["components"]["schemas"]["PlacedOrderOut"]["properties"]
    listing = doc["paths"]["/api/v1/products"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "q", "category", "min_price", "max_price", "in_stock", "sort", "page", "per_page"}
    per_page = next(p for p in listing["parameters"] if p["name"] == "per_page")
    assert per_page["schema"]["default"] == 24 and per_page["schema"]["maximum"] == 100
    body = doc["components"]["schemas"]["CartItemBody"]
    assert body["additionalProperties"] is False
    history = {p["name"]: p["schema"]
               for p in doc["paths"]["/api/v1/orders"]["get"]["parameters"]}
    assert set(history) == {"page", "per_page", "status", "since", "until", "cursor"}
    assert history["status"]["enum"][:2] == ["pending", "paid"]
    order_list = doc["components"]["schemas"]["OrderList"]
    assert "next_cursor" in order_list["required"]
    assert history["since"]["format"] == history["until"]["format"] == "date"


# Pydantic's names for constraints (Field's and StringConstraints' arguments) that are not
# JSON Schema's: one left in the document is a bound no client or validator reads.
JSON_SCHEMA_WORDS = {"default", "title", "description", "examples", "deprecated", "pattern",
                     "discriminator"}
PYDANTIC_WORDS = (set(inspect.signature(pydantic.Field).parameters)
                  | {f.name for f in dataclasses.fields(pydantic.StringConstraints)}
                  ) - JSON_SCHEMA_WORDS


def _pydantic_words(node, where="$"):
    """Where the document uses a pydantic argument name as a keyword (property names, which
    are the API's own field names, excepted)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, schema_ in value.items():
                    found += _pydantic_words(schema_, f"{where}.properties.{name}")
                continue
            if key in PYDANTIC_WORDS:
                found.append(f"{where}.{key}")
            found += _pydantic_words(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _pydantic_words(item, f"{where}[{index}]")
    return found


def test_the_document_says_every_bound_in_json_schema_words(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert {"ge", "le", "gt", "lt", "min_length", "max_length", "multiple_of"} <= PYDANTIC_WORDS
    assert _pydantic_words(doc) == []
    schemas = doc["components"]["schemas"]
    quantity = {"type": "integer", "minimum": 1, "maximum": 99}
    assert quantity.items() <= schemas["CartItemBody"]["properties"]["quantity"].items()
    assert quantity.items() <= schemas["CartLineBody"]["properties"]["quantity"].items()
    variant_id = schemas["CartItemBody"]["properties"]["variant_id"]["anyOf"][0]
    assert variant_id == {"type": "integer", "minimum": 1, "maximum": 2147483647}


def test_docs_page_works_offline(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert "/static/api-docs/swagger-ui-bundle.js" in sources
    assert "/static/api-docs/init.js" in sources
    assert all(src.startswith("/") for src in sources)  # nothing from a CDN
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    # Without JavaScript the operations are listed on the page itself.
    assert "/api/v1/orders/{number}" in html and "Place an order from the cart" in html
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js", "docs.css"):
        static = client.get(f"/static/api-docs/{name}")
        assert static.status_code == 200, name
        static.close()
    assert '"version": "5.35.0"' in client.get("/static/api-docs/package.json").get_data(
        as_text=True)
