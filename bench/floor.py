"""The floor under the catalogue pages: what their bytes and a plain 24-card grid cost, beside
the shop's own pages and hello-world, served the same way in the same run.

`make bench` compares each page with hello-world. This says how much of the gap is the
shop's own work: the same bytes returned from memory (no template, no database, no hook)
and a plain Flask and Jinja grid of 24 cards from memory (bench/floor_app.py), each served by
gunicorn with the shop's settings (2 sync workers) and loaded with wrk -t2 -c32 like the
shop's listing page 50 and one product page.

Usage: .venv/bin/python bench/floor.py [--database-url URL] [--duration 8]
       (without --database-url: a scratch SQLite catalogue of 10,000 products, seeded as
       `make bench` seeds it, removed at the end)
Prints requests/s, the ratio to hello-world (the mean of a run first and last) and the CPU
each request cost the server (gunicorn master and workers) and wrk.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (bench/run.py: serve, wrk, seed)


def capture(database_url: str, directory: Path) -> str:
    """The shop's listing page 50 and a product page as served to a new visitor; returns the
    product's path."""
    product = bench.product_paths(database_url, 1)[0]
    app = bench.shop_app(database_url)
    client = app.test_client()
    for name, path in (("listing.html", bench.LISTING), ("product.html", product)):
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}")
        (directory / name).write_bytes(response.get_data())
    return product


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url")
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    work = bench.SCRATCH = Path(tempfile.mkdtemp(prefix="shop-floor-"))
    logs = work / "logs"
    logs.mkdir()
    try:
        database_url = args.database_url
        if not database_url:
            database_url = f"sqlite:///{work / 'catalog.db'}"
            bench.log("seeding a scratch SQLite catalogue of 10,000 products")
            bench.seed(database_url, 10_000, reuse=False)
        product = capture(database_url, work)
        sizes = {name: (work / name).stat().st_size for name in ("listing.html", "product.html")}
        rows: list[tuple[str, dict]] = []
        hello: list[float] = []
        floor_env = dict(bench.base_env("sqlite://"), FLOOR_DIR=str(work))
        shop_env = bench.base_env(database_url)

        def load(label: str, url: str) -> None:
            bench.log(f"{label}: wrk -t2 -c32 -d{args.duration}s")
            data = bench.wrk(url, work, args.duration)
            rows.append((label, data))
            bench.log(f"  {data['rps']:8.0f} req/s  CPU/request {bench._cpu_text(data['cpu_ms'])}")

        with bench.serve("floor", "bench.floor_app:app", floor_env, logs, health="/") as base:
            load("hello-world", base + "/")
            hello.append(rows[-1][1]["rps"])
            load(f"listing page 50's bytes ({sizes['listing.html']:,} B) from memory",
                 base + "/bytes/listing")
            load(f"a product page's bytes ({sizes['product.html']:,} B) from memory",
                 base + "/bytes/product")
            load("24 cards, plain Flask + Jinja, from memory", base + "/grid")
        with bench.serve("shop", "wsgi:app", shop_env, logs) as base:
            load("the shop's listing page 50, no cache", base + bench.LISTING)
            load(f"the shop's product page {product}, no cache", base + product)
        with bench.serve("floor", "bench.floor_app:app", floor_env, logs, health="/") as base:
            load("hello-world", base + "/")
            hello.append(rows[-1][1]["rps"])
        ceiling = statistics.mean(hello)
        print(f"\nHello-world ceiling: {ceiling:.0f} req/s (runs: "
              f"{', '.join(f'{h:.0f}' for h in hello)})\n")
        print("| page | req/s | ratio | CPU ms/request |")
        print("|---|---|---|---|")
        for label, data in rows:
            print(f"| {label} | {data['rps']:.0f} | {data['rps'] / ceiling:.2f} | "
                  f"{bench._cpu_text(data['cpu_ms'])} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
