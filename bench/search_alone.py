"""Search latency of one client alone on an already seeded database, without load generators.

For each of bench/run.py's SEARCHES: the catalogue service's time in process (best of N) and
the whole HTTP request served as `make bench` serves it (gunicorn -c gunicorn.conf.py, 2 sync
workers, SHOP_ENV=production); then the p50/p95 that `make bench` reports for the lone client
(run.sequential_latency: 20 queries x N rounds, right after the server starts).

Usage: .venv/bin/python bench/search_alone.py --database-url URL [--rounds 5]
Seed the database first: flask --app wsgi db upgrade; seed; seed --products 100000.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py, beside this file)


def in_process(database_url: str, rounds: int) -> None:
    """Time catalog.list_products per query in a child process bound to the database."""
    code = f"""
import time
from shop import create_app
from shop.extensions import db
from shop.services import catalog
app = create_app()
with app.app_context():
    for q in {run.SEARCHES!r}:
        times = []
        for _ in range({rounds}):
            started = time.perf_counter()
            page = catalog.list_products(catalog.parse_filters({{"q": q}})[0])
            db.session.rollback()
            times.append(time.perf_counter() - started)
        print(f"  {{q:16}} {{page.total:7,}} matches  best {{min(times) * 1000:5.1f}} ms")
"""
    env = run.base_env(database_url)
    subprocess.run([run.PYTHON, "-c", code], cwd=run.ROOT, env=env, check=True,
                   stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run.SCRATCH = Path(tempfile.mkdtemp(prefix="shop-search-alone-"))
    try:
        print(f"In process, catalog.list_products (best of {args.rounds}):")
        in_process(args.database_url, args.rounds)
        paths = ["/products?" + urlencode({"q": q}) for q in run.SEARCHES]
        with run.serve("shop-search", "wsgi:app", run.base_env(args.database_url),
                       run.SCRATCH) as base:
            alone = run.sequential_latency(base, paths, args.rounds)
            print(f"HTTP, one client, {len(paths)} queries x {args.rounds} (as make bench): "
                  f"p50 {alone['p50_ms']:.1f} ms, p95 {alone['p95_ms']:.1f} ms, "
                  f"max {alone['max_ms']:.1f} ms")
            print(f"HTTP per query (best, median of {args.rounds}):")
            for q, path in zip(run.SEARCHES, paths, strict=True):
                times = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    run.http("GET", base + path)
                    times.append(time.perf_counter() - started)
                print(f"  {q:16} best {min(times) * 1000:5.1f} ms  "
                      f"median {statistics.median(times) * 1000:5.1f} ms")
    finally:
        shutil.rmtree(run.SCRATCH, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
