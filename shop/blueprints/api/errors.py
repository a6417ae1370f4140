"""Errors as the API answers them: the envelope of SPEC section 7 with the right status."""
from __future__ import annotations

from typing import Any

from flask import Response

from ...http import error_response
from ...services import coupons
from ...services.errors import CouponInactive, ShopError, ValidationError
from .auth import state

# ShopError.kind -> status. not_found is 404 for what the URL names, 422 for what the body or
# query names (an unknown SKU, variant or category is bad input, not a missing page).
FIELDS_MESSAGE = "Please correct the fields listed in details."
STATUS_FOR_KIND = {"invalid": 422, "conflict": 409, "not_found": 404, "forbidden": 403,
                   "unauthorized": 401}


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
                                               details=exc.details))


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
                                               details=details))


def _with_auth_challenge(response: Response) -> Response:
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="shop"'
    return response


def register(bp) -> None:
    bp.register_error_handler(ApiError, api_error_response)
    bp.register_error_handler(ShopError, shop_error_response)
