"""/metrics under real gunicorn with two worker processes: every scrape, whichever worker
answers it, reports the requests of both (prometheus_client multiprocess mode, set up by
gunicorn.conf.py), and totals survive a worker being replaced."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shop import create_app
from shop.extensions import db

from .test_ops import sample

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def migrated_sqlite(folder: Path) -> str:
    url = f"sqlite:///{folder / 'shop.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url}, env="testing")
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        db.engine.dispose()
    return url


class Gunicorn:
    """`gunicorn -c gunicorn.conf.py -w 2 wsgi:app` on a free local port, stopped afterwards."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.log = folder / "gunicorn.log"
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("REDIS_URL", "DATABASE_REPLICA_URL", "TEST_DATABASE_URL",
                                 "PROMETHEUS_MULTIPROC_DIR", "SHOP_OWN_METRICS_DIR")}
        full_env.update({"SHOP_ENV": "development", "WEB_CONCURRENCY": "2",
                         "SHOP_OUTBOX_DIR": str(folder / "outbox"),
                         "SHOP_UPLOAD_DIR": str(folder / "uploads"),
                         "GUNICORN_MAX_REQUESTS": "0", "PYTHONDONTWRITEBYTECODE": "1"})
        full_env.update(env)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "--bind", "127.0.0.1:0", "wsgi:app"],
                cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        self.url = self._wait_until_listening()

    def _wait_until_listening(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("gunicorn exited:\n" + self.log.read_text())
            match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", self.log.read_text())
            if match:
                self.url = match.group(1)
                # Probe another endpoint than the one the tests count.
                if self.get("/readyz")[0] == 200:
                    return self.url
            time.sleep(0.1)
        raise AssertionError("gunicorn did not start:\n" + self.log.read_text())

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def worker_pids(metrics_dir: Path) -> set[int]:
    """Processes that have written request counters to the shared directory."""
    return {int(m.group(1)) for p in metrics_dir.glob("counter_*.db")
            if (m := re.match(r"counter_(\d+)\.db", p.name))}


def hit(server: Gunicorn, count: int) -> None:
    """`count` requests to /healthz from 8 concurrent clients (each its own connection)."""
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: server.get("/healthz")[0], range(count)))
    assert statuses == [200] * count


def healthz_total(text: str) -> float:
    return sample(text, "shop_http_requests_total", method="GET", endpoint="ops.healthz",
                  status="200") or 0


def test_metrics_add_up_across_two_gunicorn_workers(tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale file from an earlier run")
    server = Gunicorn(tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                                 "DATABASE_URL": migrated_sqlite(tmp_path)})
    try:
        assert 999999 not in worker_pids(metrics_dir)  # cleaned when gunicorn started
        sent = 0
        # Keep sending until both workers have answered some of the requests.
        for _ in range(20):
            hit(server, 40)
            sent += 40
            if len(worker_pids(metrics_dir)) >= 2:
                break
        pids = worker_pids(metrics_dir)
        assert len(pids) == 2, pids
        # Each scrape is answered by one worker; every one of them sees the whole total.
        for _ in range(6):
            status, text = server.get("/metrics")
            assert status == 200
            assert healthz_total(text) == sent
            assert sample(text, "shop_http_request_duration_seconds_count",
                          endpoint="ops.healthz") == sent
            assert sample(text, "shop_jobs_queued") == 0
            assert sample(text, "shop_orders_placed_total") == 0

        # A worker dies (a crash, or max_requests recycling): its counts stay in the totals.
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.get("/readyz")[0] != 200:
            time.sleep(0.1)
        hit(server, 20)
        sent += 20
        scrapes = [server.get("/metrics")[1] for _ in range(4)]
        assert all(healthz_total(text) == sent for text in scrapes)
        # Folded into the archive by the master (gunicorn.conf.py's child_exit), not left.
        # The master does that when it reaps the worker, which on a loaded machine can come
        # after the other worker has already answered the requests above.
        deadline = time.monotonic() + 30
        while victim in worker_pids(metrics_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert victim not in worker_pids(metrics_dir)
        assert (metrics_dir / "counter_archive.db").exists()
        scrapes = [server.get("/metrics")[1] for _ in range(4)]
        assert all(healthz_total(text) == sent for text in scrapes)  # counted once, folded
        assert "could not fold" not in server.log.read_text()
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log.read_text()


def test_recycled_workers_leave_no_files_behind_and_nothing_is_counted_twice(tmp_path):
    """max_requests recycling every few requests: the totals stay exact across the dead
    workers, whose files are folded into one archive per type instead of piling up (every
    scrape reads every file)."""
    metrics_dir = tmp_path / "prometheus"
    server = Gunicorn(tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                                 "DATABASE_URL": migrated_sqlite(tmp_path),
                                 "GUNICORN_MAX_REQUESTS": "8", "GUNICORN_MAX_REQUESTS_JITTER": "0"})
    try:
        sent = 0
        for _ in range(12):
            hit(server, 10)
            sent += 10
        # A scrape is a request too: it may recycle the worker that answered it.
        scrapes = [server.get("/metrics") for _ in range(5)]
        assert all(status == 200 for status, _ in scrapes)
        assert all(healthz_total(text) == sent for _, text in scrapes), \
            [healthz_total(text) for _, text in scrapes]
        assert all(sample(text, "shop_http_request_duration_seconds_count",
                          endpoint="ops.healthz") == sent for _, text in scrapes)
        booted = server.log.read_text().count("Booting worker")
        assert booted >= 10  # the workers really were recycled
        # A worker the scrapes recycled is folded when the master reaps it, which on a loaded
        # machine can come a moment after its last answer.
        deadline = time.monotonic() + 30
        while len(worker_pids(metrics_dir)) > 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        files = sorted(p.name for p in metrics_dir.glob("*.db"))
        # Two live workers (a counter and a histogram file each, at most) and the archive.
        assert len(files) <= 6, files
        assert {"counter_archive.db", "histogram_archive.db"} <= set(files)
        assert len(worker_pids(metrics_dir)) <= 2
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log.read_text()


def test_gunicorn_makes_and_removes_its_own_metrics_directory(tmp_path):
    """Without PROMETHEUS_MULTIPROC_DIR, each gunicorn master keeps its own, in TMPDIR."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = Gunicorn(tmp_path, {"TMPDIR": str(temp), "DATABASE_URL": migrated_sqlite(tmp_path)})
    try:
        made = list(temp.glob("shop-metrics-*"))
        assert len(made) == 1
        hit(server, 10)
        assert healthz_total(server.get("/metrics")[1]) == 10
        assert worker_pids(made[0])
    finally:
        server.stop()
    assert not made[0].exists()
