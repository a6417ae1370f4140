"""CORS for the API: off unless CORS_ORIGINS lists origins ("*" allows any).

Credentials are never allowed cross-origin: other sites call the API with bearer tokens, so
the session cookie (and its CSRF token) stays a same-site affair.
"""
from __future__ import annotations

from flask import Response, current_app, request

ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-ID"
EXPOSED_HEADERS = ("X-Request-ID, Location, Retry-After, WWW-Authenticate, Idempotent-Replayed, "
                   "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset")
MAX_AGE = "600"


def _origins() -> list[str]:
    return list(current_app.config.get("CORS_ORIGINS") or [])


def allowed_origin() -> str | None:
    """The value for Access-Control-Allow-Origin, or None when this origin is not allowed."""
    origin = request.headers.get("Origin")
    origins = _origins()
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def preflight() -> Response | None:
    """Answer a CORS preflight (OPTIONS with Access-Control-Request-Method)."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    response = Response(status=204)
    origin = allowed_origin()
    if origin is not None:
        methods = current_app.create_url_adapter(request).allowed_methods()
        response.headers["Access-Control-Allow-Methods"] = ", ".join(
            sorted(m for m in methods if m not in ("HEAD", "OPTIONS")))
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response


def add_headers(response: Response) -> Response:
    """Allow the configured origins to read the answer; caches keep origins apart."""
    if not _origins():
        return response
    response.vary.add("Origin")
    origin = allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response
