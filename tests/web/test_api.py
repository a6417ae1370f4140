"""The JSON API's catalogue and cart through the test client: shapes, filters, pagination,
errors (400/401/404/409/422), IDOR, and the same totals as the cart page."""
from __future__ import annotations

import codecs
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest

from shop.extensions import db
from shop.models import CartLine, Coupon, utcnow
from shop.services.money import format_money
from tests import factories as f
from tests.conftest import csrf_token
from tests.web import api_support
from tests.web.api_support import ApiClient, error_of

# The shared API fixtures, under the names the tests ask for.
anonymous, catalog, other, shopper = (api_support.anonymous, api_support.catalog,
                                      api_support.other, api_support.shopper)

PRODUCT_KEYS = {"id", "slug", "name", "description", "url", "category", "images", "price",
                "currency", "in_stock", "rating", "variants"}
VARIANT_KEYS = {"id", "sku", "options", "price", "compare_at_price", "stock_quantity",
                "in_stock"}
CART_KEYS = {"items", "item_count", "coupon", "coupon_message", "subtotal", "discount",
             "shipping", "tax", "total", "currency", "shipping_method"}
LINE_KEYS = {"id", "variant_id", "sku", "name", "options", "quantity", "unit_price",
             "line_total", "stock_quantity", "problem"}


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["slug"] for item in response.get_json()["items"]]


# Catalogue ----------------------------------------------------------------------------------

def test_product_list_has_the_spec_shape(anonymous, catalog):
    response = anonymous.get("/api/v1/products?sort=name")
    body = response.get_json()
    assert set(body) == {"items", "page", "per_page", "total", "pages"}
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (1, 24, 3, 1)
    shirt = next(item for item in body["items"] if item["slug"] == "linen-shirt")
    assert set(shirt) == PRODUCT_KEYS
    assert shirt["price"] == "30.00"  # the lowest variant price, as a string
    assert shirt["currency"] == "USD"
    assert shirt["category"] == {"slug": "shirts", "name": "Shirts"}
    assert shirt["in_stock"] is True
    assert shirt["rating"] == {"average": None, "count": 0}
    assert shirt["images"] == [{"url": "http://shop.test/static/img/products/mugs.svg",
                                "alt": "Linen Shirt"}]
    assert [set(v) for v in shirt["variants"]] == [VARIANT_KEYS, VARIANT_KEYS]
    assert shirt["variants"][1] | {"id": 0} == {
        "id": 0, "sku": "SHIRT-L", "options": {"size": "L"}, "price": "32.50",
        "compare_at_price": None, "stock_quantity": 2, "in_stock": True}
    tee = next(item for item in body["items"] if item["slug"] == "sold-out-tee")
    assert tee["in_stock"] is False and tee["variants"][0]["in_stock"] is False


def test_product_list_filters_like_the_page(anonymous, catalog):
    assert set(slugs(anonymous.get("/api/v1/products?category=clothing"))) == {
        "linen-shirt", "sold-out-tee"}  # includes the subcategory Shirts
    assert slugs(anonymous.get("/api/v1/products?category=shirts&in_stock=true")) == [
        "linen-shirt"]
    assert slugs(anonymous.get("/api/v1/products?min_price=13&max_price=30&sort=price")) == [
        "sold-out-tee", "linen-shirt"]
    assert slugs(anonymous.get("/api/v1/products?sort=-price")) == [
        "linen-shirt", "sold-out-tee", "stoneware-mug"]
    assert slugs(anonymous.get("/api/v1/products?q=linen")) == ["linen-shirt"]
    assert "hidden-thing" not in slugs(anonymous.get("/api/v1/products?q=hidden"))


def test_product_search_folds_letters_and_parts_words_at_underscores(anonymous, catalog):
    """The API's search folds as the page's does: "strasse" and "straße" find "Straße",
    "aeble" "Æble", "bar" a "foo_bar"."""
    f.product("Straße Sign", slug="street-sign", description="Enamel.")
    f.product("Æble Cider", slug="cider", description="Dry.")
    f.product("Cable Tidy", slug="tidy", description="Model foo_bar.")
    for q, expected in (("strasse", ["street-sign"]), ("straße", ["street-sign"]),
                        ("aeble", ["cider"]), ("bar", ["tidy"]), ("foo bar", ["tidy"])):
        assert slugs(anonymous.get("/api/v1/products", query_string={"q": q})) == expected, q


def test_product_list_paginates(anonymous, catalog):
    first = anonymous.get("/api/v1/products?sort=name&per_page=2").get_json()
    second = anonymous.get("/api/v1/products?sort=name&per_page=2&page=2").get_json()
    assert [i["slug"] for i in first["items"]] == ["linen-shirt", "sold-out-tee"]
    assert [i["slug"] for i in second["items"]] == ["stoneware-mug"]
    assert (second["page"], second["per_page"], second["total"], second["pages"]) == (2, 2, 3, 2)
    beyond = anonymous.get("/api/v1/products?page=9").get_json()
    assert beyond["items"] == [] and beyond["total"] == 3


@pytest.mark.parametrize("query,field", [
    ("per_page=101", "per_page"), ("per_page=0", "per_page"), ("page=0", "page"),
    ("page=two", "page"), ("sort=cheapest", "sort"), ("min_price=abc", "min_price"),
    ("min_price=20&max_price=10", "max_price"), ("in_stock=maybe", "in_stock"),
    ("category=no-such-category", "category"),
])
def test_product_list_rejects_bad_parameters(anonymous, catalog, query, field):
    response = anonymous.get(f"/api/v1/products?{query}")
    assert response.status_code == 422
    error = error_of(response)
    assert field in error["details"].get("fields", {}) or error["details"].get("field") == field


def test_empty_filter_parameters_count_as_absent_like_the_page(anonymous, client, catalog):
    """A filter form's empty fields arrive as `min_price=&sort=&page=`: the page lists as if
    they were absent, and so does the API (it answered 422)."""
    empty = "q=&category=&min_price=&max_price=&in_stock=&sort=&page=&per_page="
    response = anonymous.get(f"/api/v1/products?{empty}")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == anonymous.get("/api/v1/products").get_json()
    assert response.get_json()["total"] == 3
    assert client.get(f"/products?{empty}").status_code == 200
    assert slugs(anonymous.get("/api/v1/products?min_price=13&max_price=&sort=price")) == [
        "sold-out-tee", "linen-shirt"]


@pytest.mark.parametrize("query,field", [("min_price=abc", "min_price"),
                                         ("max_price=-5", "max_price"),
                                         ("min_price=1e999", "min_price"),
                                         ("min_price=1e3", "min_price"),
                                         ("min_price=1_000", "min_price"),
                                         ("max_price=%D9%A1%D9%A0", "max_price")])
def test_a_bad_price_filter_has_the_pages_message(anonymous, client, catalog, query, field):
    """Not a raw regular expression (`String should match pattern ...`): the words the
    /products page puts beside its field."""
    response = anonymous.get(f"/api/v1/products?{query}")
    assert response.status_code == 422
    message = error_of(response)["details"]["fields"][field]
    assert message == "Enter a price such as 10 or 24.99."
    page = client.get(f"/products?{query}").get_data(as_text=True)
    assert f'<p id="{field}-error" class="field-error">{message}</p>' in page


@pytest.mark.parametrize("query,field", [("page=1_0", "page"), ("page=%2B2", "page"),
                                         ("per_page=2.0", "per_page"),
                                         ("per_page=%EF%BC%92", "per_page"),
                                         ("in_stock=maybe", "in_stock"),
                                         ("in_stock=t", "in_stock"), ("sort=cheapest", "sort")])
def test_paging_sorting_and_stock_are_refused_as_the_page_refuses_them(anonymous, client, catalog,
                                                                       query, field):
    """Read by the page's rules with the page's words: pydantic's took "1_0" as page 10 and
    "+2" as 2, and said "Use true or false." where the page says how in_stock is used."""
    response = anonymous.get(f"/api/v1/products?{query}")
    assert response.status_code == 422
    message = error_of(response)["details"]["fields"][field]
    page = client.get(f"/products?{query}").get_data(as_text=True)
    assert f'<p id="{field}-error" class="field-error">{message}</p>' in page


@pytest.mark.parametrize("query", ["sort=%20-price%20", "in_stock=on&sort=-price",
                                   "in_stock=yes&sort=-price&page=%201"])
def test_paging_sorting_and_stock_are_taken_as_the_page_takes_them(anonymous, client, catalog,
                                                                   query):
    response = anonymous.get(f"/api/v1/products?{query}")
    assert response.status_code == 200, response.get_json()
    assert [item["slug"] for item in response.get_json()["items"]][:2] == [
        "linen-shirt", "stoneware-mug" if "in_stock" in query else "sold-out-tee"]


def test_product_by_slug_or_id(anonymous, catalog):
    by_slug = anonymous.get("/api/v1/products/linen-shirt")
    assert by_slug.status_code == 200 and set(by_slug.get_json()) == PRODUCT_KEYS
    by_id = anonymous.get(f"/api/v1/products/{catalog['shirt'].id}")
    assert by_id.get_json() == by_slug.get_json()


def test_a_slug_of_digits_finds_its_product_when_no_product_has_that_id(anonymous, catalog):
    """GET /api/v1/products/<id-or-slug>: digits are an id, and failing that a slug, so a
    product slugged "1984" is found by it (it was a 404: digits were only ever an id)."""
    novel = f.product("Nineteen Eighty-Four", slug="99999984")
    response = anonymous.get("/api/v1/products/99999984")
    assert response.status_code == 200 and response.get_json()["id"] == novel.id
    assert anonymous.get(f"/api/v1/products/{novel.id}").get_json()["slug"] == "99999984"


@pytest.mark.parametrize("key", ["no-such-thing", "hidden-thing", "99999999",
                                 "99999999999999999999999", "%C2%B2"])
def test_missing_or_hidden_product_is_404(anonymous, catalog, key):
    response = anonymous.get(f"/api/v1/products/{key}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_categories_are_a_tree(anonymous, catalog):
    """On one page, in the shape of every list (SPEC 7: {items, page, per_page, total,
    pages}); it was {items} alone, which a client paging through lists read as broken."""
    body = anonymous.get("/api/v1/categories").get_json()
    assert [c["slug"] for c in body["items"]] == ["clothing", "home"]
    assert {k: body[k] for k in ("page", "per_page", "total", "pages")} == {
        "page": 1, "per_page": 2, "total": 2, "pages": 1}
    clothing = body["items"][0]
    assert set(clothing) == {"id", "slug", "name", "description", "children"}
    assert [c["slug"] for c in clothing["children"]] == ["shirts"]
    assert clothing["children"][0]["children"] == []


def test_no_categories_is_an_empty_list_like_the_others(anonymous):
    """A shop without categories said page 1 of 1 (`pages` 1, `per_page` 1) where every other
    empty list says there is no page: a client paging through it asked for a page 1 that had
    nothing, or stopped on a count that differed from the products'."""
    body = anonymous.get("/api/v1/categories").get_json()
    products = anonymous.get("/api/v1/products").get_json()
    assert body["items"] == [] and products["items"] == []
    shape = ("page", "per_page", "total", "pages")
    assert {k: body[k] for k in shape} == {k: products[k] for k in shape} == {
        "page": 1, "per_page": 24, "total": 0, "pages": 0}


@pytest.mark.parametrize(("method", "path"), [
    ("PATCH", "/api/v1/cart/items/abc"), ("DELETE", "/api/v1/cart/items/abc"),
    ("DELETE", "/api/v1/cart/items/1.5"), ("GET", "/api/v1/nothing-here")])
def test_a_path_no_operation_has_is_said_in_the_shops_words(shopper, method, path):
    """A line id that is not a whole number matched no route: the envelope carried Werkzeug's
    "The requested URL was not found on the server. If you entered the URL manually please
    check your spelling and try again.", words of no API. It now says the path is not the
    API's and where the paths are documented."""
    response = shopper.api.request(method, path, json={"quantity": 1})
    error = error_of(response)
    assert response.status_code == 404 and error["code"] == "not_found"
    assert error["message"] == ("Nothing in the API has this path. Check it against "
                                "/api/v1/openapi.json; an id in a path is a whole number.")


def test_unknown_api_path_and_method_answer_the_envelope(anonymous):
    assert error_of(anonymous.get("/api/v1/nothing-here"))["code"] == "not_found"
    response = anonymous.request("PUT", "/api/v1/cart")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


# Cart ---------------------------------------------------------------------------------------

def test_cart_needs_a_token(anonymous, catalog):
    for method, path in [("GET", "/api/v1/cart"), ("POST", "/api/v1/cart/items"),
                         ("PATCH", "/api/v1/cart/items/1"), ("DELETE", "/api/v1/cart/items/1"),
                         ("POST", "/api/v1/cart/coupon"), ("DELETE", "/api/v1/cart/coupon")]:
        response = anonymous.request(method, path, json={"quantity": 1})
        assert response.status_code == 401, (method, path)
        assert error_of(response)["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_add_by_sku_and_variant_id(shopper, catalog):
    empty = shopper.api.get("/api/v1/cart").get_json()
    assert set(empty) == CART_KEYS and empty["items"] == [] and empty["total"] == "0.00"
    shirt_l = f.variant_of(catalog["shirt"], 1)
    response = shopper.api.post("/api/v1/cart/items", json={"sku": "SHIRT-M", "quantity": 2})
    assert response.status_code == 200
    shopper.api.post("/api/v1/cart/items", json={"variant_id": shirt_l.id})
    body = shopper.api.post("/api/v1/cart/items", json={"sku": "SHIRT-M"}).get_json()
    assert set(body) == CART_KEYS
    assert [(i["sku"], i["quantity"], i["unit_price"], i["line_total"]) for i in body["items"]] \
        == [("SHIRT-M", 3, "30.00", "90.00"), ("SHIRT-L", 1, "32.50", "32.50")]
    assert set(body["items"][0]) == LINE_KEYS
    assert body["items"][0]["options"] == {"size": "M"}
    assert body["item_count"] == 4
    assert body["subtotal"] == "122.50" and body["shipping"] == "0.00"
    assert body["tax"] == "9.80" and body["total"] == "132.30"
    assert body["currency"] == "USD"


@pytest.mark.parametrize("payload", [
    {"sku": "SHIRT-M", "quantity": 0}, {"sku": "SHIRT-M", "quantity": 100},
    {"sku": "SHIRT-M", "quantity": "2"}, {"sku": "SHIRT-M", "quantity": True},
    {"sku": "SHIRT-M", "quantity": 1.5}, {"variant_id": "1"}, {"quantity": 1},
    {"sku": "SHIRT-M", "variant_id": 1}, {"sku": "SHIRT-M", "colour": "red"},
])
def test_add_rejects_invalid_bodies(shopper, catalog, payload):
    response = shopper.api.post("/api/v1/cart/items", json=payload)
    assert response.status_code == 422, response.get_json()
    assert error_of(response)["code"] == "validation_error"
    assert shopper.api.get("/api/v1/cart").get_json()["items"] == []


def test_unknown_field_and_wrong_type_are_named(shopper, catalog):
    response = shopper.api.post("/api/v1/cart/items",
                                json={"sku": 5, "quantity": 1, "colour": "red"})
    fields = error_of(response)["details"]["fields"]
    assert fields["colour"] == "Unknown field."
    assert "string" in fields["sku"]


@pytest.mark.parametrize("method,path,payload,field,message", [
    ("POST", "/api/v1/auth/token", {"email": "a" * 250 + "@example.com", "password": "x"},
     "email", "Use at most 254 characters."),
    ("POST", "/api/v1/auth/token", {"email": "a@example.com", "password": "p" * 201},
     "password", "Use at most 200 characters."),
    ("POST", "/api/v1/auth/token", {"email": "a@example.com", "password": "x", "name": "n" * 121},
     "name", "Use at most 120 characters."),
    ("POST", "/api/v1/cart/items", {"sku": "S" * 65}, "sku", "Use at most 64 characters."),
    ("POST", "/api/v1/cart/items", {"sku": ""}, "sku", "This field cannot be empty."),
    ("POST", "/api/v1/cart/coupon", {"code": "C" * 41}, "code", "Use at most 40 characters."),
    ("POST", "/api/v1/cart/items", {"sku": "MUG", "quantity": 100}, "quantity",
     "Enter a whole number from 1 to 99."),
    ("POST", "/api/v1/cart/items", {"sku": "MUG", "quantity": -1}, "quantity",
     "Enter a whole number from 1 to 99."),
    ("POST", "/api/v1/cart/items", {"sku": "MUG", "quantity": "2"}, "quantity",
     "Enter a whole number from 1 to 99."),
    ("POST", "/api/v1/cart/items", {"sku": "MUG", "quantity": 1.5}, "quantity",
     "Enter a whole number from 1 to 99."),
    ("POST", "/api/v1/cart/items", {"variant_id": 10**12}, "variant_id",
     "Enter a variant's id, a whole number from 1 to 2147483647."),
    ("POST", "/api/v1/cart/items", {"sku": 5}, "sku", "Send text (a JSON string)."),
    ("POST", "/api/v1/cart/items", ["MUG"], "body", "Send the fields as a JSON object ({...})."),
    ("POST", "/api/v1/orders", {"shipping_address": "1 High St"}, "shipping_address",
     "Send a JSON object."),
    ("POST", "/api/v1/orders", {"shipping_address": {}, "shipping_method": "fast"},
     "shipping_method", "Use 'standard' or 'express'."),
    ("GET", "/api/v1/products?per_page=101", None, "per_page",
     "per_page must be a whole number from 1 to 100."),
    ("GET", "/api/v1/orders?page=0", None, "page", "page must be a whole number from 1 to 100000."),
    ("GET", "/api/v1/products?q=" + "q" * 201, None, "q", "Use at most 200 characters."),
])
def test_refused_fields_are_said_in_the_shops_words(shopper, catalog, method, path, payload,
                                                    field, message):
    """Not pydantic's words, written for a Python programmer ("String should have at most 254
    characters", "Input should be less than or equal to 99", "Input should be a valid
    dictionary or instance of CartItemBody", a class of the shop's code): the lengths as the
    registration says them, a number with both its bounds as the cart page says it."""
    response = shopper.api.request(method, path, json=payload)
    assert response.status_code == 422
    fields = error_of(response)["details"]["fields"]
    assert fields[field] == message
    for words in ("should", "Input", "String", "instance of"):
        assert not any(words in text for text in fields.values()), fields


@pytest.mark.parametrize("raw,content_type", [
    ("{\"sku\": \"SHIRT-M\",", "application/json"), ("", "application/json"),
    ("sku=SHIRT-M", "application/x-www-form-urlencoded"), ("{\"sku\": NaN}", "application/json"),
    (b"{\"sku\": \"\xff\"}", "application/json"),
])
def test_malformed_json_is_400(shopper, catalog, raw, content_type):
    response = shopper.api.post("/api/v1/cart/items", data=raw, content_type=content_type)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_a_body_that_starts_with_a_byte_order_mark_is_read(shopper, catalog, anonymous):
    """A UTF-8 file saved by Windows Notepad or PowerShell 5 starts with a byte order mark:
    sent as it is (curl -d @order.json) it was 400 "The body is not valid JSON." ("expected
    value at line 1 column 1"), though it is, and Flask's own reading takes it (RFC 8259
    8.1 lets a reader ignore the mark)."""
    body = codecs.BOM_UTF8 + b'{"sku": "SHIRT-M", "quantity": 2}'
    response = shopper.api.post("/api/v1/cart/items", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["items"][0]["quantity"] == 2
    response = anonymous.post("/api/v1/auth/token", data=codecs.BOM_UTF8 + json.dumps(
        {"email": shopper.user.email, "password": f.PASSWORD}).encode(),
        content_type="application/json")
    assert response.status_code == 201, response.get_json()
    # Only at the start: anywhere else it is no JSON.
    response = shopper.api.post("/api/v1/cart/items", data=b" " + body,
                                content_type="application/json")
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize("payload", [{"sku": "NOPE"}, {"variant_id": 987654},
                                     {"sku": "HIDDEN"}])
def test_unknown_or_unsold_variant_is_422(shopper, catalog, payload):
    response = shopper.api.post("/api/v1/cart/items", json=payload)
    assert response.status_code == 422
    error = error_of(response)
    assert error["details"]["field"] in ("sku", "variant_id")


def test_out_of_stock_is_409_with_what_is_left(shopper, catalog):
    response = shopper.api.post("/api/v1/cart/items", json={"sku": "TEE"})
    assert response.status_code == 409
    assert error_of(response)["code"] == "out_of_stock"
    shopper.api.post("/api/v1/cart/items", json={"sku": "SHIRT-L", "quantity": 2})
    response = shopper.api.post("/api/v1/cart/items", json={"sku": "SHIRT-L"})
    assert response.status_code == 409
    assert error_of(response)["details"]["available"] == 2
    assert shopper.api.get("/api/v1/cart").get_json()["items"][0]["quantity"] == 2


def test_an_add_past_a_lines_maximum_is_409_naming_the_quantity(shopper, app):
    """2 then 98 of a variant in stock is a valid request that the cart's rule (a line holds at
    most 99) refuses: 409, as for the stock, with what the line holds; it was 422
    validation_error, as if the body were wrong. The cart keeps its 2."""
    mug = f.variant_of(f.product("Big Mug", slug="big-mug", variants=[
        {"options": {}, "price": "8.00", "stock": 500, "sku": "BIG-MUG"}]))
    assert shopper.api.post("/api/v1/cart/items",
                            json={"variant_id": mug.id, "quantity": 2}).status_code == 200
    response = shopper.api.post("/api/v1/cart/items", json={"variant_id": mug.id, "quantity": 98})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "line_limit"
    assert error["message"] == "A cart line holds at most 99."
    assert error["details"] == {"field": "quantity", "max": 99, "in_cart": 2, "sku": "BIG-MUG"}
    assert shopper.api.get("/api/v1/cart").get_json()["items"][0]["quantity"] == 2
    assert shopper.api.post("/api/v1/cart/items",
                            json={"sku": "BIG-MUG", "quantity": 97}).status_code == 200


def test_change_and_remove_lines(shopper, catalog):
    line = shopper.api.post("/api/v1/cart/items",
                            json={"sku": "MUG", "quantity": 2}).get_json()["items"][0]
    response = shopper.api.patch(f"/api/v1/cart/items/{line['id']}", json={"quantity": 5})
    assert response.status_code == 200
    assert response.get_json()["items"][0]["quantity"] == 5
    response = shopper.api.patch(f"/api/v1/cart/items/{line['id']}", json={"quantity": 41})
    assert response.status_code == 409
    # The units the line holds (it said 0), and a message for a change, not an add.
    refused = error_of(response)
    assert refused["details"]["in_cart"] == 5 and "already has" not in refused["message"]
    response = shopper.api.patch(f"/api/v1/cart/items/{line['id']}", json={"quantity": 0})
    assert response.status_code == 422
    response = shopper.api.patch(f"/api/v1/cart/items/{line['id']}", json={"qty": 3})
    assert error_of(response)["details"]["fields"] == {"quantity": "This field is required.",
                                                       "qty": "Unknown field."}
    response = shopper.api.delete(f"/api/v1/cart/items/{line['id']}")
    assert response.status_code == 200 and response.get_json()["items"] == []
    assert shopper.api.delete(f"/api/v1/cart/items/{line['id']}").status_code == 404
    assert shopper.api.patch("/api/v1/cart/items/99999999999", json={"quantity": 1}
                             ).status_code == 404


@pytest.mark.parametrize("line_id", ["2147483648", "99999999999", "9" * 30])
def test_a_line_id_beyond_any_row_is_404_for_patch_and_delete(shopper, catalog, line_id):
    """No row has an id past 32 bits: such a line is not found, whatever the method. DELETE
    was 405 "Allow: PATCH" (Werkzeug refused the id in the converter after noting the PATCH
    rule), a status the document does not list and an Allow that is wrong."""
    shopper.api.post("/api/v1/cart/items", json={"sku": "MUG"})  # a cart to look in
    patched = shopper.api.patch(f"/api/v1/cart/items/{line_id}", json={"quantity": 1})
    deleted = shopper.api.delete(f"/api/v1/cart/items/{line_id}")
    assert (patched.status_code, deleted.status_code) == (404, 404)
    assert error_of(deleted)["code"] == "not_found"
    assert "Allow" not in deleted.headers
    assert len(shopper.api.get("/api/v1/cart").get_json()["items"]) == 1


def test_one_user_cannot_touch_another_users_lines(shopper, other, catalog):
    line = shopper.api.post("/api/v1/cart/items",
                            json={"sku": "MUG", "quantity": 2}).get_json()["items"][0]
    path = f"/api/v1/cart/items/{line['id']}"
    patched = other.api.patch(path, json={"quantity": 9})
    deleted = other.api.delete(path)
    assert (patched.status_code, deleted.status_code) == (404, 404)
    assert error_of(patched)["code"] == "not_found"
    assert other.api.get("/api/v1/cart").get_json()["items"] == []
    assert db.session.get(CartLine, line["id"]).quantity == 2
    assert shopper.api.get("/api/v1/cart").get_json()["items"][0]["quantity"] == 2


def test_coupons(shopper, other, catalog):
    f.coupon("SAVE10", "percent", "10")
    f.coupon("ONCE", "fixed", "5", usage_limit=1, times_used=1)
    shopper.api.post("/api/v1/cart/items", json={"sku": "SHIRT-M", "quantity": 2})
    response = shopper.api.post("/api/v1/cart/coupon", json={"code": "save10"})
    body = response.get_json()
    assert response.status_code == 200
    assert (body["coupon"], body["subtotal"], body["discount"], body["total"]) == (
        "SAVE10", "60.00", "6.00", "58.32")
    unknown = shopper.api.post("/api/v1/cart/coupon", json={"code": "NOPE"})
    assert unknown.status_code == 422 and error_of(unknown)["code"].startswith("coupon_")
    used_up = shopper.api.post("/api/v1/cart/coupon", json={"code": "ONCE"})
    assert used_up.status_code == 409 and error_of(used_up)["code"] == "coupon_used_up"
    assert shopper.api.post("/api/v1/cart/coupon", json={"code": ""}).status_code == 422
    assert shopper.api.post("/api/v1/cart/coupon", json={"code": 10}).status_code == 422
    assert shopper.api.get("/api/v1/cart").get_json()["coupon"] == "SAVE10"
    removed = shopper.api.delete("/api/v1/cart/coupon").get_json()
    assert (removed["coupon"], removed["discount"], removed["total"]) == (None, "0.00", "64.80")
    assert other.api.delete("/api/v1/cart/coupon").status_code == 200  # no cart: nothing to do


def test_the_cart_refuses_a_coupon_its_owner_used_as_a_guest(app, catalog):
    """A once-per-customer coupon used in a guest order with this account's email: the cart
    showed it applied, with its discount, and only placing the order refused it (the cart
    knew the account but not its email). Now the cart refuses it at once, and the cart view
    prices without it."""
    from shop.models import CouponUse

    coupon = f.coupon("ONCE", "fixed", "5", per_customer_limit=1)
    shopper = api_support.make_shopper(app, email="buyer@example.com")
    db.session.add(CouponUse(coupon_id=coupon.id, customer_key="email:buyer@example.com",
                             use_number=1, email="buyer@example.com"))
    db.session.commit()
    shopper.api.post("/api/v1/cart/items", json={"sku": "SHIRT-M", "quantity": 1})
    refused = shopper.api.post("/api/v1/cart/coupon", json={"code": "ONCE"})
    assert refused.status_code == 409 and error_of(refused)["code"] == "coupon_customer_limit"
    cart = shopper.api.get("/api/v1/cart").get_json()
    assert (cart["coupon"], cart["discount"]) == (None, "0.00")


def test_a_coupon_a_rule_blocks_is_409_with_its_code(shopper, catalog):
    """SPEC section 7: the coupon exists and the request is valid, a rule blocks it: 409 (it
    was 422), with the code that says which rule."""
    now = utcnow()
    f.coupon("OLD", ends_at=now - timedelta(days=1))
    f.coupon("SOON", starts_at=now + timedelta(days=1))
    f.coupon("BIG", min_subtotal=Decimal("100.00"))
    shopper.api.post("/api/v1/cart/items", json={"sku": "MUG"})
    for code, expected in [("old", "coupon_expired"), ("soon", "coupon_not_yet_valid"),
                           ("big", "coupon_minimum_not_met")]:
        response = shopper.api.post("/api/v1/cart/coupon", json={"code": code})
        assert response.status_code == 409, response.get_json()
        error = error_of(response)
        assert (error["code"], error["details"]["field"]) == (expected, "code")
    assert error["details"]["min_subtotal"] == "100.00"
    assert error["message"] == "That coupon needs a subtotal of at least $100.00."
    assert shopper.api.get("/api/v1/cart").get_json()["coupon"] is None


def test_an_inactive_coupon_answers_as_an_unknown_code(shopper, catalog):
    """It answered 422 coupon_invalid "That coupon is no longer active.": that it exists."""
    f.coupon("PAUSED", active=False)
    shopper.api.post("/api/v1/cart/items", json={"sku": "MUG"})
    unknown = shopper.api.post("/api/v1/cart/coupon", json={"code": "NOPE"})
    inactive = shopper.api.post("/api/v1/cart/coupon", json={"code": "paused"})
    assert unknown.status_code == inactive.status_code == 422
    assert error_of(inactive) == error_of(unknown) == {
        "code": "coupon_not_found", "message": "That coupon code is not valid.",
        "details": {"field": "code"}}


def test_shipping_estimate_parameter(shopper, catalog):
    shopper.api.post("/api/v1/cart/items", json={"sku": "MUG"})
    standard = shopper.api.get("/api/v1/cart").get_json()
    express = shopper.api.get("/api/v1/cart?shipping_method=express").get_json()
    assert (standard["shipping"], express["shipping"]) == ("5.00", "15.00")
    assert express["shipping_method"] == "express"
    assert shopper.api.get("/api/v1/cart?shipping_method=pigeon").status_code == 422


def _page_totals(html: str) -> dict[str, str]:
    totals = dict(re.findall(
        r"<dt>(Subtotal|Discount|Shipping|Tax|Total)[^<]*</dt><dd>([^<]+)</dd>", html))
    return {k: v.replace("\u2212", "") for k, v in totals.items()}


def test_api_and_cart_page_show_the_same_totals(app, client, auth, catalog):
    """One cart, priced by /api/v1/cart and by /cart: the same numbers."""
    f.user("customer@example.com")
    f.coupon("SAVE10", "percent", "10")
    assert auth.login().status_code == 303
    token = csrf_token(client, "/cart")
    browser = ApiClient(client)
    # The browser session may call the API for its own user (with the CSRF header).
    browser.post("/api/v1/cart/items", json={"sku": "SHIRT-L", "quantity": 1},
                 headers={"X-CSRFToken": token})
    browser.post("/api/v1/cart/items", json={"sku": "MUG", "quantity": 1},
                 headers={"X-CSRFToken": token})
    client.post("/cart/coupon", data={"code": "save10", "csrf_token": token})
    api = browser.get("/api/v1/cart").get_json()
    page = _page_totals(client.get("/cart").get_data(as_text=True))
    assert api["discount"] == "4.50"
    assert page["Subtotal"] == format_money(Decimal(api["subtotal"]), api["currency"])
    assert page["Discount"] == format_money(Decimal(api["discount"]), api["currency"])
    assert page["Shipping"] == (format_money(Decimal(api["shipping"]), api["currency"])
                                if api["shipping"] != "0.00" else "Free")
    assert page["Tax"] == format_money(Decimal(api["tax"]), api["currency"])
    assert page["Total"] == format_money(Decimal(api["total"]), api["currency"])
    assert Coupon.query.filter_by(code="SAVE10").one().times_used == 0


# Request bodies -----------------------------------------------------------------------------

def _chunked_post(client, path: str, body: bytes, token: str):
    """A POST as gunicorn hands over a chunked upload: no Content-Length (PEP 3333: empty or
    absent), the stream ended by the server (wsgi.input_terminated)."""
    return client.post(path, input_stream=io.BytesIO(body), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked", **api_support.bearer(token)},
                       environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})


def test_a_chunked_body_over_the_limit_is_413_not_cut_and_read(make_app):
    """Werkzeug stops reading a body without Content-Length at MAX_CONTENT_LENGTH without a
    word: the API parsed the first KB of this body (valid JSON) and added the mug."""
    app = make_app(MAX_CONTENT_LENGTH=1024)
    with app.app_context():
        f.product("Stoneware Mug", slug="stoneware-mug",
                  variants=[{"options": {}, "price": "12.50", "stock": 40, "sku": "MUG"}])
        buyer = api_support.make_shopper(app)
    client = app.test_client()
    too_big = _chunked_post(client, "/api/v1/cart/items", b'{"sku": "MUG"}' + b" " * 2048,
                            buyer.token)
    assert too_big.status_code == 413
    assert error_of(too_big)["code"] == "payload_too_large"
    assert buyer.api.get("/api/v1/cart").get_json()["items"] == []
    fits = _chunked_post(client, "/api/v1/cart/items", b'{"sku": "MUG"}' + b" " * 900,
                         buyer.token)
    assert fits.status_code == 200, fits.get_json()
    assert [line["sku"] for line in fits.get_json()["items"]] == ["MUG"]


@pytest.mark.parametrize("quantity", [2.0, 2e0])
def test_a_whole_number_written_with_a_fraction_is_an_integer(shopper, catalog, quantity):
    """JSON Schema (OpenAPI 3.1) counts 2.0 as an integer, so the document's "integer" takes it."""
    shirt_m = f.variant_of(catalog["shirt"], 0)
    response = shopper.api.post("/api/v1/cart/items",
                                json={"variant_id": float(shirt_m.id), "quantity": quantity})
    assert response.status_code == 200, response.get_json()
    line = response.get_json()["items"][0]
    assert line["quantity"] == 2
    response = shopper.api.patch(f"/api/v1/cart/items/{line['id']}", json={"quantity": 3.0})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["items"][0]["quantity"] == 3


def test_a_sku_in_other_capitals_is_the_same_variant(shopper, catalog):
    """SKUs are one in any capitals (the back office refuses "shirt-m" beside SHIRT-M): adding
    by "shirt-m" adds SHIRT-M on every database, as MySQL's collation always did."""
    response = shopper.api.post("/api/v1/cart/items", json={"sku": " shirt-m ", "quantity": 2})
    assert response.status_code == 200, response.get_json()
    assert [(i["sku"], i["quantity"]) for i in response.get_json()["items"]] == [("SHIRT-M", 2)]
    missing = shopper.api.post("/api/v1/cart/items", json={"sku": "shirt-xl"})
    assert missing.status_code == 422 and error_of(missing)["code"] == "not_found"


def test_absolute_links_are_on_the_shops_address_not_the_requests_host(make_app):
    """A client chooses the Host header: with SHOP_BASE_URL set, /api/v1/products answered
    `Host: evil.example` with product and image links on http://evil.example (a security
    audit). Links in API answers are on the shop's public address, as links in mail are."""
    app = make_app(BASE_URL="https://shop.example.com")
    with app.app_context():
        f.product("Linen Shirt", slug="linen-shirt")
    client = app.test_client()
    body = client.get("/api/v1/products", headers={"Host": "evil.example"}).get_json()
    shirt = body["items"][0]
    assert shirt["url"] == "https://shop.example.com/p/linen-shirt"
    assert shirt["images"][0]["url"].startswith("https://shop.example.com/static/")
    single = client.get("/api/v1/products/linen-shirt", headers={"Host": "evil.example"})
    assert "evil.example" not in single.get_data(as_text=True)
