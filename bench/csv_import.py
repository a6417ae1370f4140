"""Time a large product CSV import in process: the dry run and the import itself.

Usage: .venv/bin/python bench/csv_import.py [--database-url URL] [--rows N]
With no URL, a scratch SQLite file. The database is migrated and given a category; the file
creates N variants (two a product), then the same file with every price changed updates them.
Printed: seconds for the dry run and for the import, each pass. Give it a scratch database:
it writes products into it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_file(rows: int, price: str) -> str:
    lines = ["product_slug,product_name,description,category_slug,active,sku,options,price,"
             "compare_at_price,stock_quantity,low_stock_threshold"]
    for i in range(rows):
        n = i // 2
        size = "S" if i % 2 == 0 else "M"
        lines.append(f"bench-product-{n},Bench product {n},\"A sturdy thing, number {n}.\","
                     f"bench,yes,BENCH-{n}-{size},size={size},{price},,{i % 50},5")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url")
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="shop-csv-bench-")
    url = args.database_url or f"sqlite:///{scratch}/shop.db"
    os.environ.update(SHOP_ENV="development", DATABASE_URL=url)
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade
    from sqlalchemy import select

    from shop import create_app
    from shop.extensions import db
    from shop.models import Category
    from shop.services import audit, product_csv

    app = create_app()
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        if db.session.execute(select(Category).where(Category.slug == "bench")).scalar() is None:
            db.session.add(Category(name="Bench", slug="bench"))
            db.session.commit()
        who = audit.Who(user_id=None, email="bench@example.com")
        for label, price in (("create", "10.00"), ("update", "11.00")):
            content = make_file(args.rows, price)
            started = time.perf_counter()
            report = product_csv.preview(content)
            dry = time.perf_counter() - started
            db.session.rollback()
            started = time.perf_counter()
            report = product_csv.apply(content, who)
            took = time.perf_counter() - started
            assert report.written, (report.file_errors, [r.errors for r in report.rows
                                                         if r.errors][:3])
            print(f"{label:6} {args.rows} rows: dry run {dry:6.2f} s, import {took:6.2f} s "
                  f"({report.counts})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
