"""Read-replica routing with two real databases (SPEC sections 2 and 9).

The primary and the "replica" are two separately migrated databases (two SQLite files, or two
MySQL databases with TEST_DATABASE_URL) holding different rows, so each answer shows which one
served it: catalogue reads must come from the replica; checkout, admin, any write and every read
inside a write path from the primary; and a client that has just written reads the primary for
READ_YOUR_WRITES_SECONDS.
"""
from __future__ import annotations

import logging
import re
import sqlite3
import time
import uuid

import pytest
from flask import g
from sqlalchemy import String, create_engine, event, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from shop import create_app
from shop.extensions import db
from shop.models import Category, Order, Product, Variant
from shop.services import cache, database, routing
from shop.services.database import write_transaction
from tests import factories as f
from tests.conftest import MYSQL_URL, ShopClient, _empty_tables, _mysql_database_url, _worker
from tests.logs import ShopLog
from tests.relay import Relay

from .test_ops import redis_url

RYW_SECONDS = 2
FORM = {"email": "guest@example.com", "name": "Ada Lovelace", "line1": "12 Analytical St",
        "line2": "", "city": "London", "region": "", "postal_code": "N1 7AA", "country": "GB",
        "phone": "", "shipping_method": "standard", "payment_method": "manual"}


@pytest.fixture(scope="module")
def two_databases(tmp_path_factory):
    """(primary URL, replica URL): both migrated, both empty."""
    if MYSQL_URL:
        urls = tuple(_mysql_database_url(MYSQL_URL, f"shop_ops_{role}_{_worker()}")
                     for role in ("primary", "replica"))
    else:
        folder = tmp_path_factory.mktemp("replication")
        urls = tuple(f"sqlite:///{folder / role}.db" for role in ("primary", "replica"))
    for url in urls:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url}, env="testing")
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            db.engine.dispose()
    yield urls
    if MYSQL_URL:
        engine = create_engine(urls[0])
        with engine.connect() as conn:
            for url in urls:
                name = make_url(url).database
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()


class Shop:
    """The shop on a primary with a replica, plus an app that writes straight to the replica."""

    def __init__(self, primary_url: str, replica_url: str | None, tmp_path, *,
                 replica_path: str | None = None, **overrides) -> None:
        """`replica_path`: the URL by which the shop reaches the replica (default
        `replica_url`, the one the tests write it by)."""
        config = {"SQLALCHEMY_DATABASE_URI": primary_url,
                  "DATABASE_REPLICA_URL": replica_path or replica_url,
                  "SECRET_KEY": uuid.uuid4().hex, "REDIS_URL": None, "STRIPE_SECRET_KEY": None,
                  "OUTBOX_DIR": str(tmp_path / "outbox"), "UPLOAD_DIR": str(tmp_path / "up"),
                  "READ_YOUR_WRITES_SECONDS": RYW_SECONDS,
                  "CACHE_KEY_PREFIX": f"test-{uuid.uuid4().hex}:"}
        config.update(overrides)
        self.app = create_app(config, env="testing")
        self.app.test_client_class = ShopClient
        self.replica_app = create_app({"SQLALCHEMY_DATABASE_URI": replica_url or primary_url},
                                      env="testing")

    def client(self):
        return self.app.test_client()

    def on_primary(self):
        return self.app.app_context()

    def on_replica(self):
        return self.replica_app.app_context()

    def close(self) -> None:
        for app in (self.app, self.replica_app):
            with app.app_context():
                db.session.remove()
                _empty_tables()
                db.engine.dispose()
                for reader in database.reader_engines(app):
                    reader.dispose()
                engine = routing.replica_engine()
                if engine is not None:
                    engine.dispose()


def fill(shop: Shop) -> dict:
    """Different rows in each database; the same slugs where a page must tell them apart."""
    ids = {}
    with shop.on_primary():
        lamps = f.category("Lamps", slug="lamps")
        ids["primary_variant"] = f.variant_of(
            f.product("Primary Lamp", price="20.00", stock=5, slug="primary-lamp",
                      category=lamps)).id
        ids["desk_primary_variant"] = f.variant_of(
            f.product("Desk Lamp", price="40.00", stock=5, slug="desk-lamp", category=lamps)).id
        ids["staff"] = f.user("staff@example.com", role="admin").email
    with shop.on_replica():
        lamps = f.category("Lamps", slug="lamps")
        f.product("Replica Lamp", price="30.00", stock=5, slug="replica-lamp", category=lamps)
        # What a lagging replica still says about the desk lamp.
        f.product("Desk Lamp", price="39.00", stock=5, slug="desk-lamp", category=lamps)
    return ids


@pytest.fixture
def shop(two_databases, tmp_path):
    built = Shop(*two_databases, tmp_path)
    built.ids = fill(built)  # type: ignore[attr-defined]
    yield built
    built.close()


def names(html: str) -> set[str]:
    return set(re.findall(r'<h3 class="card-title"><a href="/p/[^"]+">([^<]+)</a>', html))


CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf(client, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def add_to_cart(client, variant_id: int):
    return client.post("/cart/add", data={"variant_id": variant_id, "quantity": 1,
                                          "csrf_token": csrf(client, "/account/login")})


def wait_out_read_your_writes() -> None:
    time.sleep(RYW_SECONDS + 1.1)


# ---- pages -----------------------------------------------------------------------------------

def test_catalogue_pages_read_the_replica(shop):
    client = shop.client()
    listing = client.get("/products").get_data(as_text=True)
    assert names(listing) == {"Replica Lamp", "Desk Lamp"}
    assert names(client.get("/c/lamps").get_data(as_text=True)) == {"Replica Lamp", "Desk Lamp"}
    assert "Replica Lamp" in client.get("/").get_data(as_text=True)
    assert client.get("/p/replica-lamp").status_code == 200
    assert client.get("/p/primary-lamp").status_code == 404
    assert "39.00" in client.get("/p/desk-lamp").get_data(as_text=True)
    assert "shop_rw" not in client.get("/products").headers.get("Set-Cookie", "")


def test_everything_else_reads_the_primary(shop):
    client = shop.client()
    assert client.get("/readyz").get_json()["checks"] == {"database": "ok", "replica": "ok"}
    # The cart page is not a catalogue page: it prices from the primary.
    add_to_cart(client, shop.ids["desk_primary_variant"])
    cart = client.get("/cart").get_data(as_text=True)
    assert "Desk Lamp" in cart and "40.00" in cart and "39.00" not in cart


def test_checkout_writes_and_reads_the_primary_only(shop):
    client = shop.client()
    assert add_to_cart(client, shop.ids["primary_variant"]).status_code == 303
    data = dict(FORM, csrf_token=csrf(client, "/checkout"))
    assert client.post("/checkout", data=data).status_code == 303
    review = client.get("/checkout/review").get_data(as_text=True)
    form = {name: re.search(rf'name="{name}" value="([^"]+)"', review).group(1)
            for name in ("token", "expected_total", "csrf_token")}
    assert form["expected_total"].startswith("2")  # 20.00 from the primary, plus tax
    placed = client.post("/checkout/place", data=form)
    assert placed.status_code == 303 and "/orders/SO-" in placed.headers["Location"]
    with shop.on_primary():
        assert db.session.scalar(select(func.count(Order.id))) == 1
        assert db.session.get(Variant, shop.ids["primary_variant"]).stock_quantity == 4
    with shop.on_replica():
        assert db.session.scalar(select(func.count(Order.id))) == 0
    # The confirmation page (an order, not the catalogue) is read from the primary too.
    assert "Primary Lamp" in client.get(placed.headers["Location"]).get_data(as_text=True)


def test_admin_reads_and_writes_the_primary_and_staff_see_their_change(shop):
    staff = shop.client()
    login = staff.post("/account/login", data={"email": "staff@example.com",
                                               "password": f.PASSWORD,
                                               "csrf_token": csrf(staff, "/account/login")})
    assert login.status_code in (302, 303)
    products = staff.get("/admin/product/").get_data(as_text=True)
    assert "Primary Lamp" in products and "Replica Lamp" not in products
    created = staff.post("/admin/category/new/", data={
        "csrf_token": csrf(staff, "/admin/category/new/"), "name": "Floor Lamps",
        "slug": "floor-lamps", "description": "", "position": "5"})
    assert created.status_code in (302, 303)
    with shop.on_primary():
        assert db.session.scalar(select(Category.id).where(Category.slug == "floor-lamps"))
    with shop.on_replica():
        assert db.session.scalar(select(Category.id).where(Category.slug == "floor-lamps")) is None
    # Read-your-writes: the staff member sees the new category at once (from the primary)...
    assert staff.get("/c/floor-lamps").status_code == 200
    # ...a shopper who wrote nothing reads the replica, which has not caught up.
    assert shop.client().get("/c/floor-lamps").status_code == 404
    wait_out_read_your_writes()
    assert staff.get("/c/floor-lamps").status_code == 404  # back on the (lagging) replica


def test_read_your_writes_after_any_write_then_back_to_the_replica(shop):
    client = shop.client()
    assert client.get("/p/primary-lamp").status_code == 404
    response = add_to_cart(client, shop.ids["primary_variant"])
    assert "shop_rw=" in response.headers["Set-Cookie"]
    assert client.get("/p/primary-lamp").status_code == 200
    assert "40.00" in client.get("/p/desk-lamp").get_data(as_text=True)
    assert shop.client().get("/p/primary-lamp").status_code == 404  # other clients: replica
    wait_out_read_your_writes()
    assert client.get("/p/primary-lamp").status_code == 404


@pytest.mark.skipif(redis_url() is None, reason="needs the local Redis")
def test_the_page_cache_is_not_filled_from_a_replica_that_lags_behind_a_change(
        two_databases, tmp_path):
    """Staff change a price; the primary has it, the replica not yet. The page rendered just
    after the change is kept for every shopper as the new version's, so it must come from the
    primary; once the replica's lag has passed, misses read the replica again."""
    shop = Shop(*two_databases, tmp_path, REDIS_URL=redis_url(), CATALOG_CACHE_SECONDS=60)
    try:
        shop.ids = fill(shop)
        with shop.on_primary():
            db.session.execute(text("UPDATE variants SET price = 45 WHERE id = :id"),
                               {"id": shop.ids["desk_primary_variant"]})
            db.session.commit()
            cache.catalog_changed()
        first = shop.client().get("/p/desk-lamp")
        assert first.headers.get("X-Cache") != "hit"
        assert "45.00" in first.get_data(as_text=True)
        again = shop.client().get("/p/desk-lamp")
        assert again.headers["X-Cache"] == "hit" and "45.00" in again.get_data(as_text=True)
        wait_out_read_your_writes()
        assert shop.client().get("/p/replica-lamp").status_code == 200  # the replica again
    finally:
        shop.close()


# ---- the JSON API ----------------------------------------------------------------------------

def test_api_catalogue_reads_the_replica(shop):
    client = shop.client()
    listed = client.get("/api/v1/products").get_json()
    assert {p["name"] for p in listed["items"]} == {"Replica Lamp", "Desk Lamp"}
    assert client.get("/api/v1/products/primary-lamp").status_code == 404
    assert client.get("/api/v1/products/desk-lamp").get_json()["variants"][0]["price"] == "39.00"
    categories = client.get("/api/v1/categories").get_json()["items"]
    assert [c["slug"] for c in categories] == ["lamps"]


def test_api_token_clients_read_their_writes(two_databases, tmp_path):
    """Token clients keep no cookie: without Redis their catalogue reads stay on the primary;
    with Redis they read the replica until they write, then the primary for a few seconds."""
    from shop.services import api_tokens

    plain = Shop(*two_databases, tmp_path)
    try:
        fill(plain)
        with plain.on_primary():
            _record, token = api_tokens.create(f.user("api@example.com").id, "t")
        headers = {"Authorization": f"Bearer {token}"}
        client = plain.client()
        assert client.get("/api/v1/products/primary-lamp", headers=headers).status_code == 200
        assert client.get("/api/v1/products/primary-lamp").status_code == 404
    finally:
        plain.close()

    url = redis_url()
    if url is None:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    shop = Shop(*two_databases, tmp_path, REDIS_URL=url)
    try:
        ids = fill(shop)
        with shop.on_primary():
            _record, token = api_tokens.create(f.user("api@example.com").id, "t")
        headers = {"Authorization": f"Bearer {token}"}
        client = shop.client()
        assert client.get("/api/v1/products/primary-lamp", headers=headers).status_code == 404
        added = client.post("/api/v1/cart/items", headers=headers,
                            json={"variant_id": ids["primary_variant"], "quantity": 1})
        assert added.status_code == 200, added.get_json()
        # A fresh client (no cookie from that answer): only the token says it wrote.
        client = shop.client()
        assert client.get("/api/v1/products/primary-lamp", headers=headers).status_code == 200
        assert client.get("/api/v1/products/primary-lamp").status_code == 404
        wait_out_read_your_writes()
        assert client.get("/api/v1/products/primary-lamp", headers=headers).status_code == 404
    finally:
        shop.close()


# ---- inside one request ----------------------------------------------------------------------

def _name(slug: str) -> str | None:
    return db.session.scalar(select(Product.name).where(Product.slug == slug))


def test_reads_inside_a_write_path_and_locking_reads_use_the_primary(shop):
    with shop.app.test_request_context("/products"):
        shop.app.preprocess_request()
        assert routing.replica_allowed()
        assert _name("replica-lamp") == "Replica Lamp"  # a plain catalogue read: replica
        assert db.session.scalar(text("SELECT name FROM products WHERE slug = 'replica-lamp'")) \
            == "Replica Lamp"
        typed = text("SELECT name FROM products WHERE slug = :slug").columns(name=String())
        assert db.session.scalar(typed, {"slug": "replica-lamp"}) == "Replica Lamp"
        assert db.session.scalar(text(
            "WITH named AS (SELECT name, slug FROM products) "
            "SELECT name FROM named WHERE slug = 'replica-lamp'")) == "Replica Lamp"
        # A locking read is part of a write: primary, even before any write started.
        locked = db.session.scalar(select(Product.name).where(Product.slug == "primary-lamp")
                                   .with_for_update())
        assert locked == "Primary Lamp"
        db.session.rollback()
        with write_transaction():
            assert _name("primary-lamp") == "Primary Lamp"
            assert _name("replica-lamp") is None
        # After a write, the rest of the request stays on the primary.
        assert _name("primary-lamp") == "Primary Lamp"
        assert g.replica_used


@pytest.mark.parametrize("sql,replica", [
    ("SELECT name FROM products", True),
    ("  (SELECT id FROM products) UNION (SELECT id FROM categories)", True),
    ("WITH RECURSIVE t AS (SELECT id FROM categories) SELECT id FROM t", True),
    ("SELECT updated_at, last_update FROM products", True),
    ("SELECT id FROM variants WHERE id = 1 FOR UPDATE", False),
    ("SELECT id FROM variants WHERE id = 1 LOCK IN SHARE MODE", False),
    ("SELECT id FROM variants FOR SHARE", False),
    ("UPDATE variants SET stock_quantity = 0", False),
    ("WITH x AS (SELECT 1) DELETE FROM carts", False),
    ("INSERT INTO carts (token) SELECT 'x'", False),
])
def test_which_hand_written_sql_may_read_the_replica(sql, replica):
    assert routing._is_plain_read(text(sql)) is replica
    assert routing._is_plain_read(text(sql).columns()) is replica


def test_a_request_can_choose_the_primary_without_counting_as_a_write(shop):
    with shop.app.test_request_context("/products"):
        shop.app.preprocess_request()
        assert _name("primary-lamp") is None
        routing.use_primary()
        assert _name("primary-lamp") == "Primary Lamp"
        assert not routing.wrote()


def test_requests_outside_the_catalogue_and_outside_requests_use_the_primary(shop):
    with shop.app.test_request_context("/cart"):
        shop.app.preprocess_request()
        assert not routing.replica_allowed()
        assert _name("primary-lamp") == "Primary Lamp"
    with shop.app.test_request_context("/products", method="POST"):
        shop.app.preprocess_request()
        assert _name("primary-lamp") == "Primary Lamp"
    with shop.app.app_context():  # CLI commands and jobs
        assert _name("primary-lamp") == "Primary Lamp"


def test_without_a_replica_everything_uses_the_primary(two_databases, tmp_path):
    plain = Shop(two_databases[0], None, tmp_path)
    try:
        with plain.on_primary():
            f.product("Primary Lamp", slug="primary-lamp")
        client = plain.client()
        assert client.get("/p/primary-lamp").status_code == 200
        assert client.get("/api/v1/products/primary-lamp").status_code == 200
        assert client.get("/readyz").get_json()["checks"] == {"database": "ok"}
        with plain.app.test_request_context("/products"):
            plain.app.preprocess_request()
            assert not routing.replica_allowed()
    finally:
        plain.close()


# ---- a replica that fails ----------------------------------------------------------------------

class BrokenReplica:
    """The replica database of `two_databases` behind a path that fails and can be mended: on
    SQLite a file in a folder that does not exist yet (connecting fails: "unable to open
    database file"), on MySQL a relay that closes every connection (refused mid-handshake)."""

    def __init__(self, replica_url: str, tmp_path) -> None:
        self._source = replica_url
        self.relay = None
        if MYSQL_URL:
            self.relay = Relay(replica_url)
            self.relay.cut()
            self.url = self.relay.url
        else:
            self._path = tmp_path / "mended-later" / "replica.db"
            self.url = f"sqlite:///{self._path}"
        self.tries = 0
        event.listen(Engine, "do_connect", self._count)

    def _count(self, _dialect, _record, cargs, cparams) -> None:
        target = str(self.relay.port) if self.relay else str(self._path)
        if target in repr((cargs, cparams)):
            self.tries += 1

    def mend(self) -> None:
        if self.relay:
            self.relay.restore()
        else:
            self._path.parent.mkdir()
            with sqlite3.connect(make_url(self._source).database) as source, \
                    sqlite3.connect(self._path) as copy:
                source.backup(copy)

    def close(self) -> None:
        event.remove(Engine, "do_connect", self._count)
        if self.relay:
            self.relay.close()


RETRY_AFTER = 6  # seconds: room for a loaded machine between the steps within an interval
# (2 s was too little on a slow machine under load: ten pages took longer, and a second try came)


def test_a_failing_replica_costs_one_try_then_the_primary_serves_the_catalogue(
        two_databases, tmp_path):
    """A replica that cannot serve (refused, lost, timed out) no longer answers the catalogue
    503 while the primary could: the failed page is read again from the primary, the process
    leaves the replica alone for DATABASE_REPLICA_RETRY_AFTER (one try, one log line, for any
    number of pages), /readyz reports it without taking the host out, and once it is back the
    next try after the interval reads it again."""
    broken = BrokenReplica(two_databases[1], tmp_path)
    shop = Shop(*two_databases, tmp_path, replica_path=broken.url,
                DATABASE_REPLICA_RETRY_AFTER=RETRY_AFTER)
    try:
        shop.ids = fill(shop)  # type: ignore[attr-defined]
        client = shop.client()
        with ShopLog("shop.replica") as log:
            for path in ("/products", "/c/lamps", "/", "/products?page=1"):
                response = client.get(path)
                assert response.status_code == 200, path
                assert "Primary Lamp" in response.get_data(as_text=True), path
            assert names(client.get("/products").get_data(as_text=True)) == \
                {"Primary Lamp", "Desk Lamp"}
            assert "40.00" in client.get("/p/desk-lamp").get_data(as_text=True)
            assert client.get("/p/primary-lamp").status_code == 200
            api = client.get("/api/v1/products")
            assert api.status_code == 200
            assert {p["name"] for p in api.get_json()["items"]} == {"Primary Lamp", "Desk Lamp"}
            assert client.get("/api/v1/products/primary-lamp").status_code == 200
            assert broken.tries == 1
            assert len(log.lines()) == 1 and "replica unavailable" in log.lines()[0]

            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.get_json()["status"] == "degraded"
            assert ready.get_json()["checks"]["database"] == "ok"
            assert ready.get_json()["checks"]["replica"].startswith("error: ")

            # Still broken after the interval: one more try, answered from the primary.
            tries = broken.tries  # /readyz's own connection included
            time.sleep(RETRY_AFTER + 0.1)
            assert names(client.get("/products").get_data(as_text=True)) == \
                {"Primary Lamp", "Desk Lamp"}
            assert client.get("/p/primary-lamp").status_code == 200
            assert broken.tries == tries + 1
            assert len(log.lines()) == 1  # logged when it opened, not at each try

            broken.mend()
            assert names(client.get("/products").get_data(as_text=True)) == \
                {"Primary Lamp", "Desk Lamp"}  # within the interval: the primary still
            time.sleep(RETRY_AFTER + 0.1)
            assert names(client.get("/products").get_data(as_text=True)) == \
                {"Replica Lamp", "Desk Lamp"}
            assert client.get("/p/primary-lamp").status_code == 404
            assert log.lines(logging.INFO) == ["replica answered again: catalogue reads go to "
                                               "it again"]
            assert client.get("/readyz").get_json() == {
                "status": "ok", "checks": {"database": "ok", "replica": "ok"}}
    finally:
        shop.close()
        broken.close()


def test_a_failure_that_is_not_the_replicas_is_not_answered_again(shop, monkeypatch):
    """Only the replica's failures send a page to the primary: a page that read the replica
    and then failed elsewhere answers its 503 at once (its handler runs once), and the replica
    stays in use."""
    from shop.services import catalog

    client = shop.client()
    real = catalog.list_products
    calls = []

    def read_then_fail(*args, **kwargs):
        calls.append(real(*args, **kwargs))  # read from the replica
        raise OperationalError("SELECT 1", {}, Exception("(2013, 'Lost connection')"))

    monkeypatch.setattr(catalog, "list_products", read_then_fail)
    response = client.get("/products")
    assert response.status_code == 503
    assert len(calls) == 1
    monkeypatch.undo()
    assert names(client.get("/products").get_data(as_text=True)) == {"Replica Lamp", "Desk Lamp"}
