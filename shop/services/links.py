"""Absolute links to the shop's pages for readers outside a page: mail, Stripe's return and
cancel addresses.

With SHOP_BASE_URL set they are built on it, never on the Host header of the request that
happened to make them: nginx passes any Host on, and a link built from `Host: evil.example`
would send a shopper (or someone else, by their email address) to another site. Without it,
on the request's own address (development, tests)."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import current_app, has_request_context, url_for

log = logging.getLogger("shop.mail")


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


def public_url_or_none(endpoint: str, base_url: str | None = None,
                       **values: object) -> str | None:
    """public_url, or None when the shop's address is unknown: no SHOP_BASE_URL, no address
    from a request (a CLI command such as the expiry sweep run from cron without it). The
    caller leaves the link out rather than lose the mail; the log says what to set."""
    config = current_app.config
    if config.get("BASE_URL") or base_url or config.get("SERVER_NAME") or has_request_context():
        return public_url(endpoint, base_url, **values)
    log.warning("SHOP_BASE_URL is not set and no request gives the shop's address: a mail "
                "goes out without its link to %s", endpoint)
    return None
