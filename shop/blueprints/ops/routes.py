"""Operations endpoints: liveness, readiness and Prometheus metrics."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from ...extensions import csrf, db
from ...services import jobs, metrics, redis_clients, routing

bp = Blueprint("ops", __name__)
csrf.exempt(bp)
log = logging.getLogger("shop.ops")
# Each dependency answers a readiness check within this (connect, then each read or write): a
# load balancer's check must get its 503 quickly from a server that accepts connections and then
# says nothing (hung, overloaded, half of a network partition), not wait for gunicorn's timeout.
CHECK_TIMEOUT_SECONDS = 2


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Dependencies answer: the database (and its replica), and Redis when configured.
    503 while the database or Redis is down; pooled connections are pinged, so the next check
    after the dependency returns answers 200 without a restart. A replica that is down is
    reported ("degraded", 200): the catalogue is read from the primary meanwhile
    (services.routing), so a load balancer must not take every host out for it."""
    checks: dict[str, str] = {"database": _check_database()}
    replica = routing.replica_engine()
    if replica is not None:
        checks["replica"] = _check_engine(_probe(replica) or replica)
    if current_app.config.get("REDIS_URL"):
        checks["redis"] = _check_redis()
    ready = all(v == "ok" for k, v in checks.items() if k != "replica")
    status = "ok" if ready and checks.get("replica", "ok") == "ok" else \
        "degraded" if ready else "unavailable"
    if status != "ok":
        log.warning("%s: %s", "not ready" if not ready else "replica down", checks)
    return jsonify(status=status, checks=checks), (200 if ready else 503)


@bp.get("/metrics")
def prometheus_metrics():
    """Prometheus text, summed over every worker process. With SHOP_METRICS_TOKEN set, only a
    scraper sending that bearer token gets it."""
    challenge = metrics.scrape_refused(request.headers.get("Authorization", ""),
                                       current_app.config.get("METRICS_TOKEN"))
    if challenge is not None:
        response = Response("Metrics need the scrape token.\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = challenge
        return response
    try:
        queued: int | None = jobs.queued_count()
    except Exception as error:  # Redis down: leave the gauge out; /readyz reports the outage
        if not redis_clients.skipped(error):  # the breaker's: logged once when it opened
            log.warning("could not read the job queue depth", exc_info=True)
        queued = None
    return Response(metrics.exposition(queued), content_type=metrics.CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})


def _check_database() -> str:
    probe = _probe(db.engine)
    if probe is not None:
        return _check_engine(probe)
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any failure means not ready
        db.session.rollback()
        return f"error: {type(exc).__name__}"


def _probe(engine: Engine) -> Engine | None:
    """An engine on the same server that connects afresh for each check, with the driver's
    connect, read and write timeouts at CHECK_TIMEOUT_SECONDS (the shop's own connections wait
    DATABASE_READ_TIMEOUT, longer than a load balancer's check should). None for SQLite, which
    has no server to wait for."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return None
    probes = current_app.extensions.setdefault("shop_ops_probes", {})
    if engine.url not in probes:
        seconds = CHECK_TIMEOUT_SECONDS
        probes[engine.url] = create_engine(engine.url, poolclass=NullPool, connect_args={
            "connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds})
    return probes[engine.url]


def _check_engine(engine) -> str:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _check_redis() -> str:
    # A client of its own with short timeouts: a Redis that does not answer (not only one that
    # refuses) must give a quick 503, not a health check that hangs.
    clients = current_app.extensions.setdefault("shop_ops_redis", {})
    url = current_app.config["REDIS_URL"]
    try:
        if url not in clients:
            from redis import Redis

            from ...services.redis_clients import no_maintenance_notifications

            clients[url] = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2,
                                          **no_maintenance_notifications())
        clients[url].ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
