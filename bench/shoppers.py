"""Time catalogue pages in process as three kinds of shopper see them: a new anonymous visitor
(what `make bench` loads), a guest with a cart, and a logged-in customer with a cart.

`make bench` measures the first only; the others pay for what the shop knows about them (the
header's cart count, the customer's account, whether they may review a product). This shows
what each costs, page by page, through the WSGI app alone (no gunicorn, no network).

Usage: .venv/bin/python bench/shoppers.py --database-url URL [PATH ...]
       (default paths: /, /products?page=50, a product page, the same product with 8 approved
       reviews, /cart)
It WRITES to that database: a customer account (perf@example.com), two carts, and 8 reviewers
with approved reviews of one product. Use a scratch copy (say one `make bench --keep-data`
left, or a copied SQLite file). Printed: the CPU time of one request (best of --runs runs of
--requests requests), per kind of shopper, SHOP_ENV=development (plain-HTTP cookies).
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ADD = re.compile(r'name="variant_id" value="(\d+)"')
EMAIL, PASSWORD = "perf@example.com", "a-long-passphrase-1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    os.environ.update(SHOP_ENV="development", DATABASE_URL=args.database_url)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="shop-metrics-"))
    sys.path.insert(0, str(ROOT))
    from werkzeug.test import EnvironBuilder

    from shop import create_app

    app = create_app()
    app.config["RATELIMIT_ENABLED"] = False
    for handler in logging.getLogger("shop").handlers:
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (open for the whole run)
    plain, reviewed = _products(app)
    cookies = {"anonymous": "", "guest + cart": _guest_with_cart(app, plain),
               "customer + cart": _customer_with_cart(app, plain)}
    paths = args.paths or ["/", "/products?page=50", plain, reviewed, "/cart"]
    status: list[str] = []

    def start_response(code, headers, exc_info=None):
        status.append(code[:3])

    def run(environ: dict, count: int) -> None:
        for _ in range(count):
            env = dict(environ)
            env["wsgi.input"] = io.BytesIO(b"")
            body = app(env, start_response)
            b"".join(body)
            if hasattr(body, "close"):
                body.close()

    print(f"{'ms of CPU a request':32}" + "".join(f"{kind:>18}" for kind in cookies))
    for path in paths:
        cells = []
        for cookie in cookies.values():
            environ = EnvironBuilder(path=path, headers={"Cookie": cookie} if cookie else {}
                                     ).get_environ()
            run(environ, 30)
            best = float("inf")
            for _ in range(args.runs):
                started = time.process_time()
                run(environ, args.requests)
                best = min(best, (time.process_time() - started) / args.requests * 1000)
            cells.append(f"{best:.3f} ({status[-1]})")
        label = path + (" (8 reviews)" if path == reviewed else "")
        print(f"{label:32}" + "".join(f"{cell:>18}" for cell in cells))
    return 0


def _products(app) -> tuple[str, str]:
    """Two pages of in-stock products with one variant each: one without reviews, and one
    given 8 approved reviews here (unless it has them already)."""
    from sqlalchemy import select

    from shop.extensions import db
    from shop.models import Product, Review
    from shop.services import accounts, reviews

    client = app.test_client()
    listing = client.get("/products?sort=name").get_data(as_text=True)
    slugs = re.findall(r'<h3 class="card-title"><a href="/p/([^"]+)"', listing)
    forms = listing.split('<li class="card">')[1:]
    single = [slug for slug, card in zip(slugs, forms, strict=True) if ADD.search(card)]
    plain, rich = single[0], single[1]
    with app.app_context():
        product = db.session.execute(select(Product).where(Product.slug == rich)).scalar_one()
        for n in range(8 - product.rating_count):
            email = f"reviewer{n}@example.com"
            user = accounts.find_by_email(email) or accounts.register(email, PASSWORD,
                                                                       f"Reviewer Number{n}")
            if db.session.execute(select(Review).where(Review.user_id == user.id,
                                                       Review.product_id == product.id)
                                  ).scalar_one_or_none() is None:
                review = Review(product_id=product.id, user_id=user.id,
                                rating=4, title="Good thing",
                                body="Works as described. " * 5, status="pending")
                db.session.add(review)
                db.session.commit()
                reviews.approve(review.id)
    return f"/p/{plain}", f"/p/{rich}"


def _add_to_cart(client, product: str) -> None:
    page = client.get(product).get_data(as_text=True)
    response = client.post("/cart/add", data={"csrf_token": CSRF.search(page).group(1),
                                              "variant_id": ADD.search(page).group(1),
                                              "quantity": 1})
    assert response.status_code == 303, response.status_code


def _cookie(client) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in client._cookies.values())


def _guest_with_cart(app, product: str) -> str:
    client = app.test_client()
    _add_to_cart(client, product)
    return _cookie(client)


def _customer_with_cart(app, product: str) -> str:
    from shop.services import accounts

    with app.app_context():
        if accounts.find_by_email(EMAIL) is None:
            accounts.register(EMAIL, PASSWORD, "Perf Tester")
    client = app.test_client()
    page = client.get("/account/login").get_data(as_text=True)
    response = client.post("/account/login", data={"csrf_token": CSRF.search(page).group(1),
                                                   "email": EMAIL, "password": PASSWORD})
    assert response.status_code in (302, 303), response.status_code
    _add_to_cart(client, product)
    return _cookie(client)


if __name__ == "__main__":
    sys.exit(main())
