"""Gunicorn settings, read from the environment (see docs/DEPLOY.md).

Only the standard library and gunicorn are imported here (and config.py read once, in a
private copy, to check it): the master process must not import the shop (or prometheus_client)
before PROMETHEUS_MULTIPROC_DIR is set, and workers load the app after fork.
"""
import glob
import importlib.util
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime

from gunicorn import glogging
from gunicorn.errors import HaltServer


def _setting(name: str, default: int, low: int) -> int:
    """A whole number from the environment, at least `low`; anything else stops the start
    with a line that names the variable (not a traceback, nor a worker count of 0)."""
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        raise SystemExit(f"{name} must be a whole number of at least {low}, not {raw!r}")
    return value


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:5000")
workers = _setting("WEB_CONCURRENCY", min(4, multiprocessing.cpu_count() * 2), 1)
threads = _setting("GUNICORN_THREADS", 1, 1)
worker_class = "sync" if threads == 1 else "gthread"
timeout = _setting("GUNICORN_TIMEOUT", 30, 1)
graceful_timeout = _setting("GUNICORN_GRACEFUL_TIMEOUT", 20, 0)
keepalive = _setting("GUNICORN_KEEPALIVE", 5, 0)
# Recycle workers now and then so a slow leak can never take a host down (0: never).
max_requests = _setting("GUNICORN_MAX_REQUESTS", 5000, 0)
max_requests_jitter = _setting("GUNICORN_MAX_REQUESTS_JITTER", 500, 0)
# A write that keeps meeting row locks is given up after DATABASE_RETRY_BUDGET seconds with the
# shop's 503 (services.database.retrying): past the worker timeout, gunicorn would kill the
# worker first and the shopper would get the proxy's bare 502.
_retry_budget = os.environ.get("DATABASE_RETRY_BUDGET", "").strip() or "25"
try:
    _budget_fits = float(_retry_budget) < timeout
except ValueError:
    _budget_fits = True  # the shop's own start refuses it, naming it
if not _budget_fits:
    raise SystemExit(f"DATABASE_RETRY_BUDGET ({_retry_budget} s) must be below GUNICORN_TIMEOUT "
                     f"({timeout} s): raise the timeout or lower the budget")


def _check_shop_settings() -> None:
    """The shop's own settings (config.py) read and checked once here, as create_app checks
    them, in a private copy of the module: a value it refuses stops the start with its one
    line, before any worker starts. Each worker would write the line, and gunicorn's master
    could end on a traceback of its own (see on_starting)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.py")
    spec = importlib.util.spec_from_file_location("_shop_settings_check", path)
    if spec is None or spec.loader is None:
        return
    settings = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(settings)
        settings.check_environment()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


_check_shop_settings()
# Heartbeat files in memory: a busy disk must not make the master kill healthy workers.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (
    "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None)
# The shop logs every request itself (logger shop.access, with the request id).
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None


class _Logger(glogging.Logger):
    """Gunicorn's logger, which builds an access line only for an access log (GUNICORN_ACCESSLOG,
    --access-logfile, or syslog). Gunicorn builds every request's access-log fields whenever
    logconfig_dict is set (as it is in production, below), even though gunicorn.access then
    has no handler: on a hello-world answer that was a seventh of the worker's CPU, thrown
    away."""

    def access(self, resp, req, environ, request_time):
        cfg = self.cfg
        if cfg.accesslog or (cfg.syslog and not cfg.disable_redirect_access_to_syslog):
            super().access(resp, req, environ, request_time)


logger_class = _Logger
errorlog = "-"
loglevel = (os.environ.get("GUNICORN_LOGLEVEL", "").strip() or "info").lower()
_LOGLEVELS = ("debug", "info", "warning", "error", "critical")
if loglevel not in _LOGLEVELS:
    # Gunicorn took any other word as info, or in production (logconfig_dict) stopped with
    # "Unable to configure logger 'gunicorn.error'", naming no setting.
    raise SystemExit(f"GUNICORN_LOGLEVEL must be one of {', '.join(_LOGLEVELS)}, "
                     f"not {os.environ['GUNICORN_LOGLEVEL']!r}")
# Behind nginx: trust X-Forwarded-* only from the proxy's address.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Gunicorn's control socket (`gunicornc`) has one default path per user: two masters on a host
# (blue/green, tests, a benchmark) would fight over it. Off unless a path is given.
_control = os.environ.get("GUNICORN_CONTROL_SOCKET")
if _control:
    control_socket = _control
else:
    control_socket_disable = True

# Metrics across workers: prometheus_client's multiprocess mode needs a directory shared by the
# workers of this master, known before any worker imports prometheus_client. Without one given,
# each master makes its own (so two masters on one host never add up each other's numbers).
# (A config reload runs this file again: the directory made the first time is kept.)
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shop-metrics-")
    os.environ["SHOP_OWN_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):
    """Start counting from zero: files left by a previous run belong to dead processes."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)
    _stop_once_on_a_boot_failure(server)


def _stop_once_on_a_boot_failure(server) -> None:
    """A worker that fails to boot stops the master (HaltServer, "Worker failed to boot.",
    exit status 3). When several fail together, gunicorn (27.0.1) meets the next one's exit
    while it stops the others for the first, raises HaltServer again inside its own halt, and
    ends on a traceback with exit status 1 under the workers' real reason. Once stopping, a
    further worker's boot failure is only logged (gunicorn has logged its exit code)."""
    reap_workers = server.reap_workers
    stopping = False

    def reap_workers_once_stopping() -> None:
        nonlocal stopping
        while True:
            try:
                reap_workers()
                return
            except HaltServer:
                if not stopping:
                    stopping = True
                    raise
                # Reap the rest: gunicorn left its loop at the worker that raised.

    server.reap_workers = reap_workers_once_stopping


def child_exit(server, worker):
    """A worker exited (a crash, max_requests recycling, a reload): drop its live gauges and
    fold its counters and histograms into one archive file per type, so its counts stay in the
    totals while the directory keeps one set of files per live worker, not one per worker that
    ever ran (every scrape reads them all). A worker that exits normally has folded its own
    files already (shop.services.metrics, at exit); then there is nothing left to fold."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    try:
        _metrics_files().fold(os.environ["PROMETHEUS_MULTIPROC_DIR"], worker.pid)
    except Exception:  # never let bookkeeping take the master down; the files still add up
        server.log.warning("could not fold the metrics of worker %s", worker.pid, exc_info=True)


def _metrics_files():
    """shop/services/metrics_files.py, loaded by its path: importing the `shop` package here
    would load the app into the master, and every worker forked after a reload would run the
    old code."""
    module = sys.modules.get("_shop_metrics_files")
    if module is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shop", "services",
                            "metrics_files.py")
        spec = importlib.util.spec_from_file_location("_shop_metrics_files", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["_shop_metrics_files"] = module
    return module


def on_exit(server):
    """Remove the metrics directory if this master made it."""
    own = os.environ.get("SHOP_OWN_METRICS_DIR")
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)


class _JsonFormatter(logging.Formatter):
    """Gunicorn's own lines (boot, worker timeouts) as JSON, like the shop's in production."""

    def format(self, record):
        data = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage(), "request_id": "", "pid": record.process}
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


if os.environ.get("SHOP_ENV") == "production":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        # The shop configures its own loggers (and the root logger) in each worker.
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["json_stderr"],
                               "propagate": False, "qualname": "gunicorn.error"},
            # Off unless GUNICORN_ACCESSLOG asks for it: shop.access already logs each request.
            "gunicorn.access": {"level": "INFO", "handlers": ["json_access"] if accesslog else [],
                                "propagate": False, "qualname": "gunicorn.access"},
        },
        "handlers": {
            "json_stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"},
            # "-" is stdout, as gunicorn reads it; a path is that file (reopened on SIGUSR1,
            # as gunicorn does for its own log files).
            "json_access": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stdout"} if accesslog in (None, "-") else
                           {"class": "logging.FileHandler", "formatter": "json",
                            "filename": accesslog},
        },
        "formatters": {"json": {"()": _JsonFormatter}},
    }
