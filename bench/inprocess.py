"""Time shop requests in process: the WSGI app called directly, no gunicorn, no network.

What a request costs the shop itself, without wrk and gunicorn sharing the cores: useful
to compare two versions of the code on the same database (run it from each checkout).

Usage: .venv/bin/python bench/inprocess.py --database-url URL [PATH ...]
       (default paths: /healthz, /products?page=50 and the 100th active product's page)
Each path: best of --runs runs of --requests requests, as a new anonymous visitor (no
cookies), SHOP_ENV=production with the JSON logs written to /dev/null. Printed: the time a
request took, and the CPU it cost: this process's, plus the database server's on MySQL (the
local mariadbd or mysqld, read from /proc), which the time alone does not tell apart from
waiting. The best run is the one of least CPU. On a shared machine both move between runs:
compare versions by alternating runs of each.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    os.environ.update(SHOP_ENV="production", DATABASE_URL=args.database_url,
                      SHOP_BASE_URL="https://shop.example.com")
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 32)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="shop-metrics-"))
    sys.path.insert(0, str(ROOT))
    from werkzeug.test import EnvironBuilder

    from shop import create_app

    app = create_app()
    devnull = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
    for handler in logging.getLogger("shop").handlers:
        handler.setStream(devnull)
    paths = args.paths or ["/healthz", "/products?page=50", _a_product(app)]
    status = {}

    def start_response(code, headers, exc_info=None):
        status["code"] = code

    for path in paths:
        environ = EnvironBuilder(path=path).get_environ()

        def run(count: int, environ: dict = environ) -> None:
            for _ in range(count):
                env = dict(environ)
                env["wsgi.input"] = io.BytesIO(b"")
                body = app(env, start_response)
                b"".join(body)
                if hasattr(body, "close"):  # a WSGI iterable may have close() (PEP 3333)
                    body.close()

        run(200)
        server = _server_pid(args.database_url)
        wall, client, served = min((_timed(run, args.requests, server) for _ in range(args.runs)),
                                   key=lambda t: t[1] + t[2])
        cpu = f"CPU {client * 1000:.3f} ms"
        if server:
            cpu += f" + server {served * 1000:.3f} = {(client + served) * 1000:.3f} ms"
        print(f"{path}: {wall * 1000:.3f} ms a request, {cpu} ({status['code']})")
    return 0


def _server_pid(url: str) -> int | None:
    """The local MySQL server's process (None for SQLite, or when it is not on this machine)."""
    if not url.startswith("mysql"):
        return None
    for name in ("mariadbd", "mysqld"):
        pids = os.popen(f"pidof {name} 2>/dev/null").read().split()
        if pids:
            return int(pids[0])
    return None


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _timed(run, count: int, server: int | None) -> tuple[float, float, float]:
    """Per request: seconds, this process's CPU seconds, the server's CPU seconds."""
    started, cpu, served = time.perf_counter(), time.process_time(), _cpu_seconds(server)
    run(count)
    return ((time.perf_counter() - started) / count, (time.process_time() - cpu) / count,
            (_cpu_seconds(server) - served) / count)


def _a_product(app) -> str:
    from sqlalchemy import text

    from shop.extensions import db

    with app.app_context():
        slug = db.session.execute(text(
            "SELECT slug FROM products WHERE active = :a ORDER BY id LIMIT 1 OFFSET 100"),
            {"a": True}).scalar_one()
    return f"/p/{slug}"


if __name__ == "__main__":
    sys.exit(main())
