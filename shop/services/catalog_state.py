"""Facts every catalogue page reads, kept current by the writes that change them.

Two rows of `catalog_state`:
- `category_tree`: the category tree's revision, a new random number whenever any category
  is added, changed or deleted. Pages read it with their own query; a worker keeps the tree
  it last read and reads it again only when the revision moved (services.catalog).
- `active_products`: how many products are active, so the unfiltered listing's total is one
  row instead of counting the whole catalogue (InnoDB counts row by row: milliseconds).

And on each product's own row, `card_image_path` / `card_image_alt`: its first image (by
position, then id) that product cards show, so a page of cards reads no image rows (on
MariaDB the first-image subquery was a sixth of a listing page's query); and `name_key`, its
name as the name sorts order it (`name_key()`: without case or accents, as a shopper reads
"Éclair" among the E's and "apple corer" among the A's). SQLite compares the names themselves
byte for byte, every capital before every small letter and "É" after "z"; MySQL's collation
ignores case and accents. Both order the key alike, by an index on (active, name_key).

They are kept in the same transaction as the change, whoever makes it: the ORM's flushes
(back office, API, CSV import, tests) are watched by a session listener; Core writes call
`categories_changed` / `recount_products` / `card_images_changed` themselves (seed), or write
the card image and the name key with the product. A missing row (an emptied table) is written
again by the next change; until then pages work the facts out as before. `flask
refresh-catalog` works all of them out again after hand-written SQL.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import search

TREE = "category_tree"
ACTIVE_PRODUCTS = "active_products"
# Scalar subqueries a page's own query embeds.
TREE_SQL = "(SELECT value FROM catalog_state WHERE name = 'category_tree')"
ACTIVE_PRODUCTS_SQL = "(SELECT value FROM catalog_state WHERE name = 'active_products')"


# The key's length (the column's): names that differ only after it are in id order.
NAME_KEY_LENGTH = 160
# Runs of spaces, line breaks and control characters are one space in the key: MySQL pads
# the shorter of two keys with spaces to compare them, which would order a character below
# the space otherwise than SQLite does.
_SPACES = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


def name_key(name: str | None) -> str:
    """A product name as the name sorts order it: folded as search terms are (lower case,
    without accents, ß as ss, æ as ae: search.fold), then case-folded (ς as σ), its runs of
    spaces one space, at most NAME_KEY_LENGTH characters. "Éclair" is "eclair", "Apple corer"
    and "apple  corer" are "apple corer" (in id order, then)."""
    key = _SPACES.sub(" ", search.fold(name or "").casefold()).strip()
    return key[:NAME_KEY_LENGTH].rstrip()


def name_keys_changed(connection: Connection, product_ids: Iterable[int]) -> None:
    """Write these products' name keys again from their names, where they differ (after a
    hand-written change of names: `flask refresh-catalog`)."""
    ids = ", ".join(str(int(i)) for i in sorted(set(product_ids)))
    if not ids:
        return
    stale = [{"id": pid, "key": name_key(name)} for pid, name, key in connection.execute(text(
        f"SELECT id, name, name_key FROM products WHERE id IN ({ids})"))
        if name_key(name) != key]
    if stale:
        connection.execute(text("UPDATE products SET name_key = :key WHERE id = :id"), stale)


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


_FIRST_IMAGE = ("(SELECT f.{column} FROM product_images f WHERE f.product_id = products.id "
                "ORDER BY f.position, f.id LIMIT 1)")
_CARD_IMAGES_SQL = (f"UPDATE products SET card_image_path = {_FIRST_IMAGE.format(column='path')}, "
                    f"card_image_alt = {_FIRST_IMAGE.format(column='alt')} WHERE id IN ({{ids}})")


def card_images_changed(connection: Connection, product_ids: Iterable[int]) -> None:
    """These products' images were added, changed, reordered or deleted: their card image
    again, from their images as they are now.

    Their rows are locked first (`lock_products`): two writers of one product's images take
    turns, and the second reads the images the first committed."""
    ids = sorted(set(product_ids))
    if ids:
        lock_products(connection, ids)
        connection.execute(text(_CARD_IMAGES_SQL.format(ids=", ".join(map(str, ids)))))


def lock_products(connection: Connection, product_ids: Iterable[int]) -> None:
    """Lock these products' rows, in id order, for the rest of the transaction (not on SQLite,
    whose writers are serialized already). Taken before a product's images are written: the
    image rows' foreign key check share-locks the product's row, and two writers that both
    held that share lock and then wanted the row would deadlock."""
    ids = ", ".join(str(int(i)) for i in sorted(set(product_ids)))
    if ids and connection.dialect.name != "sqlite":
        connection.execute(text(f"SELECT id FROM products WHERE id IN ({ids}) ORDER BY id "
                                f"FOR UPDATE"))


def _write(connection: Connection, name: str, update_sql: str, insert_sql: str,
           params: dict) -> None:
    params = dict(params, name=name)
    if connection.execute(text(update_sql), params).rowcount == 0:
        connection.execute(text(insert_sql), params)


def _watch_flush(session: Session, _context) -> None:
    """After each ORM flush: did it touch categories, the set of active products, or
    products' images?"""
    from ..models import Category, Product, ProductImage

    categories = products = False
    imaged: set[int] = set()
    for obj in session.new:
        categories = categories or isinstance(obj, Category)
        products = products or isinstance(obj, Product)
        if isinstance(obj, ProductImage):
            imaged.update(_image_products(obj))
    for obj in session.deleted:
        categories = categories or isinstance(obj, Category)
        products = products or isinstance(obj, Product)
        if isinstance(obj, ProductImage):
            imaged.update(_image_products(obj))
    for obj in session.dirty:
        if isinstance(obj, Category):
            categories = categories or session.is_modified(obj, include_collections=False)
        elif isinstance(obj, Product) and not products:
            products = inspect(obj).attrs.active.history.has_changes()
        elif isinstance(obj, ProductImage) and session.is_modified(
                obj, include_collections=False):
            imaged.update(_image_products(obj))
    if categories or products or imaged:
        connection = session.connection()
        if categories:
            categories_changed(connection)
        if products:
            recount_products(connection)
        if imaged:
            card_images_changed(connection, imaged)


def _lock_before_flush(session: Session, _context, _instances) -> None:
    """Before a flush writes products' images: lock those products (see `lock_products`)."""
    from ..models import ProductImage

    imaged: set[int] = set()
    for group in (session.new, session.deleted, session.dirty):
        for obj in group:
            if isinstance(obj, ProductImage):
                imaged.update(_image_products(obj))
                product = obj.__dict__.get("product")  # set through the relationship
                if product is not None and product.__dict__.get("id") is not None:
                    imaged.add(product.__dict__["id"])
    if imaged:
        lock_products(session.connection(), imaged)


def _keep_name_keys(session: Session, _context, _instances) -> None:
    """Before a flush writes products: the name key of each one added or renamed."""
    from ..models import Product

    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Product) and (obj in session.new
                                         or inspect(obj).attrs.name.history.has_changes()):
            obj.name_key = name_key(obj.name)


def _image_products(image) -> set[int]:
    """The products an image belongs or belonged to in this flush (both, when it moved)."""
    history = inspect(image).attrs.product_id.history
    return {pid for pid in (*history.added, *history.unchanged, *history.deleted)
            if pid is not None}


def install(session_class: type[Session]) -> None:
    """Watch every flush of the shop's sessions (idempotent)."""
    if not event.contains(session_class, "after_flush", _watch_flush):
        event.listen(session_class, "after_flush", _watch_flush)
    if not event.contains(session_class, "before_flush", _lock_before_flush):
        event.listen(session_class, "before_flush", _lock_before_flush)
    if not event.contains(session_class, "before_flush", _keep_name_keys):
        event.listen(session_class, "before_flush", _keep_name_keys)
