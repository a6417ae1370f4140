"""Declaring an API operation once: its route, auth, request and response models and errors.

`operation(...)` registers the Flask route and records the declaration that openapi.py turns
into the document, so what is documented is what runs: the body and query are parsed by the
declared models, and the answer is built from the declared response model.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pydantic
from flask import Response, current_app, request

from ...extensions import limiter
from ...http import InvalidJson, json_body
from . import bp
from .auth import Level, api_limit, authenticate, rate_limit_key, state
from .errors import ApiError
from .schemas import Body, Out, Query

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Operation:
    endpoint: str
    rule: str
    method: str
    summary: str
    description: str
    tag: str
    auth: Level
    body: type[Body] | None
    query: type[Query] | None
    status: int
    response: type[Out] | None
    response_description: str
    errors: dict[int, str]
    headers: list[dict[str, Any]] = field(default_factory=list)
    raw_response: dict[str, Any] | None = None
    response_headers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def error_statuses(self) -> dict[int, str]:
        """Every error status this operation can answer, with why."""
        found: dict[int, str] = {}
        if self.body is not None:
            found[400] = "The body is not JSON (or not sent as application/json)."
        elif self.auth in ("user", "staff") and self.method in UNSAFE:
            found[400] = "Session-cookie callers only: the CSRF token is missing or wrong."
        if self.auth != "none":
            found[401] = "No token, or the token is unknown, expired or revoked."
        if self.auth == "staff":
            found[403] = "The user is not staff."
        if "<" in self.rule:
            found[404] = "Nothing with that identifier (or it is not yours)."
        if self.body is not None:
            found[413] = "The body is too large."
        if self.body is not None or self.query is not None:
            found[422] = "A field is missing, of the wrong type, unknown or invalid."
        found.update(self.errors)
        found[429] = "Too many requests: slow down and retry after the Retry-After delay."
        found[503] = ("The database or Redis cannot be reached right now (`unavailable`), or "
                      "a write waited too long behind others (`busy`; nothing was changed): "
                      "retry after the Retry-After delay.")
        return dict(sorted(found.items()))


OPERATIONS: list[Operation] = []


def operation(rule: str, method: str, *, summary: str, tag: str, auth: Level = "none",
              body: type[Body] | None = None, query: type[Query] | None = None,
              status: int = 200, response: type[Out] | None = None,
              response_description: str = "OK", errors: dict[int, str] | None = None,
              headers: Iterable[dict[str, Any]] = (), raw_response: dict[str, Any] | None = None,
              response_headers: dict[str, dict[str, Any]] | None = None,
              limits: Iterable[Callable] = ()) -> Callable:
    """Register `view` as an API operation. The view receives path arguments plus `user`
    (when auth is required), `body` and `query` (parsed models), and returns a response model
    instance (sent with `status`), a Response, or None (204). `response_headers` declares
    the headers of the success answer (the view sets them)."""

    def decorate(view: Callable) -> Callable:
        op = Operation(endpoint=view.__name__, rule=rule, method=method, summary=summary,
                       description=inspect.cleandoc(view.__doc__ or ""), tag=tag, auth=auth,
                       body=body, query=query, status=status, response=response,
                       response_description=response_description, errors=dict(errors or {}),
                       headers=list(headers), raw_response=raw_response,
                       response_headers=dict(response_headers or {}))
        OPERATIONS.append(op)

        @functools.wraps(view)
        def endpoint(**path_args: Any) -> Response:
            kwargs = dict(path_args)
            user = authenticate(op.auth)
            if op.auth != "none":
                kwargs["user"] = user
            if op.query is not None:
                kwargs["query"] = parse_query(op.query)
            if op.body is not None:
                kwargs["body"] = parse_body(op.body)
            return respond(view(**kwargs), op.status)

        wrapped = limiter.shared_limit(api_limit, scope="api", key_func=rate_limit_key,
                                       override_defaults=False)(endpoint)
        for limit in limits:
            wrapped = limit(wrapped)
        bp.add_url_rule(rule, endpoint=op.endpoint, view_func=wrapped, methods=[method])
        return wrapped

    return decorate


def respond(result: Out | Response | None, status: int) -> Response:
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status=204)
    response = current_app.json.response(result.model_dump(mode="json"))
    response.status_code = status
    return response


# What a value of each pattern in schemas.py looks like, said to a person.
PATTERN_MESSAGES = {
    r"^[0-9]{1,10}(\.[0-9]{1,2})?$": "Enter an amount such as 10 or 24.99.",
    r"^[A-Z]{3}$": "Enter a currency code in capitals, such as USD.",
    r"^[A-Za-z]{2}$": "Enter a two-letter country code (ISO 3166-1), such as GB.",
}


def field_errors(exc: pydantic.ValidationError) -> dict[str, str]:
    """Pydantic's errors as {"field.path": "message"}, like the services' ValidationError, in
    the shop's words ("Use at most 254 characters.", as the registration says it). Pydantic's
    own were written for a Python programmer: "String should have at most 254 characters",
    "Input should be a valid dictionary or instance of CartItemBody" (a class of this code)."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "body"
        fields.setdefault(name, _message(error))
    return fields


def _message(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "Unknown field."
    if kind == "missing":
        return "This field is required."
    if kind == "string_pattern_mismatch":
        # Pydantic's message is the regular expression itself.
        return PATTERN_MESSAGES.get(ctx.get("pattern"), "This value is not in the expected form.")
    if kind == "string_too_long":
        return f"Use at most {ctx['max_length']} characters."
    if kind == "string_too_short":
        if ctx["min_length"] == 1:
            return "This field cannot be empty."
        return f"Use at least {ctx['min_length']} characters."
    if kind in ("string_type", "string_unicode"):
        return "Send text (a JSON string)."
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "Send a JSON object." if error["loc"] else \
            "Send the fields as a JSON object ({...})."
    if kind == "literal_error":
        return f"Use {ctx['expected']}."
    if kind in ("bool_type", "bool_parsing"):
        return "Use true or false."
    return error["msg"]


def parse_body(model: type[Body]) -> Body:
    """The JSON body as `model`: malformed JSON is 400; missing, unknown or mistyped fields
    are 422 with a message per field."""
    state()["fields"] = set(model.model_fields)
    if not request.is_json:
        raise ApiError(400, "invalid_json",
                       "Send a JSON body with the header Content-Type: application/json.")
    try:
        data = json_body()
    except InvalidJson as exc:
        raise ApiError(400, "invalid_json", "The body is not valid JSON.",
                       {"reason": exc.reason}) from None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ApiError(422, "validation_error", "Please correct the fields listed in details.",
                       {"fields": field_errors(exc)}) from None


def parse_query(model: type[Query]) -> Query:
    """Query-string parameters as `model` (422 naming each bad one). An empty parameter is
    absent, as the pages read them: a form's empty field is sent as `min_price=`."""
    state()["fields"] = set(model.model_fields) | state().get("fields", set())
    args = {name: value for name, value in request.args.items() if value != ""}
    try:
        return model.model_validate(args)
    except pydantic.ValidationError as exc:
        raise ApiError(422, "validation_error", "Please correct the query parameters listed "
                       "in details.", {"fields": field_errors(exc)}) from None
