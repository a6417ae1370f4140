"""Shared by the payment and job tests: the Stripe stand-in fixtures, buying through the real
pages, and Redis queues of their own."""
from __future__ import annotations

import os
import re
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Order, OrderLine, StockAdjustment, Variant
from tests import factories as f
from tests.conftest import csrf_token
from tests.stripe_standin import StripeStandIn

# CI sets TEST_REDIS_URL and then Redis must answer; elsewhere the Redis tests skip without it.
REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture
def standin():
    """A stand-in for Stripe's API servers on a free loopback port (see its module)."""
    server = StripeStandIn(api_key="sk_test_" + uuid.uuid4().hex,
                           webhook_secret="whsec_" + uuid.uuid4().hex).start()
    yield server
    server.stop()


def stripe_settings(standin: StripeStandIn, **extra) -> dict:
    return {"STRIPE_SECRET_KEY": standin.api_key, "STRIPE_PUBLISHABLE_KEY": "pk_test_standin",
            "STRIPE_WEBHOOK_SECRET": standin.webhook_secret, "STRIPE_API_BASE": standin.base_url,
            "UNPAID_ORDER_TIMEOUT_MINUTES": 60, **extra}


def redis_settings() -> dict:
    """Redis on for jobs, with this test's own queue and key prefixes."""
    from redis import Redis

    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:
        if os.environ.get("TEST_REDIS_URL"):
            raise
        pytest.skip(f"Redis is not running at {REDIS_URL}")
    tag = "test-" + uuid.uuid4().hex
    return {"REDIS_URL": REDIS_URL, "JOBS_QUEUE": tag, "CACHE_KEY_PREFIX": f"{tag}:cache:",
            "RATELIMIT_KEY_PREFIX": f"{tag}:rl"}


def drop_queue(app) -> None:
    """Delete this test's queue, its jobs and registries (never anyone else's keys)."""
    from rq.job import Job

    from shop.services import jobs

    with app.app_context():
        q = jobs.queue()
        conn = q.connection
        registries = [q.finished_job_registry, q.failed_job_registry, q.scheduled_job_registry,
                      q.started_job_registry, q.deferred_job_registry, q.canceled_job_registry]
        ids = set(q.job_ids)
        for registry in registries:
            ids.update(registry.get_job_ids())
        for job_id in ids:
            try:
                Job.fetch(job_id, connection=conn).delete()
            except Exception:
                conn.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
        q.delete(delete_jobs=True)
        conn.delete(*[r.key for r in registries])


def add_to_cart(client, variant_id: int, quantity: int = 1) -> None:
    response = client.post("/cart/add", data={"variant_id": variant_id, "quantity": quantity,
                                              "csrf_token": csrf_token(client, "/products")})
    assert response.status_code == 303


def buy(client, variant_id: int, quantity: int = 1, *, method: str = "stripe",
        email: str = "ada@example.com", coupon: str | None = None, headers=None):
    """Cart, details, review, "Place order": the shopper's way. Returns the last answer."""
    add_to_cart(client, variant_id, quantity)
    if coupon:
        client.post("/cart/coupon", data={"code": coupon,
                                          "csrf_token": csrf_token(client, "/cart")})
    details = {"csrf_token": csrf_token(client, "/checkout"), "email": email,
               "shipping_method": "standard", "payment_method": method, **f.ADDRESS}
    response = client.post("/checkout", data=details)
    assert response.status_code == 303, response.get_data(as_text=True)
    review = client.get("/checkout/review").get_data(as_text=True)
    form = {name: re.search(rf'name="{name}" value="([^"]*)"', review).group(1)
            for name in ("csrf_token", "token", "expected_total")}
    return client.post("/checkout/place", data=form, headers=headers or {})


def last_order() -> Order:
    db.session.rollback()
    return db.session.execute(select(Order).order_by(Order.id.desc()).limit(1)).scalar_one()


def local_path(url: str) -> str:
    """A shop URL as the test client wants it (path and query)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def stock(variant_id: int) -> int:
    db.session.rollback()
    return db.session.get(Variant, variant_id).stock_quantity


def assert_stock_invariant() -> None:
    """SPEC section 4: units received = units on hand + units in orders still holding them."""
    db.session.rollback()
    for variant in db.session.execute(select(Variant)).scalars():
        received = db.session.execute(select(func.coalesce(func.sum(StockAdjustment.delta), 0))
                                      .where(StockAdjustment.variant_id == variant.id)).scalar_one()
        held = db.session.execute(
            select(func.coalesce(func.sum(OrderLine.quantity), 0)).join(Order)
            .where(OrderLine.variant_id == variant.id,
                   Order.status.not_in(("cancelled", "refunded")))).scalar_one()
        assert received == variant.stock_quantity + held, variant.sku
