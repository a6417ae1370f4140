"""Housekeeping run daily (cron or the worker): forget what no longer matters."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from ..extensions import db
from ..models import Cart, CartLine, IdempotencyRecord, utcnow
from .database import write_transaction

IDEMPOTENCY_DAYS = 2
GUEST_CART_DAYS = 30


@dataclass
class Purged:
    idempotency_records: int
    guest_carts: int


def purge_stale() -> Purged:
    """Delete idempotency records older than two days (clients retry within minutes) and guest
    carts untouched for 30 days (their cookie is long gone). Customers' carts are kept."""
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
    return Purged(records, len(cart_ids))
