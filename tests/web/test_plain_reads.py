"""A catalogue page's plain reads go through autocommit connections (on MySQL one round trip a
query, no ROLLBACK to end a transaction that only read; on SQLite no BEGIN or ROLLBACK), while
reads inside a transaction stay on the Session's connection and see its writes."""
from __future__ import annotations

from decimal import Decimal

import pymysql
import pytest
from sqlalchemy import create_engine, event, text

from shop.extensions import db
from shop.models import Product, Variant
from shop.services import catalog, database
from shop.services.database import write_transaction
from tests import factories as f
from tests.conftest import MYSQL_URL


def _no_transaction(driver_connection) -> bool:
    """The connection runs each statement on its own: autocommit (MySQL), none open (SQLite)."""
    if hasattr(driver_connection, "get_autocommit"):
        return driver_connection.get_autocommit()
    return driver_connection.in_transaction is False


@pytest.fixture
def rollbacks(monkeypatch) -> list[int]:
    """Every ROLLBACK PyMySQL sends to the server from this process."""
    sent: list[int] = []
    real = pymysql.connections.Connection.rollback

    def rollback(self):
        sent.append(1)
        return real(self)

    monkeypatch.setattr(pymysql.connections.Connection, "rollback", rollback)
    return sent


def test_catalogue_pages_read_outside_any_transaction(app):
    lamps = f.category("Lamps", slug="lamps")
    f.product("Desk Lamp", slug="desk-lamp", category=lamps, price="40.00", stock=3)
    db.session.remove()
    client = app.test_client()
    for url in ("/", "/products", "/c/lamps", "/p/desk-lamp"):
        assert client.get(url).status_code == 200  # warm: trees read, engines made
    autocommit: list[bool] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        autocommit.append(_no_transaction(conn.connection.driver_connection))

    readers = database.reader_engines(app)
    assert readers
    for engine in readers:
        event.listen(engine, "before_cursor_execute", record)
    try:
        for url in ("/", "/products", "/products?page=1&sort=price", "/c/lamps",
                    "/p/desk-lamp", "/products?q=lamp"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "Desk Lamp" in response.get_data(as_text=True)
    finally:
        for engine in readers:
            event.remove(engine, "before_cursor_execute", record)
    assert autocommit and all(autocommit)


@pytest.mark.mysql_only
@pytest.mark.skipif(not MYSQL_URL, reason="needs TEST_DATABASE_URL (MySQL)")
def test_catalogue_pages_send_no_rollback(app, rollbacks):
    f.product("Desk Lamp", slug="desk-lamp", price="40.00", stock=3)
    db.session.remove()
    client = app.test_client()
    for url in ("/products", "/p/desk-lamp"):
        assert client.get(url).status_code == 200
    rollbacks.clear()
    for url in ("/", "/products", "/products?sort=price", "/p/desk-lamp", "/products?q=lamp"):
        assert client.get(url).status_code == 200, url
    assert rollbacks == []


def test_reads_inside_a_transaction_see_its_own_writes(app):
    db.session.remove()

    class Undo(Exception):
        pass

    with pytest.raises(Undo), write_transaction():
        item = Product(name="Uncommitted Lamp", slug="uncommitted-lamp", description="x",
                       active=True, price=Decimal("5.00"))
        db.session.add(item)
        db.session.flush()
        db.session.add(Variant(product_id=item.id, sku="UNCOMMITTED-1", options={},
                               price=Decimal("5.00"), stock_quantity=2, position=0))
        db.session.flush()
        page = catalog.list_products(catalog.ProductFilters(sort="newest"))
        assert [card.slug for card in page.items] == ["uncommitted-lamp"]
        assert catalog.product_detail("uncommitted-lamp").name == "Uncommitted Lamp"
        raise Undo
    db.session.remove()
    assert catalog.list_products(catalog.ProductFilters()).total == 0


@pytest.mark.mysql_only
@pytest.mark.skipif(not MYSQL_URL, reason="needs TEST_DATABASE_URL (MySQL)")
def test_a_transaction_opened_on_a_plain_reader_is_still_rolled_back(app, rollbacks):
    reader = database.plain_reader(db.engine)
    table = "plain_reader_probe"
    with reader.connect() as conn:
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY)")
        conn.exec_driver_sql(f"DELETE FROM {table}")
    try:
        rollbacks.clear()
        with reader.connect() as conn:
            conn.exec_driver_sql("START TRANSACTION")
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES (1)")
        # The server said a transaction was open: closing the connection rolled it back.
        assert rollbacks == [1]
        with reader.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one() == 0
        rollbacks.clear()
        with reader.connect() as conn:
            conn.exec_driver_sql(f"SELECT count(*) FROM {table}")
        assert rollbacks == []  # nothing open: nothing sent
    finally:
        with reader.connect() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.mysql_only
@pytest.mark.skipif(not MYSQL_URL, reason="needs TEST_DATABASE_URL (MySQL)")
def test_a_killed_reader_connection_is_replaced_not_served_as_an_error(app, database_url):
    f.product("Killed Reader Lamp", slug="killed-reader-lamp")
    db.session.remove()
    client = app.test_client()
    assert client.get("/p/killed-reader-lamp").status_code == 200
    (reader,) = database.reader_engines(app)
    with reader.connect() as conn:
        pooled = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    killer = create_engine(database_url)
    with killer.connect() as conn:
        conn.execute(text(f"KILL {int(pooled)}"))
    killer.dispose()
    assert client.get("/p/killed-reader-lamp").status_code == 200
    with reader.connect() as conn:
        assert conn.execute(text("SELECT CONNECTION_ID()")).scalar_one() != pooled


def test_fetch_rows_reports_to_listeners_and_raises_sqlalchemy_errors(app):
    """The catalogue's cursor path keeps what SQLAlchemy's execute gives: listeners see each
    statement, and a driver error arrives as SQLAlchemy's DBAPIError (what the error pages and
    the connection checks expect), not as the driver's own."""
    from sqlalchemy.exc import DBAPIError

    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.engine.connect() as conn:
            assert database.fetch_rows(conn, "SELECT 1 + 1", {}) == [(2,)]
            with pytest.raises(DBAPIError):
                database.fetch_rows(conn, "SELECT no_such_column FROM products", {})
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert seen == ["SELECT 1 + 1", "SELECT no_such_column FROM products"]
