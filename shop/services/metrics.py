"""Prometheus metrics for /metrics: requests, latency, orders placed, payment failures and the
depth of the job queue.

Several gunicorn workers each count their own requests, so the numbers are kept in
prometheus_client's multiprocess mode: every process writes its values to files in
PROMETHEUS_MULTIPROC_DIR and a scrape adds them up, whichever worker answers it. The variable
must be in the environment before prometheus_client is first imported (gunicorn.conf.py sets
it); without it (tests, `flask run`, a single process) the normal in-process registry is used.

Outside the web workers the shop counts too: a job in the RQ worker (expiring an unpaid order
whose late or mismatched payment is refunded) and cron's `expire-orders`. The worker, started
with a PROMETHEUS_MULTIPROC_DIR of its own, serves the counts of its work horses and of the
cron runs that share its directory on a port of its own (`serve`, SHOP_WORKER_METRICS_BIND;
docs/DEPLOY.md). Every process folds its files into the directory's archive when it exits
(metrics_files), so a count is neither lost nor read twice, however many processes come and go.
"""
from __future__ import annotations

import atexit
import fcntl
import hmac
import logging
import os
import threading

from . import metrics_files

log = logging.getLogger("shop.metrics")

_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
if not _MULTIPROC_DIR:
    # Set but empty (`PROMETHEUS_MULTIPROC_DIR= flask ...`): prometheus_client would take the
    # current directory and leave its files there.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
else:
    # Any process that imports this module (a web worker, the job worker) can write its files.
    try:
        os.makedirs(_MULTIPROC_DIR, exist_ok=True)
        if not os.access(_MULTIPROC_DIR, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write to {_MULTIPROC_DIR}")
    except OSError as exc:
        # A cron run on a host whose worker never started (no directory yet): its counts are
        # lost, but the expiry it runs must not be.
        log.warning("PROMETHEUS_MULTIPROC_DIR unusable (%s): this process's metrics are not "
                    "shared", exc)
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        _MULTIPROC_DIR = None

from collections.abc import Iterable, Iterator  # noqa: E402  (after the environment check)

from prometheus_client import (  # noqa: E402
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4  # noqa: E402

# Taken while the files of a process that has exited are folded into the archive.
METRICS_LOCK = metrics_files.METRICS_LOCK
# The classic text format: every Prometheus version (and most other scrapers) reads it.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

HTTP_REQUESTS = Counter("shop_http_requests_total", "HTTP requests by method, endpoint and status",
                        ["method", "endpoint", "status"])
HTTP_DURATION = Histogram("shop_http_request_duration_seconds",
                          "Time to answer an HTTP request, by endpoint", ["endpoint"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                                   5.0, 10.0))
ORDERS_PLACED = Counter("shop_orders_placed_total", "Orders placed")
PAYMENT_FAILURES = Counter("shop_payment_failures_total", "Payments that failed",
                           ["provider"])
# A series at 0 from the start, so dashboards and alerts see "no failures" rather than nothing.
PAYMENT_FAILURES.labels(provider="stripe")


def multiprocess_dir() -> str | None:
    """The directory shared by the worker processes (None: one process, in-memory registry)."""
    return _MULTIPROC_DIR


# The labelled series each request updates, by (method, endpoint, status): looking them up
# through labels() cost more than updating them. prometheus_client keeps the same objects;
# this only skips the lookup (bounded).
_SERIES: dict[tuple[str, str, int], tuple] = {}
# The `method` label: any other method a client makes up (gunicorn passes "FOO" or "X1" on to
# the app, which answers 405) counts as "other". Each label value is a series kept forever in
# every worker's metrics file and in Prometheus: a client must not be able to add them.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    key = (method, endpoint, status)
    series = _SERIES.get(key)
    if series is None:
        known = method in KNOWN_METHODS
        series = (HTTP_REQUESTS.labels(method if known else "other", endpoint, str(status)),
                  HTTP_DURATION.labels(endpoint))
        if known and len(_SERIES) < 2048:
            _SERIES[key] = series
    series[0].inc()
    series[1].observe(seconds)


def order_placed() -> None:
    ORDERS_PLACED.inc()


def payment_failed(provider: str) -> None:
    PAYMENT_FAILURES.labels(provider=provider).inc()


class _Scrape:
    """What one scrape exposes: the counters of every process plus values read right now."""

    def __init__(self, base, live: Iterable[Metric]) -> None:
        self._base = base
        self._live = list(live)

    def collect(self) -> Iterator[Metric]:
        yield from self._base.collect()
        yield from self._live


def exposition(jobs_queued: int | None) -> bytes:
    """The Prometheus text for /metrics. `jobs_queued` is read at scrape time (None: unknown,
    e.g. Redis is down, and then the gauge is left out rather than reported as 0)."""
    live: list[Metric] = []
    if jobs_queued is not None:
        live.append(GaugeMetricFamily("shop_jobs_queued", "Background jobs waiting in the queue",
                                      value=jobs_queued))
    if not _MULTIPROC_DIR:
        return generate_latest(_Scrape(REGISTRY, live))  # type: ignore[arg-type]
    base = CollectorRegistry()
    multiprocess.MultiProcessCollector(base, path=_MULTIPROC_DIR)
    # gunicorn's master folds a dead worker's files into an archive (gunicorn.conf.py) under
    # this lock: while it is held shared, no worker's counts are in two files, or in none.
    with open(os.path.join(_MULTIPROC_DIR, METRICS_LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        return generate_latest(_Scrape(base, live))  # type: ignore[arg-type]


def scrape_refused(authorization: str, token: str | None) -> str | None:
    """None when a scrape sending this Authorization header may read the metrics (always
    without a token, SHOP_METRICS_TOKEN; else only with `Bearer <token>`: the scheme is
    case-insensitive, RFC 9110, the token is not); otherwise the 401's WWW-Authenticate,
    naming a bearer token that was sent and is wrong (RFC 6750 3.1)."""
    if not token:
        return None
    scheme, _, sent = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return 'Bearer realm="metrics"'
    if hmac.compare_digest(sent.strip().encode(), token.encode()):
        return None
    return 'Bearer realm="metrics", error="invalid_token"'


def serve(bind: str, token: str | None):
    """Serve GET /metrics on `bind` ("address:port"; port 0 takes a free one) from a thread of
    this process: the RQ worker's own endpoint, reporting what its work horses and the cron
    runs sharing its directory counted. Returns the server (`server_address`, `shutdown()`)."""
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    number = int(port) if port.isdigit() else -1
    if not 0 <= number <= 65535:
        # int() said "invalid literal for int() with base 10", and a port past 65535 was an
        # OverflowError from bind(), a traceback.
        raise ValueError(f"the port must be a whole number from 0 to 65535, not {port!r}")
    ipv6 = ":" in host

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ipv6 else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds are not worth a log line each."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Only /metrics is served here.\n"]
        challenge = scrape_refused(environ.get("HTTP_AUTHORIZATION", ""), token)
        if challenge is not None:
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                                ("WWW-Authenticate", challenge)])
            return [b"Metrics need the scrape token.\n"]
        body = exposition(None)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = make_server(host, number, app, server_class=Server, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    _SERVERS.append(server)
    return server


_SERVERS: list = []  # what serve() started in this process


def close_inherited_servers() -> None:
    """In a process forked from one that serves /metrics (the worker's scheduler): close the
    listening socket it inherited. It serves nothing here (the thread did not cross the
    fork), but kept open it outlived a killed worker, so scrapes hung and the worker could
    not be started again on its port."""
    while _SERVERS:
        _SERVERS.pop().socket.close()


def _fold_own_files() -> None:
    """At exit, this process's counts go into the directory's archive. A process killed
    outright cannot: gunicorn's master folds its workers, the RQ worker its work horses and,
    when it starts, what any process that is gone left behind."""
    try:
        metrics_files.fold(_MULTIPROC_DIR, os.getpid())  # type: ignore[arg-type]
    except Exception:  # the counts stay in the process's file, still read by every scrape
        log.warning("could not fold the metrics of process %s", os.getpid(), exc_info=True)


if _MULTIPROC_DIR:
    atexit.register(_fold_own_files)
