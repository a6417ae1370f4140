"""Catalogue cache invalidation: every write that changes what shoppers see of the catalogue
(product, variant, price, stock by staff, category, image, review approval) calls
`catalog_changed()`, which moves the catalogue version that cache keys include."""
from __future__ import annotations

import logging

from flask import current_app

log = logging.getLogger("shop.cache")
VERSION_KEY = "shop:catalog:version"


def _redis():
    from .jobs import redis_connection

    return redis_connection()


def catalog_version() -> int:
    """The current catalogue version (0 without Redis: nothing is cached then)."""
    conn = _redis()
    if conn is None:
        return 0
    try:
        return int(conn.get(VERSION_KEY) or 0)
    except Exception:  # a cache outage must not take pages down
        log.warning("redis unavailable: catalogue cache bypassed", exc_info=True)
        return -1


def catalog_changed() -> None:
    """Invalidate every cached catalogue page and fragment at once."""
    conn = _redis()
    if conn is None:
        return
    try:
        conn.incr(VERSION_KEY)
    except Exception:
        log.error("could not invalidate the catalogue cache", exc_info=True)
        current_app.logger.error("catalogue cache invalidation failed")
