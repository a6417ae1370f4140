"""A silent Redis (black-holed: connections are accepted, nothing is answered) costs a web
process one timeout now and then, not one per request: after a failure the process leaves
Redis alone for REDIS_RETRY_AFTER and goes on as while Redis is down (pages rendered uncached,
limits counted in memory, jobs run inline), then one request tries again. Against the real
Redis through tests/relay.py's relay, made a black hole rather than cut; what the shop tries
is counted at the relay."""
from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import select

from shop.extensions import db
from shop.models import Product
from tests import factories as f
from tests.logs import ShopLog
from tests.payments_helpers import buy, last_order
from tests.relay import Relay
from tests.web.test_security import REDIS_URL, _redis_or_skip, login

# The shop's Redis timeouts here: long enough that time alone tells twenty of them from one on
# a loaded machine (the count of attempts at the relay tells them apart exactly).
TIMEOUT = 1.0


@pytest.fixture
def relay():
    _redis_or_skip()
    relay = Relay(REDIS_URL)
    yield relay
    relay.close()


@pytest.fixture
def shop_on(make_app, relay):
    """Build the shop on Redis through the relay, under key prefixes of its own (removed
    afterwards), with a shirt and a customer."""
    tag = f"test-breaker-{uuid.uuid4().hex}"

    def build(**overrides):
        app = make_app(**{"REDIS_URL": relay.url, "JOBS_QUEUE": tag,
                          "CACHE_KEY_PREFIX": f"{tag}:cache:", "RATELIMIT_KEY_PREFIX": f"{tag}:rl",
                          "REDIS_CONNECT_TIMEOUT": TIMEOUT, "REDIS_SOCKET_TIMEOUT": TIMEOUT,
                          "REDIS_RETRY_AFTER": 60, **overrides})
        with app.app_context():
            shirts = f.category("Shirts", slug="shirts")
            f.product("Linen Shirt", category=shirts, slug="linen-shirt", price="30.00",
                      stock=6)
            f.user("customer@example.com")
        return app

    yield build
    conn = Redis.from_url(REDIS_URL)
    for key in conn.scan_iter(match=f"*{tag}*", count=500):
        conn.delete(key)


def page(client, url: str = "/p/linen-shirt"):
    response = client.get(url)
    assert response.status_code == 200, url
    return response


def test_a_silent_redis_costs_one_timeout_not_one_per_page(shop_on, relay):
    """Each page asked the silent Redis for the cached copy and waited out the timeout: twenty
    pages, twenty timeouts. Now the first failure opens the breaker and the other pages are
    rendered without asking, with one warning for the lot."""
    app = shop_on()
    page(app.test_client(), "/")  # Redis in use: the catalogue version tracked, "/" stored
    relay.black_hole()
    with ShopLog() as log:
        started = time.monotonic()
        answers = [page(app.test_client()) for _ in range(20)]
        elapsed = time.monotonic() - started
    assert all(r.headers.get("X-Cache") != "hit" for r in answers)
    assert "Linen Shirt" in answers[-1].get_data(as_text=True)
    assert relay.attempts == 1
    assert elapsed < 10 * TIMEOUT  # twenty timeouts would take 20 s
    assert len(log.lines(logging.WARNING, "shop.redis")) == 1
    assert "redis unavailable" in log.lines(logging.WARNING, "shop.redis")[0]
    assert len(log.lines(logging.WARNING)) <= 2  # not one per page


def test_logins_are_still_limited_while_redis_is_silent(shop_on, relay):
    app = shop_on(RATELIMIT_ENABLED=True)
    assert login(app.test_client()).status_code == 303  # counted in Redis
    relay.black_hole()
    attacker = app.test_client()
    answers = [login(attacker, password=f"wrong-guess-{n}").status_code for n in range(12)]
    assert answers == [401] * 10 + [429] * 2  # counted in this process's memory
    assert relay.attempts == 1


def test_jobs_run_inline_without_asking_a_silent_redis_again(shop_on, relay):
    """While the breaker is open, an order's mail is sent inline at once (as while Redis is
    down), without waiting out a timeout per job; /readyz still says Redis is down."""
    app = shop_on()
    relay.black_hole()
    page(app.test_client())  # the one timeout: the breaker opens
    tried = relay.attempts
    client = app.test_client()
    with app.app_context():
        shirt = f.variant_of(db.session.execute(
            select(Product).filter_by(slug="linen-shirt")).scalar_one())
        response = buy(client, shirt.id, 2, method="manual")
        order = last_order()
    assert response.status_code == 303
    mails = [p.read_text() for p in Path(app.config["OUTBOX_DIR"]).glob("*.eml")]
    assert any(f"Your order {order.number}" in mail for mail in mails)  # sent inline
    assert relay.attempts == tried
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"].startswith("error")


def test_the_cache_is_used_again_once_redis_answers_and_the_interval_is_over(shop_on, relay):
    app = shop_on(REDIS_RETRY_AFTER=1)
    page(app.test_client(), "/")
    relay.black_hole()
    with ShopLog() as log:
        page(app.test_client())  # the breaker opens
        relay.restore()
        # Back, but not asked again before the interval is over: nothing stored, no hit.
        for _ in range(2):
            assert page(app.test_client()).headers.get("X-Cache") != "hit"
        time.sleep(1.2)
        page(app.test_client())  # asked again: rendered and stored
        assert page(app.test_client()).headers.get("X-Cache") == "hit"
    assert len(log.lines(logging.WARNING, "shop.redis")) == 1
    assert log.lines(logging.INFO, "shop.redis") == ["redis reachable again: used again"]
