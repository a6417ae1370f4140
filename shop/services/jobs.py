"""Background jobs: an RQ queue on Redis when REDIS_URL is set, inline otherwise."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import current_app, g, has_request_context

log = logging.getLogger("shop.jobs")
QUEUE_NAME = "shop"


def redis_connection():
    """The Redis client for jobs (None without REDIS_URL)."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    ext = current_app.extensions.setdefault("shop_redis", {})
    if url not in ext:
        from redis import Redis

        ext[url] = Redis.from_url(url)
    return ext[url]


def queue():
    from rq import Queue

    conn = redis_connection()
    return Queue(QUEUE_NAME, connection=conn) if conn is not None else None


def enqueue(func: Callable[..., Any], *args: Any, delay: timedelta | None = None) -> None:
    """Run `func(*args)` in the worker (or now, inline, without Redis). Failures of inline
    jobs are logged, never shown to the shopper whose request queued them."""
    request_id = g.get("request_id", "") if has_request_context() else ""
    q = queue()
    if q is not None:
        meta = {"request_id": request_id}
        if delay is not None:
            q.enqueue_in(delay, func, *args, meta=meta)
        else:
            q.enqueue(func, *args, meta=meta)
        return
    if delay is not None:
        # Without a worker nothing can wait; `flask --app wsgi expire-orders` (cron) covers it.
        return
    try:
        func(*args)
    except Exception:
        log.exception("inline job %s failed", getattr(func, "__name__", func))


def queued_count() -> int:
    """Jobs waiting in the queue (0 without Redis)."""
    q = queue()
    return q.count if q is not None else 0
