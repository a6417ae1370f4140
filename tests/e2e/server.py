"""Serve a fresh shop for the browser: a new SQLite database in a temporary folder, migrated and
seeded (demo catalogue, coupon WELCOME10) with a staff account, under gunicorn (2 workers) on a
free loopback port. Used by the e2e fixtures and by scripts/screenshots.py."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAFF_EMAIL = "staff@e2e.example.com"
STAFF_PASSWORD = "back-office-pass-9731"


@dataclass(frozen=True)
class Shop:
    """The running shop: its base URL and the staff account created for it."""

    url: str
    staff_email: str
    staff_password: str
    log: Path

    def __call__(self, path: str) -> str:
        """The absolute URL of a path on this shop."""
        return self.url + path

    def log_size(self) -> int:
        return self.log.stat().st_size

    def errors_since(self, offset: int) -> str:
        """Tracebacks the server logged after `offset` (its unhandled errors, 500s)."""
        with self.log.open("rb") as handle:
            handle.seek(offset)
            new = handle.read().decode("utf-8", "replace")
        return new if "Traceback" in new else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(tmp: Path) -> dict[str, str]:
    """The environment of a development shop on its own database, without Redis, mail servers
    or Stripe keys from the caller's environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "MAIL_", "DATABASE_", "REDIS_", "SHOP_", "TEST_",
                                "GUNICORN_", "FLASK_", "WEB_CONCURRENCY"))}
    env.update({
        "SHOP_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp / 'shop.db'}",
        "SECRET_KEY": secrets.token_hex(16),
        "SHOP_OUTBOX_DIR": str(tmp / "outbox"),
        "SHOP_UPLOAD_DIR": str(tmp / "uploads"),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def _cli(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}")


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer /healthz in {timeout}s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def serve(tmp: Path) -> Iterator[Shop]:
    """Prepare a database in `tmp`, serve it with gunicorn, stop the server on exit."""
    env = _server_env(tmp)
    _cli(env, "db", "upgrade")
    _cli(env, "seed")
    _cli(env, "create-admin", STAFF_EMAIL, "--password", STAFF_PASSWORD, "--role", "staff")
    port = _free_port()
    log = tmp / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "60", "wsgi:app"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield Shop(url, STAFF_EMAIL, STAFF_PASSWORD, log)
    finally:
        _stop(proc)
