"""The JSON API, /api/v1 (SPEC section 7)."""
from flask import Blueprint, Response, request

from ...extensions import csrf

bp = Blueprint("api", __name__)
# Bearer-token requests carry no cookie and need no CSRF token; the API's own auth check
# enforces CSRF when a request is authenticated by the session cookie instead.
csrf.exempt(bp)

# The modules below register their routes and handlers on `bp`.
from . import auth, cors, docs, errors, routes  # noqa: E402,F401

errors.register(bp)


@bp.before_request
def answer_preflight() -> Response | None:
    """CORS preflight requests get their answer before any authentication."""
    return cors.preflight()


@bp.after_request
def api_headers(response: Response) -> Response:
    """CORS headers; answers for a user (token or cookie), and to any request that is not a
    read (a new token's secret, a registration), are never stored by caches."""
    if auth.state().get("user") is not None or "Authorization" in request.headers \
            or request.method not in ("GET", "HEAD", "OPTIONS"):
        response.headers["Cache-Control"] = "private, no-store"
        response.vary.add("Authorization")
    return cors.add_headers(response)
