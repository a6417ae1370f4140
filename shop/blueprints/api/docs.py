"""/api/docs: the API's documentation for people, from files in shop/static/api-docs/
(a vendored, pinned Swagger UI); without JavaScript the server-rendered list of operations
remains."""
from __future__ import annotations

from flask import current_app, render_template

from ...extensions import limiter
from . import bp
from .auth import api_limit, rate_limit_key
from .openapi import document


@bp.get("/docs")
@limiter.shared_limit(api_limit, scope="api", key_func=rate_limit_key, override_defaults=False)
def docs():
    """The documentation page."""
    return render_template("api/docs.html", spec=document(current_app))
