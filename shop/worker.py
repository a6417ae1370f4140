"""The RQ worker that runs the shop's background jobs (mail, low-stock alerts, expiring unpaid
orders) inside the application: each job gets a fresh app context, the shop's base URL for
links in mail, and the id of the request that queued it for its log lines."""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, g
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker, Worker
from rq import scheduler as rq_scheduler
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.queue import Queue

from .extensions import db
from .http import worker_took

log = logging.getLogger("shop.jobs")


@contextmanager
def job_context(app: Flask, job: Job) -> Iterator[None]:
    """The context a job runs in. On SHOP_BASE_URL (or, without it, the address of the request
    that queued the job), url_for(..., _external=True) builds the shop's real links: a forged
    Host header on that request must not reach a mail when the shop knows its address."""
    meta = job.meta or {}
    base_url = app.config.get("BASE_URL") or meta.get("base_url")
    if base_url and not app.config.get("SERVER_NAME"):
        ctx = app.test_request_context("/", base_url=base_url)
    else:
        ctx = app.app_context()
    with ctx:
        g.request_id = str(meta.get("request_id") or "")
        try:
            yield
        finally:
            db.session.remove()


class ShopQueue(Queue):
    """The worker's queues: a job taken from one is noted for the log (shop.http), so that
    RQ's own lines about it, from "taken" to "Job OK", carry the id of the request that
    queued it."""

    @classmethod
    def dequeue_any(cls, *args: Any, **kwargs: Any):  # type: ignore[override]
        result = super().dequeue_any(*args, **kwargs)
        worker_took(result[0] if result is not None else None)
        return result


class ShopScheduler(rq_scheduler.RQScheduler):
    """RQ's scheduler (the process that queues delayed jobs when they are due, such as the
    expiry of unpaid orders), living through a Redis blip.

    RQ's ended its process at the first error from Redis, and the worker started another only
    at its next maintenance pass, up to 10 minutes later: every blip made delayed jobs late by
    that much. Now a round that Redis fails is logged in one line and tried again after the
    interval. Anything else still ends the process, logged once, by RQ, as one record (JSON in
    production), not a second time by multiprocessing as a plain-text traceback."""

    def work(self) -> None:
        while True:
            try:
                super().work()
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if self._stop_requested:
                    return
                self.log.warning("Scheduler could not reach Redis (%s); trying again in %s s",
                                 exc, self.interval)
                time.sleep(self.interval)

    def start(self):
        # RQ's start, forking _run_scheduler instead of rq.scheduler.run.
        self._status = self.Status.STARTED
        self._connection = None  # a Redis connection cannot cross the fork
        self.worker_pid = os.getpid()  # the scheduler ends with this process
        self._process = rq_scheduler.ForkProcess(target=_run_scheduler, args=(self,),
                                                 name="Scheduler")
        self._process.start()
        return self._process


def _run_scheduler(scheduler: ShopScheduler) -> None:
    """RQ's run, which logs a crash with its traceback and raises it again; the exit status
    says it failed, and multiprocessing prints nothing (it prints an exception's traceback,
    not a SystemExit with a number). The scheduler ends with the worker that forked it, even
    one killed outright (SIGKILL, a supervisor that stops only the main process): left
    behind, it kept the scheduler's lock and the worker's metrics port."""
    from .services import metrics

    _end_with_parent()
    if os.getppid() != scheduler.worker_pid:  # the worker died before the line above
        sys.exit(0)
    metrics.close_inherited_servers()
    try:
        rq_scheduler.run(scheduler)
    except Exception:
        sys.exit(1)


def _end_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent process ends (prctl PR_SET_PDEATHSIG): the
    scheduler stops as on the worker's own SIGTERM. Elsewhere, nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _closing(*args: Any, **kwargs: Any) -> None:
    """In place of connect() on a command channel being closed."""
    raise RedisConnectionError("the worker is closing its command channel")


class ShopJobs:
    """Mixed into an RQ worker class: every job runs inside the shop's app."""

    flask_app: Flask

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                         log_format: str = DEFAULT_LOGGING_FORMAT) -> None:
        """RQ's (2.12), with the shop's scheduler class in place of RQScheduler."""
        self.scheduler = ShopScheduler(
            self.queues, connection=self.connection,  # type: ignore[attr-defined]
            logging_level=logging_level if logging_level is not None
            else self.log.level,  # type: ignore[attr-defined]
            date_format=date_format, log_format=log_format,
            serializer=self.serializer)  # type: ignore[attr-defined]
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    def unsubscribe(self) -> None:
        """Close the worker's command channel (a pubsub read by a thread of its own) without
        writing to it from this thread. RQ's (2.12) sent UNSUBSCRIBE from here while that
        thread read the channel: after a Redis blip the thread reconnects every 2 s, and when
        the worker stopped at that moment one thread read the answer to the other's HELLO. The
        channel's thread died with a plain-text traceback (KeyError: 0) and this one waited a
        minute for its answer, then the worker exited 1 instead of 0 (about 1 stop in 20 after
        a blip). Here the thread is told to stop and its socket is shut under it, as often as
        it reconnects, until it has ended; Redis forgets a closed connection's channels."""
        thread, channel = self.pubsub_thread, self.pubsub  # type: ignore[attr-defined]
        if not thread or channel is None:
            return
        self.log.info("Worker %s: closing its command channel %s",  # type: ignore[attr-defined]
                      self.name, self.pubsub_channel_name)  # type: ignore[attr-defined]
        self._closing_channel = True
        thread.stop()
        connection = channel.connection
        if connection is not None:
            # redis-py reconnects (HELLO, SUBSCRIBE) on a read error before it counts retries.
            connection.connect = _closing  # type: ignore[method-assign]
        deadline = time.monotonic() + 5
        while thread.is_alive() and time.monotonic() < deadline:
            sock = getattr(connection, "_sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed
                    pass
            thread.join(timeout=0.1)
        if connection is not None and not thread.is_alive():
            del connection.connect  # back in the pool as it was
        # A thread still alive is a daemon, ended with the process; nothing reads the channel
        # from here.

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """The channel's thread met an error: quietly the end when the worker is closing the
        channel (the shut socket); RQ's retry or report otherwise."""
        if getattr(self, "_closing_channel", False):
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)  # type: ignore[misc]

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
        finally:
            worker_took(None)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.flask_app.app_context():
            if os.getpid() != self._shop_parent_pid:
                # A forked work horse must not share the parent's pooled connections.
                for engine in db.engines.values():
                    engine.dispose(close=False)
        with job_context(self.flask_app, job):
            return super().perform_job(job, queue)  # type: ignore[misc]


class ShopWorker(ShopJobs, Worker):
    """Forks a work horse per job (a crash or leak in one job cannot take the worker down).

    The horse ignores SIGTERM: a supervisor that signals every process of the service at once
    (systemd's default KillMode=control-group) must not kill the job it is running. The worker
    gets the same SIGTERM and waits for the job (RQ's warm shutdown); a second signal, the
    job's timeout and the supervisor's final SIGKILL still end it (RQ kills a horse with
    SIGKILL)."""

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def monitor_work_horse(self, job: Job, queue: Queue) -> None:
        """Wait for the horse, then fold what it counted (a payment failure found by an
        expiry) into the metrics archive: each job is a new process, and its files would
        otherwise pile up, one per job, in the directory every scrape reads."""
        horse = self.horse_pid
        super().monitor_work_horse(job, queue)
        from .services import metrics, metrics_files

        path = metrics.multiprocess_dir()
        if path and horse and not metrics_files.running(horse):
            try:
                metrics_files.fold(path, horse)
            except Exception:  # its file stays, still counted; the next start folds it
                log.warning("could not fold the metrics of work horse %s", horse, exc_info=True)


class ShopSimpleWorker(ShopJobs, SimpleWorker):
    """Runs jobs in its own process (tests, and platforms without fork)."""


def make_worker(app: Flask, *, simple: bool = False, queue_names: list[str] | None = None):
    """A worker on the shop's queue (or the named ones) and Redis; None without REDIS_URL."""
    from .services import jobs

    with app.app_context():
        conn = jobs.worker_connection()
        if conn is None:
            return None
        names = queue_names or [jobs.queue_name()]
    from .services.redis_clients import WORKER_TTL

    cls = ShopSimpleWorker if simple else ShopWorker
    worker = cls([ShopQueue(name, connection=conn) for name in names], connection=conn,
                 queue_class=ShopQueue, worker_ttl=WORKER_TTL)
    worker.flask_app = app
    worker._shop_parent_pid = os.getpid()
    return worker
