"""Errors as the API answers them: the envelope of SPEC section 7 with the right status."""
from __future__ import annotations

from typing import Any

from flask import Response

from ...http import error_response
from ...services import coupons
from ...services.errors import CouponInactive, ShopError, ValidationError
from .auth import bearer_sent, state

# ShopError.kind -> status. not_found is 404 for what the URL names, 422 for what the body or
# query names (an unknown SKU, variant or category is bad input, not a missing page).
FIELDS_MESSAGE = "Please correct the fields listed in details."
STATUS_FOR_KIND = {"invalid": 422, "conflict": 409, "not_found": 404, "forbidden": 403,
                   "unauthorized": 401}
# The 401 codes that refuse a token the request sent, with the challenge's description of
# each (RFC 6750 3: no quote or backslash in it).
REFUSED_TOKEN = {"invalid_token": "The token is not valid",
                 "token_expired": "The token has expired",
                 "token_revoked": "The token was revoked"}


class ApiError(Exception):
    """A request the API refuses before any service runs (bad JSON, bad fields, no token)."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def api_error_response(exc: ApiError) -> Response:
    return _with_auth_challenge(error_response(exc.status, exc.message, code=exc.code,
                                               details=exc.details), exc.code)


def shop_error_response(exc: ShopError) -> Response:
    """A domain error from a service, mapped by its kind."""
    if isinstance(exc, CouponInactive):
        exc = coupons.unknown_code()  # as if it did not exist: the API does not reveal it
    status = STATUS_FOR_KIND.get(exc.kind, 422)
    if status == 404 and exc.field and exc.field in state().get("fields", ()):
        status = 422
    details = dict(exc.details)
    message = exc.message
    if isinstance(exc, ValidationError):
        details.setdefault("fields", exc.errors)
        if message == ValidationError.DEFAULT_MESSAGE:
            # Nothing is highlighted in a JSON answer: the fields are in details, as the
            # API's own checks say it (operations.parse_body).
            message = FIELDS_MESSAGE
    elif exc.field:
        details.setdefault("field", exc.field)
    return _with_auth_challenge(error_response(status, message, code=exc.code,
                                               details=details), exc.code)


def _with_auth_challenge(response: Response, code: str) -> Response:
    """A 401's challenge (RFC 6750 3.1): a bearer token that was sent and refused is named
    `invalid_token`, so a client knows to get a new one; without one (no Authorization, another
    scheme, a session cookie, a wrong password) there is no error code."""
    if response.status_code == 401:
        challenge = 'Bearer realm="shop"'
        if code in REFUSED_TOKEN and bearer_sent():
            challenge += f', error="invalid_token", error_description="{REFUSED_TOKEN[code]}"'
        response.headers["WWW-Authenticate"] = challenge
    return response


def register(bp) -> None:
    bp.register_error_handler(ApiError, api_error_response)
    bp.register_error_handler(ShopError, shop_error_response)
