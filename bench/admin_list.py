"""Time the back office's order list at depth, in process, on many orders.

Usage: .venv/bin/python bench/admin_list.py --database-url URL [--orders N]
The database is migrated and filled with N orders (by doubling in SQL, once; it is left as it
is when it holds that many already), then a staff member logs in through the real form and
the list is asked for at page 1, 100, the middle and the last, by its default sort (newest
first) and by status. Printed: the best of 3 for each page, in ms. Give it a scratch database:
it writes orders and a staff account into it.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-9"
COLUMNS = ("number, user_id, email, status, currency, subtotal, discount, shipping, tax, total, "
           "coupon_code, shipping_method, payment_method, shipping_address, billing_address, "
           "idempotency_key, stock_released, created_at, updated_at, paid_at, ship_to_name")
ADDRESS = ('{"name": "Ann Lee", "line1": "1 Main St", "city": "Paris", "postal_code": "75001", '
           '"country": "FR"}')


def fill(db, wanted: int) -> int:
    from sqlalchemy import func, select, text

    from shop.models import Order

    count = db.session.execute(select(func.count(Order.id))).scalar_one()
    if count == 0:
        db.session.execute(text(
            f"INSERT INTO orders ({COLUMNS}) VALUES ('SB000000001', NULL, 'a1@example.com', "
            f"'paid', 'USD', 10.00, 0, 4.90, 0, 14.90, NULL, 'standard', 'manual', :a, :a, "
            f"NULL, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', NULL, 'Ann Lee')"),
            {"a": ADDRESS})
        count = 1
    statuses = "CASE MOD(id, 4) WHEN 0 THEN 'paid' WHEN 1 THEN 'pending' " \
               "WHEN 2 THEN 'shipped' ELSE 'cancelled' END"
    while count < wanted:
        top = db.session.execute(select(func.max(Order.id))).scalar_one()
        db.session.execute(text(
            f"INSERT INTO orders ({COLUMNS}) SELECT "
            f"CONCAT('SB', LPAD(id + {top}, 9, '0')), user_id, "
            f"CONCAT('c', id + {top}, '@example.com'), {statuses}, currency, subtotal, "
            f"discount, shipping, tax, total, NULL, shipping_method, payment_method, "
            f"shipping_address, billing_address, NULL, 0, created_at, updated_at, NULL, "
            f"ship_to_name FROM orders ORDER BY id LIMIT {min(count, wanted - count)}"))
        db.session.commit()
        count = db.session.execute(select(func.count(Order.id))).scalar_one()
    # Spread the times: one order every 37 s from the start of the year.
    if db.engine.dialect.name == "mysql":
        db.session.execute(text("UPDATE orders SET created_at = "
                                "TIMESTAMPADD(SECOND, id * 37, '2026-01-01 00:00:00')"))
        db.session.execute(text("ANALYZE TABLE orders"))
    else:
        db.session.execute(text("UPDATE orders SET created_at = "
                                "datetime('2026-01-01', '+' || (id * 37) || ' seconds')"))
    db.session.commit()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--orders", type=int, default=300_000)
    args = parser.parse_args()
    os.environ.update(SHOP_ENV="development", DATABASE_URL=args.database_url)
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade

    from shop import create_app
    from shop.extensions import db
    from shop.services import accounts

    app = create_app()
    app.config.update(RATELIMIT_ENABLED=False)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        started = time.perf_counter()
        count = fill(db, args.orders)
        print(f"{count:,} orders ({time.perf_counter() - started:.1f} s to fill)")
        accounts.create_admin("bench-staff@example.com", PASSWORD, "staff")
    import logging

    logging.getLogger("shop.access").setLevel(logging.WARNING)
    client = app.test_client()
    page = client.get("/account/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    answer = client.post("/account/login", data={
        "email": "bench-staff@example.com", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code in (302, 303), answer.status_code
    size = 50
    last = (count - 1) // size
    for label, query in (("default sort", ""), ("by status", "sort=4&")):
        for number in (0, 99, last // 2, last):
            url = f"/admin/order/?{query}page={number}&page_size={size}"
            times = []
            for _ in range(3):
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
            print(f"{label:12} page {number + 1:>6,} of {last + 1:,}: "
                  f"{min(times) * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
