"""One URL, two answers: helpers for endpoints that serve full pages and htmx fragments."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, request
from markupsafe import Markup

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_htmx() -> bool:
    """A fragment request: htmx, not boosted navigation or a history restore."""
    h = request.headers
    return (h.get("HX-Request") == "true" and h.get("HX-Boosted") != "true"
            and h.get("HX-History-Restore-Request") != "true")


def is_history_restore() -> bool:
    """htmx asking for a page to put back in place when the shopper goes Back to it: it only
    uses an answer of 2xx or 3xx (another status leaves the page the shopper left on screen,
    under the address of the one asked for)."""
    return request.headers.get("HX-History-Restore-Request") == "true"


def vary(response: Response) -> Response:
    """Caches must keep the page and the fragment apart."""
    response.vary.add("HX-Request")
    return response


def safe_next(target: str | None, fallback: str) -> str:
    """A same-site path to go back to, never another host, nor one with control characters
    (a line break cannot go into the Location header: the redirect would fail with a 500)."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or _CONTROL.search(target):
        return fallback
    return target


def render_block(template_name: str, block: str, **context: Any) -> Markup:
    """One block of a page's template, rendered alone: the fragment an htmx request swaps in
    is the very markup of the full page (no partial to include on every page view)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    template = app.jinja_env.get_template(template_name)
    app.update_template_context(context)
    return Markup("".join(template.blocks[block](template.new_context(context))))
