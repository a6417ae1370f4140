"""Background jobs: an RQ queue on Redis when REDIS_URL is set, inline otherwise."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import after_this_request, current_app, g, has_request_context, request

log = logging.getLogger("shop.jobs")
QUEUE_NAME = "shop"
RETRY_INTERVALS = [10, 60, 300]


def redis_connection():
    """The Redis client for queueing jobs and reading the queue (None without REDIS_URL), with
    the short timeouts of a request (services.redis_clients)."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    ext = current_app.extensions.setdefault("shop_redis", {})
    if url not in ext:
        from .redis_clients import breaker, client

        ext[url] = client(url, current_app.config, breaker(current_app))
    return ext[url]


def worker_connection():
    """A new Redis client for the RQ worker (None without REDIS_URL). Not the one above: the
    worker blocks on BLPOP for minutes, and RQ sets a read timeout longer than that on the
    connection's pool, which must not be the pool a request uses."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    from redis import Redis

    from .redis_clients import worker_options

    return Redis.from_url(url, **worker_options(current_app.config))


def queue_name() -> str:
    """The RQ queue of this shop (JOBS_QUEUE; tests use their own)."""
    return current_app.config.get("JOBS_QUEUE") or QUEUE_NAME


def queue():
    from rq import Queue

    conn = redis_connection()
    return Queue(queue_name(), connection=conn) if conn is not None else None


def _origin() -> dict[str, str]:
    """What a job needs from the request that queued it: its id (for the logs) and the shop's
    base URL (for links in mail): SHOP_BASE_URL when it is set, never then the request's own
    address, whose Host header anyone can forge. A job queued by a job passes its own on."""
    if has_request_context():
        base_url = current_app.config.get("BASE_URL") or request.url_root
        return {"request_id": g.get("request_id", ""), "base_url": base_url}
    from rq import get_current_job

    job = get_current_job()
    meta = (job.meta or {}) if job is not None else {}
    return {key: str(meta.get(key) or "") for key in ("request_id", "base_url")}


def enqueue(func: Callable[..., Any], *args: Any, delay: timedelta | None = None,
            after_response: bool = False) -> None:
    """Run `func(*args)` in the worker (or now, inline, without Redis or while it cannot be
    reached). Failures of inline jobs are logged, never shown to the shopper whose request
    queued them.

    `after_response`: inline, the job runs once the request's answer has been sent (when the
    server closes it), not while the client waits. For a job whose work depends on something
    the answer must not tell: a reset mail goes out only to an email with an account, and an
    answer that waited for the mail (an SMTP round trip) told which emails have one."""
    q = queue()
    if q is not None:
        from redis.exceptions import RedisError
        from rq import Retry

        # A mail server or Stripe hiccup should not lose the job: three more tries, spaced out.
        # The description, which RQ logs for every job, is the function's name alone: by
        # default it is the call with its arguments (a reset's email in the worker's log).
        options = {"meta": _origin(), "retry": Retry(max=3, interval=RETRY_INTERVALS),
                   "description": f"{getattr(func, '__module__', '')}.{_name(func)}"}
        try:
            if delay is not None:
                q.enqueue_in(delay, func, *args, **options)
            else:
                q.enqueue(func, *args, **options)
            return
        except RedisError as error:
            # What queued the job (an order placed, a reset asked for) is done and committed:
            # a Redis outage must not turn its answer into an error. Run it here instead.
            from .redis_clients import skipped

            quiet = skipped(error)  # the breaker's: the outage was logged when it opened
            log.log(logging.INFO if quiet else logging.WARNING, "could not queue %s; %s",
                    _name(func), "left to the expire-orders sweep" if delay is not None
                    else "running it inline", exc_info=not quiet)
    if delay is not None:
        # Without a worker nothing can wait; `flask --app wsgi expire-orders` (cron) covers it.
        return
    if after_response and has_request_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]

        def when_sent() -> None:
            with app.app_context():
                _run_inline(func, args)

        @after_this_request
        def run_when_sent(response):
            response.call_on_close(when_sent)
            return response

        return
    _run_inline(func, args)


def _run_inline(func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        func(*args)
    except Exception:
        log.exception("inline job %s failed", _name(func))


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", repr(func))


def queued_count() -> int:
    """Jobs waiting in the queue (0 without Redis)."""
    q = queue()
    return q.count if q is not None else 0
