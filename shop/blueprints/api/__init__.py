"""The JSON API, /api/v1 (SPEC section 7)."""
from flask import Blueprint

from ...extensions import csrf

bp = Blueprint("api", __name__)
# Bearer-token requests carry no cookie and need no CSRF token; the API's own auth check
# enforces CSRF when a request is authenticated by the session cookie instead.
csrf.exempt(bp)
