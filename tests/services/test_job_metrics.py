"""What is counted outside the web workers reaches Prometheus: payment failures found by a job
in the RQ worker (a forked work horse per job) or by cron's `expire-orders` are served by the
worker's own /metrics (SHOP_WORKER_METRICS_BIND), once each, across job processes, cron runs
and restarts of the worker."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from shop.extensions import db
from shop.models import Order
from shop.services import jobs, metrics
from shop.services.payments.expiry import expire_order
from tests import factories as f
from tests.payments_helpers import (
    buy,
    drop_queue,
    last_order,
    redis_settings,
    standin,
    stripe_settings,
)

__all__ = ["standin"]  # the fixture, imported for this module's tests
ROOT = Path(__file__).resolve().parents[2]


def failures_in(text: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "shop_payment_failures_total" and s.labels == {"provider": "stripe"}:
                return s.value
    return None


def scrape(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Process:
    """A `flask --app wsgi ...` command in its own process, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi",
                                             *args], cwd=ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def wait_for(self, pattern: str, nth: int = 1) -> re.Match:
        """The `nth` match of `pattern` in the output (the log file is shared by restarts)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            matches = list(re.finditer(pattern, self.log.read_text()))
            if len(matches) >= nth:
                return matches[nth - 1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the output:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def mismatched_and_overdue(client, standin, variant_id: int) -> Order:
    """A card order whose Checkout Session was paid with another amount than the order's,
    still pending after its payment deadline: expiring it finds the payment, refunds it and
    counts a payment failure."""
    buy(client, variant_id)
    order = last_order()
    reference = order.payment.reference
    session = standin.complete(reference)
    standin.sessions[reference]["amount_total"] = session["amount_total"] - 100
    db.session.execute(update(Order).where(Order.id == order.id)
                       .values(created_at=order.created_at - timedelta(minutes=61)))
    db.session.commit()
    return last_order()


def status_of(order_id: int) -> str:
    db.session.rollback()
    return db.session.get(Order, order_id).status


def process_files(path: Path) -> set[str]:
    return {p.name for p in path.glob("*.db")}


@pytest.mark.slow
def test_payment_failures_in_jobs_and_cron_reach_the_workers_metrics(make_app, standin,
                                                                     database_url, tmp_path):
    app = make_app(**redis_settings(), **stripe_settings(standin))
    metrics_dir = tmp_path / "worker-metrics"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROMETHEUS_MULTIPROC_DIR", "DATABASE_REPLICA_URL", "SHOP_OWN_METRICS_DIR")}
    env.update({"SHOP_ENV": "development", "DATABASE_URL": database_url,
                "REDIS_URL": app.config["REDIS_URL"], "SHOP_JOBS_QUEUE": app.config["JOBS_QUEUE"],
                "STRIPE_SECRET_KEY": standin.api_key, "STRIPE_PUBLISHABLE_KEY": "pk_test_standin",
                "STRIPE_WEBHOOK_SECRET": standin.webhook_secret,
                "STRIPE_API_BASE": standin.base_url, "SHOP_OUTBOX_DIR": str(tmp_path / "outbox"),
                "SHOP_BASE_URL": "http://shop.test",
                "SHOP_METRICS_TOKEN": "scrape-secret", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "SHOP_WORKER_METRICS_BIND": "127.0.0.1:0", "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1"})
    log = tmp_path / "worker.log"
    workers: list[Process] = []
    try:
        with app.app_context():
            client = app.test_client()
            mug = f.variant_of(f.product("Mug", price="12.00", stock=10, slug="mug"))
            by_job = mismatched_and_overdue(client, standin, mug.id)
            by_cron = mismatched_and_overdue(client, standin, mug.id)

            workers.append(Process(["worker", "--no-scheduler"], env, log))
            url = workers[-1].wait_for(r"Metrics on (http://127\.0\.0\.1:\d+/metrics)")[1]
            status, text = scrape(url, "scrape-secret")
            assert status == 200 and failures_in(text) == 0
            assert scrape(url)[0] == 401

            # The expiry job runs in a work horse the worker forks for it.
            jobs.enqueue(expire_order, by_job.id)
            deadline = time.monotonic() + 60
            while status_of(by_job.id) != "cancelled" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert status_of(by_job.id) == "cancelled", log.read_text()
            assert failures_in(scrape(url, "scrape-secret")[1]) == 1

            # cron's sweep, in the worker's directory: counted once it has exited.
            cron = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi",
                                   "expire-orders"], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120)
            assert cron.returncode == 0 and "Cancelled 1 unpaid order." in cron.stdout, cron
            assert status_of(by_cron.id) == "cancelled"
            assert failures_in(scrape(url, "scrape-secret")[1]) == 2
            # The horses' and cron's files went into the archive (every scrape reads every
            # file): the worker's own file is all that is left beside it.
            first = workers[-1].process.pid
            deadline = time.monotonic() + 10
            while process_files(metrics_dir) != {"counter_archive.db", f"counter_{first}.db"} \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            assert process_files(metrics_dir) == {"counter_archive.db", f"counter_{first}.db"}

            # The worker is killed outright and started again: nothing lost, nothing doubled.
            workers[-1].stop(signal.SIGKILL)
            workers.append(Process(["worker", "--no-scheduler"], env, log))
            url = workers[-1].wait_for(r"Metrics on (http://127\.0\.0\.1:\d+/metrics)", 2)[1]
            assert failures_in(scrape(url, "scrape-secret")[1]) == 2
            assert f"counter_{first}.db" not in process_files(metrics_dir)
            # (Before RQ listens it has not yet set its SIGTERM handler up.)
            workers[-1].wait_for(r"\*\*\* Listening on", 2)
            assert workers[-1].stop() == 0, log.read_text()
            # Stopped, it folded its own file too: the totals live on in the archive alone.
            assert process_files(metrics_dir) == {"counter_archive.db"}
            totals = {s.name: s.value for m in MultiProcessCollector.merge(
                [str(metrics_dir / "counter_archive.db")]) for s in m.samples}
            assert totals["shop_payment_failures_total"] == 2
    finally:
        for worker in workers:
            worker.stop(signal.SIGKILL)
        drop_queue(app)


def _write_counter(path: Path, pid: int | str, value: float) -> None:
    out = MmapedDict(str(path / f"counter_{pid}.db"))
    try:
        key = mmap_key("shop_payment_failures", "shop_payment_failures_total", ["provider"],
                       ["stripe"], "Payments that failed")
        out.write_value(key, value, 0.0)
    finally:
        out.close()


def _total(path: Path) -> float:
    return sum(s.value for m in MultiProcessCollector.merge(
        [str(p) for p in path.glob("*.db")]) for s in m.samples
        if s.name == "shop_payment_failures_total")


def test_files_of_processes_that_are_gone_are_folded_once(tmp_path):
    """What a killed process left is folded into the archive; a running process's file is
    left alone; folding again changes nothing."""
    from shop.services import metrics_files

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    _write_counter(tmp_path, "archive", 5)
    _write_counter(tmp_path, dead_pid, 2)
    _write_counter(tmp_path, os.getpid(), 1)
    assert _total(tmp_path) == 8
    assert metrics_files.fold_gone(str(tmp_path)) == [dead_pid]
    assert process_files(tmp_path) == {"counter_archive.db", f"counter_{os.getpid()}.db"}
    assert _total(tmp_path) == 8
    assert metrics_files.fold_gone(str(tmp_path)) == []
    assert _total(tmp_path) == 8


def test_the_workers_metrics_endpoint_wants_the_scrape_token():
    server = metrics.serve("127.0.0.1:0", "scrape-secret")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert scrape(url + "/metrics")[0] == 401
        assert scrape(url + "/metrics", "wrong")[0] == 401
        for token, challenge in ((None, 'Bearer realm="metrics"'),
                                 ("wrong", 'Bearer realm="metrics", error="invalid_token"')):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers=headers),
                                       timeout=30)
            assert refused.value.headers["WWW-Authenticate"] == challenge
            refused.value.close()
        status, text = scrape(url + "/metrics", "scrape-secret")
        assert status == 200 and failures_in(text) is not None
        assert scrape(url + "/admin", "scrape-secret")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_the_worker_will_not_serve_metrics_its_jobs_could_not_count(make_app):
    """Each job runs in a forked process: without a multiprocess directory its counts would
    die with it, and the endpoint would always say 0."""
    app = make_app(**redis_settings())
    try:
        result = app.test_cli_runner().invoke(
            args=["worker", "--burst", "--metrics-bind", "127.0.0.1:0"])
        assert result.exit_code == 1 and "PROMETHEUS_MULTIPROC_DIR" in result.output
    finally:
        drop_queue(app)


def test_a_cron_run_whose_metrics_directory_is_unusable_still_does_its_work(tmp_path):
    """cron on a host where the worker never made its directory: the sweep runs, uncounted;
    an empty PROMETHEUS_MULTIPROC_DIR leaves no files in the current directory."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_REPLICA_URL", "REDIS_URL")}
    env.update({"SHOP_ENV": "development", "PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics"),
                "DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}",
                "PYTHONDONTWRITEBYTECODE": "1"})
    # Set but empty: no multiprocess files in the current directory (prometheus_client's
    # reading of an empty value).
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                   cwd=tmp_path, env={**env, "PROMETHEUS_MULTIPROC_DIR": "",
                                      "PYTHONPATH": str(ROOT)}, check=True, capture_output=True)
    assert not list(tmp_path.glob("counter_*.db"))
    cron = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "expire-orders"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert cron.returncode == 0, cron.stderr
    assert "Cancelled 0 unpaid orders." in cron.stdout
    assert "PROMETHEUS_MULTIPROC_DIR unusable" in cron.stderr
