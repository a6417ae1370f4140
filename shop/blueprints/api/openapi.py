"""GET /api/v1/openapi.json: the OpenAPI 3.1 document, generated from the declared operations
(operations.py) and their pydantic models (schemas.py), with the paths Flask really routes."""
from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .operations import OPERATIONS, Operation
from .schemas import MAX_ID, ErrorOut

REF = "#/components/schemas/{model}"
CONVERTER = re.compile(r"<(?:(?P<conv>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
DESCRIPTION = """\
The shop's JSON API for integrators: browse the catalogue, get a token, fill a cart, place
and track orders; staff can move orders through their states.

* **Auth**: `POST /api/v1/auth/token` with email and password returns a bearer token; send it
  as `Authorization: Bearer <token>`. Tokens expire and can be revoked (`DELETE
  /api/v1/auth/token`, or from the account page). A browser session cookie also works for the
  same user; then unsafe methods need the `X-CSRFToken` header.
* **Money** is a string next to a `currency` code, with that currency's decimals: two
  (`"12.50"` USD), none for a zero-decimal currency such as JPY (`"1081"`, whole yen, as
  Stripe and ISO 4217 count it).
* **Lists** are paginated: `{"items", "page", "per_page", "total", "pages"}`; `per_page`
  defaults to 24, at most 100.
* **Errors** answer `{"error": {"code", "message", "details"}}`: 400 malformed body, 401 no
  or bad token, 403 not allowed, 404 not found (or not yours), 409 a rule blocks it (out of
  stock, coupon expired, not started, below its minimum or used up, transition not
  allowed), 422 invalid fields or unknown references (SKU, variant, coupon, category), 429
  rate limited.
* **Query parameters**: an empty one (`?sort=`) counts as absent.
* **Rate limits**: per token, or per client address without one (429 with `Retry-After`).
"""
CHALLENGE = {
    "description": 'RFC 6750: `Bearer realm="shop"`, with `error="invalid_token"` (and an '
                   "`error_description`) when the request sent a bearer token that is unknown, "
                   "expired or revoked: get a new token.",
    "required": True, "schema": {"type": "string"}}
TAGS = [
    {"name": "Catalogue", "description": "Products and categories; no token needed."},
    {"name": "Authentication", "description": "Accounts and bearer tokens."},
    {"name": "Cart", "description": "The token user's cart."},
    {"name": "Orders", "description": "Checkout, order history and tracking; staff updates."},
    {"name": "Meta", "description": "This document."},
]


def document(app: Flask) -> dict[str, Any]:
    """The document for this app, built once (it depends only on code and routes)."""
    cached = app.extensions.get("shop_openapi")
    if cached is None:
        cached = app.extensions["shop_openapi"] = build(app)
    return cached


def build(app: Flask) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], str]] = [(ErrorOut, "serialization")]
    for op in OPERATIONS:
        if op.body is not None:
            models.append((op.body, "validation"))
        if op.response is not None:
            models.append((op.response, "serialization"))
    models = list(dict.fromkeys(models))
    refs, schema = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path, parameters = _path(rules[f"api.{op.endpoint}"])
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, parameters, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{app.config['SHOP_NAME']} API", "version": "1.0.0",
                 "description": DESCRIPTION},
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "A token from POST /api/v1/auth/token."}},
        },
    }


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """A Flask rule as an OpenAPI path with its path parameters."""
    parameters = []
    for match in CONVERTER.finditer(rule):
        if match["conv"] == "int":
            schema: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
        else:
            schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        parameters.append({"name": match["name"], "in": "path", "required": True,
                           "schema": schema})
    return CONVERTER.sub(lambda m: "{" + m["name"] + "}", rule), parameters


def _query_parameters(op: Operation) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        # An absent parameter takes its default; a query string cannot say null.
        options = prop.pop("anyOf", None)
        if options:
            prop.update(next(o for o in options if o.get("type") != "null"))
        if prop.get("default", "") is None:
            del prop["default"]
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append(parameter)
    return parameters


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: Operation, path_parameters: list[dict[str, Any]],
               refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "operationId": op.endpoint, "summary": op.summary, "tags": [op.tag],
        "description": op.description,
        "parameters": path_parameters + _query_parameters(op) + op.headers,
        "security": [{"bearerAuth": []}] if op.auth != "none" else [],
    }
    if op.body is not None:
        item["requestBody"] = {"required": True,
                               "content": _json(refs[(op.body, "validation")])}
    success: dict[str, Any] = {"description": op.response_description}
    if op.response is not None:
        success["content"] = _json(refs[(op.response, "serialization")])
    elif op.raw_response is not None:
        success["content"] = _json(op.raw_response)
    if op.response_headers:
        success["headers"] = op.response_headers
    responses: dict[str, Any] = {str(op.status): success}
    error_schema = refs[(ErrorOut, "serialization")]
    for status, why in op.error_statuses().items():
        responses[str(status)] = {"description": why, "content": _json(error_schema)}
    for status in ("429", "503"):
        responses[status]["headers"] = {"Retry-After": {
            "description": "Seconds to wait.", "schema": {"type": "integer"}}}
    if "401" in responses:
        responses["401"]["headers"] = {"WWW-Authenticate": CHALLENGE}
    item["responses"] = responses
    return item
