"""Facts every catalogue page reads, kept current by the writes that change them.

Two rows of `catalog_state`:
- `category_tree`: the category tree's revision, a new random number whenever any category
  is added, changed or deleted. Pages read it with their own query; a worker keeps the tree
  it last read and reads it again only when the revision moved (services.catalog).
- `active_products`: how many products are active, so the unfiltered listing's total is one
  row instead of counting the whole catalogue (InnoDB counts row by row: milliseconds).

They are kept in the same transaction as the change, whoever makes it: the ORM's flushes
(back office, API, CSV import, tests) are watched by a session listener; Core writes call
`categories_changed` / `recount_products` themselves (seed). A missing row (an emptied table)
is written again by the next change; until then pages work the facts out as before.
"""
from __future__ import annotations

import secrets

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

TREE = "category_tree"
ACTIVE_PRODUCTS = "active_products"
# Scalar subqueries a page's own query embeds.
TREE_SQL = "(SELECT value FROM catalog_state WHERE name = 'category_tree')"
ACTIVE_PRODUCTS_SQL = "(SELECT value FROM catalog_state WHERE name = 'active_products')"


def categories_changed(connection: Connection) -> None:
    """A category was added, changed or deleted: a new tree revision."""
    _write(connection, TREE, "UPDATE catalog_state SET value = :v WHERE name = :name",
           "INSERT INTO catalog_state (name, value) VALUES (:name, :v)",
           {"v": secrets.randbits(62)})


def recount_products(connection: Connection) -> None:
    """Count the active products again (after products were added, deleted, (de)activated).

    The row is locked first: a concurrent change waits for this transaction, then counts
    with what it committed (each statement sees what is committed under READ COMMITTED)."""
    if connection.dialect.name != "sqlite":  # SQLite writers are serialized already
        connection.execute(text("SELECT value FROM catalog_state WHERE name = :name "
                                "FOR UPDATE"), {"name": ACTIVE_PRODUCTS})
    count = "(SELECT count(*) FROM products WHERE active = :active)"
    _write(connection, ACTIVE_PRODUCTS,
           f"UPDATE catalog_state SET value = {count} WHERE name = :name",
           f"INSERT INTO catalog_state (name, value) SELECT :name, {count}",
           {"active": True})


def _write(connection: Connection, name: str, update_sql: str, insert_sql: str,
           params: dict) -> None:
    params = dict(params, name=name)
    if connection.execute(text(update_sql), params).rowcount == 0:
        connection.execute(text(insert_sql), params)


def _watch_flush(session: Session, _context) -> None:
    """After each ORM flush: did it touch categories, or the set of active products?"""
    from ..models import Category, Product

    categories = products = False
    for obj in session.new:
        categories = categories or isinstance(obj, Category)
        products = products or isinstance(obj, Product)
    for obj in session.deleted:
        categories = categories or isinstance(obj, Category)
        products = products or isinstance(obj, Product)
    for obj in session.dirty:
        if isinstance(obj, Category):
            categories = categories or session.is_modified(obj, include_collections=False)
        elif isinstance(obj, Product) and not products:
            products = inspect(obj).attrs.active.history.has_changes()
    if categories or products:
        connection = session.connection()
        if categories:
            categories_changed(connection)
        if products:
            recount_products(connection)


def install(session_class: type[Session]) -> None:
    """Watch every flush of the shop's sessions (idempotent)."""
    if not event.contains(session_class, "after_flush", _watch_flush):
        event.listen(session_class, "after_flush", _watch_flush)
