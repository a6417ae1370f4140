"""Catalogue cache invalidation: every write that changes what shoppers see of the catalogue
(product, variant, price, stock by staff, category, image, review approval) calls
`catalog_changed()`, which moves the catalogue version that cache keys include.

The version lives in the cache's own Redis (Flask-Caching's backend, under CACHE_KEY_PREFIX),
so every worker on every host sees a change at once: a cached page carries the version it was
rendered at and is served only while that is still the current version. Without Redis
(NullCache) nothing is cached and the version is always 0. Stock taken by orders does not
move the version (it would empty the cache on every checkout); CATALOG_CACHE_SECONDS bounds
how long a page may show stock from before an order.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app

from ..extensions import cache

log = logging.getLogger("shop.cache")
VERSION_KEY = "catalog:version"


def backend(app: Flask | None = None) -> Any | None:
    """Flask-Caching's Redis backend for `app` (or the current app); None when caching is off."""
    app = app or current_app
    if not app.config.get("REDIS_URL") or app.config.get("CATALOG_CACHE_SECONDS", 0) <= 0:
        return None
    store = app.extensions.get("cache", {}).get(cache)
    return store if hasattr(store, "get_many") and hasattr(store, "inc") else None


def catalog_version() -> int:
    """The current catalogue version (0 without Redis; -1 when Redis does not answer)."""
    store = backend()
    if store is None:
        return 0
    try:
        return int(store.get(VERSION_KEY) or 0)
    except Exception:  # a cache outage must not take pages down
        log.warning("redis unavailable: catalogue cache bypassed", exc_info=True)
        return -1


def catalog_changed() -> None:
    """Invalidate every cached catalogue page and fragment at once (all workers, all hosts)."""
    store = backend()
    if store is None:
        return
    try:
        store.inc(VERSION_KEY)
    except Exception:
        log.error("could not invalidate the catalogue cache", exc_info=True)
        current_app.logger.error("catalogue cache invalidation failed")
