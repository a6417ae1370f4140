"""Housekeeping run daily (cron or the worker): forget what no longer matters."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, text

from ..extensions import db
from ..models import Cart, CartLine, EndedLogin, IdempotencyRecord, utcnow
from . import cache, catalog_state, postings, search
from .database import write_transaction

IDEMPOTENCY_DAYS = 2
GUEST_CART_DAYS = 30


@dataclass
class Purged:
    idempotency_records: int
    guest_carts: int
    ended_logins: int = 0


def purge_stale() -> Purged:
    """Delete idempotency records older than two days (clients retry within minutes), guest
    carts untouched for 30 days (their cookie is long gone; customers' carts are kept), and
    the record of logins ended whose cookies have expired."""
    now = utcnow()
    with write_transaction():
        records = db.session.execute(
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.created_at < now - timedelta(days=IDEMPOTENCY_DAYS))
            .execution_options(synchronize_session=False)).rowcount
        stale = select(Cart.id).where(Cart.user_id.is_(None),
                                      Cart.updated_at < now - timedelta(days=GUEST_CART_DAYS))
        cart_ids = list(db.session.execute(stale).scalars())
        if cart_ids:
            db.session.execute(delete(CartLine).where(CartLine.cart_id.in_(cart_ids))
                               .execution_options(synchronize_session=False))
            db.session.execute(delete(Cart).where(Cart.id.in_(cart_ids))
                               .execution_options(synchronize_session=False))
    with write_transaction():
        # Logins ended by "Log out" whose cookies have all expired by now.
        ended = db.session.execute(delete(EndedLogin).where(EndedLogin.expires_at < now)
                                   .execution_options(synchronize_session=False)).rowcount
    return Purged(records, len(cart_ids), ended)


REFRESH_BATCH = 2000


def refresh_catalog() -> int:
    """Work out again what the shop keeps derived from the catalogue, after products or
    categories were changed by hand in SQL (which the shop's own writes never need): the
    category tree's revision, the number of active products, every product's search terms,
    card image and name key (a batch of products a transaction) and then the postings, and
    the page cache's version.
    Returns the number of products whose terms were written."""
    with write_transaction():
        connection = db.session.connection()
        catalog_state.categories_changed(connection)
        catalog_state.recount_products(connection)
    done, last = 0, 0
    while True:
        with write_transaction():
            connection = db.session.connection()
            ids = [row[0] for row in connection.execute(text(
                "SELECT id FROM products WHERE id > :last ORDER BY id LIMIT :n"),
                {"last": last, "n": REFRESH_BATCH})]
            if not ids:
                break
            search.reindex(connection, ids)
            catalog_state.card_images_changed(connection, ids)
            catalog_state.name_keys_changed(connection, ids)
        done += len(ids)
        last = ids[-1]
    with write_transaction():
        # Terms of products that no longer exist (a hand-written DELETE without the cascade),
        # and the postings written again from the terms (a hand-written DELETE of products
        # takes their terms with it, not their ids in the postings).
        db.session.execute(text("DELETE FROM search_terms WHERE product_id NOT IN "
                                "(SELECT id FROM products)"))
        postings.rebuild(db.session.connection())
    if not cache.catalog_changed():
        raise CacheNotInvalidated(done)
    return done


class CacheNotInvalidated(Exception):
    """The catalogue was worked out again but the page cache's version could not be moved
    (Redis did not answer): cached pages may show the old catalogue until they expire."""

    def __init__(self, products: int) -> None:
        super().__init__(products)
        self.products = products
