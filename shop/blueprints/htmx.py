"""One URL, two answers: helpers for endpoints that serve full pages and htmx fragments."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, request


def is_htmx() -> bool:
    """A fragment request: htmx, not boosted navigation or a history restore."""
    h = request.headers
    return (h.get("HX-Request") == "true" and h.get("HX-Boosted") != "true"
            and h.get("HX-History-Restore-Request") != "true")


def vary(response: Response) -> Response:
    """Caches must keep the page and the fragment apart."""
    response.vary.add("HX-Request")
    return response


def safe_next(target: str | None, fallback: str) -> str:
    """A same-site path to go back to, never another host."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return fallback
    return target
