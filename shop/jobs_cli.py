"""CLI for background work: `flask --app wsgi worker` (the RQ worker, with the scheduler that
runs delayed jobs such as expiring unpaid orders) and `flask --app wsgi expire-orders` (the
same expiry as a sweep, for cron, needed when the shop runs without Redis)."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

import click
from flask import Flask, current_app

log = logging.getLogger("shop.jobs")


def _where(url: str) -> str:
    """Where a Redis URL points, without its password: host:port/db, or the socket's path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def init_app(app: Flask) -> None:
    from .commands import database_errors

    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Run the jobs waiting now, then stop.")
    @click.option("--queue", "queue_names", multiple=True,
                  help="Queue to work on (repeatable; default: the shop's JOBS_QUEUE).")
    @click.option("--simple", is_flag=True,
                  help="Run jobs in this process instead of forking one per job.")
    @click.option("--no-scheduler", is_flag=True,
                  help="Do not run delayed jobs (another worker schedules them).")
    @click.option("--metrics-bind", metavar="ADDRESS:PORT",
                  help="Serve /metrics (what jobs and cron count) here "
                       "(default: SHOP_WORKER_METRICS_BIND; none: not served).")
    def worker(burst: bool, queue_names: tuple[str, ...], simple: bool,
               no_scheduler: bool, metrics_bind: str | None) -> None:
        """Run background jobs from Redis (REDIS_URL) until stopped (SIGTERM: finish the
        current job, then exit)."""
        from redis.exceptions import RedisError

        from .services import metrics, metrics_files
        from .worker import make_worker

        try:
            _ping(current_app.config)
            rq_worker = make_worker(current_app._get_current_object(), simple=simple,
                                    queue_names=list(queue_names) or None)
        except RedisError as exc:  # RQ names the worker in Redis as it is made
            reason = str(exc).rstrip(".")
            raise click.ClickException(
                f"Redis at REDIS_URL ({_where(current_app.config['REDIS_URL'])}) does not "
                f"answer: {reason}. Start Redis or correct REDIS_URL.") from None
        if rq_worker is None:
            raise click.ClickException(
                "REDIS_URL is not set: jobs run inline in the web process and no worker is "
                "needed. Run `flask --app wsgi expire-orders` from cron to expire unpaid orders.")
        bind = metrics_bind or current_app.config.get("WORKER_METRICS_BIND")
        path = metrics.multiprocess_dir()
        if bind and not path and not simple:
            raise click.ClickException(
                "Serving the worker's metrics needs PROMETHEUS_MULTIPROC_DIR (a directory of "
                "the worker's own, e.g. /var/lib/shop-worker/metrics): each job runs in a "
                "process of its own, whose counts would be lost without it.")
        if path:
            # What processes that are gone (the last run, a killed job, a crashed cron run)
            # left behind goes into the archive: counted once, however often this restarts.
            metrics_files.fold_gone(path)
        if bind:
            try:
                server = metrics.serve(bind, current_app.config.get("METRICS_TOKEN"))
            except (ValueError, OSError) as exc:  # "garbage", a port taken, a wrong host
                source = "--metrics-bind" if metrics_bind else "SHOP_WORKER_METRICS_BIND"
                raise click.ClickException(
                    f"{source} ({bind!r}) cannot be served: {exc}. Give ADDRESS:PORT of a "
                    f"free port, e.g. 127.0.0.1:9101.") from None
            host, port = server.server_address[:2]
            host = f"[{host}]" if ":" in host else host
            log.info("Metrics on http://%s:%s/metrics.", host, port)
        # Through the shop's logger: in production every line on stderr is one JSON object.
        log.info("Worker on %s%s.", ", ".join(q.name for q in rq_worker.queues),
                 " (burst)" if burst else "")
        where = _where(current_app.config["REDIS_URL"])
        try:
            rq_worker.work(burst=burst, with_scheduler=not no_scheduler)
        except RedisError as exc:  # RQ's own clean-up needs Redis too, and failed
            log.error("The worker lost Redis at REDIS_URL (%s): %s; it stops here, for its "
                      "supervisor to start it again.", where, exc)
            raise SystemExit(1) from None
        # RQ 2.12 notes a SIGTERM or SIGINT there (recheck on an RQ upgrade).
        if not burst and rq_worker._shutdown_requested_date is None:
            # RQ quit on an error it has logged (Redis gone while a job ran, say).
            log.error("The worker lost Redis at REDIS_URL (%s) or met the error logged above; "
                      "it stops here, for its supervisor to start it again.", where)
            raise SystemExit(1)

    def _ping(config) -> None:
        """Ask Redis once, waiting at most 5 s: a Redis that accepts connections but never
        answers kept the worker's start silent for 7 minutes (RQ's own read timeout) before
        it said so."""
        url = config.get("REDIS_URL")
        if url:
            from .services.redis_clients import client

            connection = client(url, config, socket_timeout=5.0, socket_connect_timeout=5.0)
            try:
                connection.ping()
            finally:
                connection.close()

    @app.cli.command("expire-orders")
    @database_errors
    def expire_orders() -> None:
        """Cancel unpaid Stripe orders older than UNPAID_ORDER_TIMEOUT_MINUTES, releasing their
        stock (safe to run as often as you like, e.g. every 5 minutes from cron)."""
        from .services.payments import stripe_provider
        from .services.payments.expiry import expire_unpaid_orders, unpaid_past_deadline

        if not stripe_provider.enabled() and unpaid_past_deadline():
            # Run without the shop's environment (a cron line that did not load it): the
            # orders' Checkout Sessions would stay open, payable after their stock was given
            # back.
            raise click.ClickException(
                "STRIPE_SECRET_KEY is not set, but unpaid card orders are due to expire: "
                "their Stripe Checkout Sessions could not be closed and could still be paid. "
                "Nothing was cancelled. Run this with the shop's environment "
                "(set -a; . /etc/shop/shop.env; set +a; see docs/DEPLOY.md).")
        base_url = current_app.config.get("BASE_URL")
        if base_url and not current_app.config.get("SERVER_NAME"):
            # Mail sent inline for the cancelled orders links to the shop's public address.
            with current_app.test_request_context("/", base_url=base_url):
                count = expire_unpaid_orders()
        else:
            if not current_app.config.get("SERVER_NAME"):
                click.echo("SHOP_BASE_URL is not set: the mail this sends (order cancelled, "
                           "paid) quotes the order number instead of linking to the order. "
                           "Set it to the shop's public address.", err=True)
            count = expire_unpaid_orders()
        click.echo(f"Cancelled {count} unpaid order{'s' if count != 1 else ''}.")
