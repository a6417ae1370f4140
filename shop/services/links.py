"""Absolute links to the shop's pages for readers outside a page: mail, Stripe's return and
cancel addresses.

With SHOP_BASE_URL set they are built on it, never on the Host header of the request that
happened to make them: nginx passes any Host on, and a link built from `Host: evil.example`
would send a shopper (or someone else, by their email address) to another site. Without it,
on the request's own address (development, tests)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, url_for


def public_url(endpoint: str, base_url: str | None = None, **values: object) -> str:
    """The absolute URL of `endpoint` with `values`: on SHOP_BASE_URL when it is set (over any
    `base_url`, which a job may have been given from a request's Host header), else on
    `base_url`, else on the current request's address."""
    base = current_app.config.get("BASE_URL") or base_url
    if not base:
        return url_for(endpoint, _external=True, **values)
    parts = urlsplit(base)
    adapter = current_app.url_map.bind(parts.netloc, script_name=parts.path or "/",
                                       url_scheme=parts.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)
