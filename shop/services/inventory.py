"""Stock: taken atomically by one conditional UPDATE on the primary, released exactly once."""
from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from sqlalchemy import TextClause, bindparam, func, select, text, update

from ..extensions import db
from ..models import StockAdjustment, Variant
from .errors import NotFound, OutOfStock, StockCountChanged, ValidationError


@cache
def _take():
    """The conditional UPDATE that takes stock, built once (a checkout runs it per line)."""
    table = Variant.__table__
    return (update(table)
            .where(table.c.id == bindparam("variant"), table.c.stock_quantity >= bindparam("qty"))
            .values(stock_quantity=table.c.stock_quantity - bindparam("qty")))


def reserve(variant_id: int, quantity: int) -> None:
    """Take stock atomically; raise OutOfStock when not enough is left. Only flushes."""
    result = db.session.execute(_take(), {"variant": variant_id, "qty": quantity})
    if result.rowcount != 1:
        row = db.session.execute(select(Variant.sku, Variant.stock_quantity)
                                 .where(Variant.id == variant_id)).first()
        left = row.stock_quantity if row else 0
        raise OutOfStock(
            f"Only {left} of {row.sku if row else 'this item'} left." if left
            else f"{row.sku if row else 'This item'} is out of stock.",
            details={"sku": row.sku if row else None, "variant_id": variant_id,
                     "requested": quantity, "available": left})


@cache
def _take_all(count: int) -> TextClause:
    """One conditional UPDATE taking stock of `count` variants (:v0, :q0, ...), built once per
    count. Each row is changed only when it has its quantity left; the rows are locked in key
    order whatever the order of the cart's lines (one lock order: no deadlock)."""
    taken = "CASE id " + " ".join(f"WHEN :v{i} THEN :q{i}" for i in range(count)) + " END"
    ids = ", ".join(f":v{i}" for i in range(count))
    return text(f"UPDATE variants SET stock_quantity = stock_quantity - {taken} "
                f"WHERE id IN ({ids}) AND stock_quantity >= {taken}")


def reserve_all(quantities: Mapping[int, int]) -> None:
    """Take the stock of several variants at once (a checkout's lines: variant id ->
    quantity): one statement, one round trip, all or nothing. When a variant has not enough
    left, the caller's transaction is rolled back here (the other variants' stock may have
    been taken by the statement) and OutOfStock names the first such variant (by id), as
    `reserve` would; the caller then lets the error end its write."""
    wanted = sorted((int(v), int(q)) for v, q in quantities.items())
    if len(wanted) <= 1:
        for variant_id, quantity in wanted:
            reserve(variant_id, quantity)
        return
    params = {}
    for i, (variant_id, quantity) in enumerate(wanted):
        params[f"v{i}"], params[f"q{i}"] = variant_id, quantity
    if db.session.execute(_take_all(len(wanted)), params).rowcount == len(wanted):
        return
    db.session.rollback()
    rows = dict(db.session.execute(select(Variant.id, Variant.stock_quantity)
                                   .where(Variant.id.in_([v for v, _ in wanted]))).all())
    short = next(((v, q) for v, q in wanted if rows.get(v, 0) < q), None)
    if short is not None:
        reserve(*short)  # raises OutOfStock, with its message and details
    raise OutOfStock("An item in your cart has just sold out. Please try again.")


def release(variant_id: int, quantity: int) -> None:
    """Put units back on hand (an order was cancelled or refunded). Only flushes."""
    db.session.execute(
        update(Variant).where(Variant.id == variant_id)
        .values(stock_quantity=Variant.stock_quantity + quantity)
        .execution_options(synchronize_session=False))


def last_adjustment(variant_id: int) -> int:
    """Where the variant's stock ledger stands: its newest entry's id (0 without one)."""
    return db.session.execute(select(func.coalesce(func.max(StockAdjustment.id), 0))
                              .where(StockAdjustment.variant_id == variant_id)).scalar_one()


def adjust(variant_id: int, delta: int, reason: str, actor_id: int | None = None, *,
           ledger_seen: int | None = None) -> int:
    """Staff receive (+) or write off (-) units; recorded in the stock ledger. Returns the new
    on-hand quantity. Relative, so a checkout running at the same moment is not overwritten.
    Only flushes.

    `ledger_seen` (`last_adjustment` when the caller read the count it worked `delta` out
    from): if staff changed the count since, raise StockCountChanged and change nothing. Sales
    are not in the ledger, so they still come off; but the same form sent twice (a double
    click) or two people counting at once would otherwise add their difference twice. The
    variant's row is locked first, so a second such change waits and then sees the first."""
    if ledger_seen is not None and delta:
        on_hand = db.session.execute(select(Variant.stock_quantity)
                                     .where(Variant.id == variant_id).with_for_update()
                                     ).scalar_one_or_none()
        if on_hand is None:
            raise NotFound("That variant does not exist.")
        if last_adjustment(variant_id) > ledger_seen:
            raise StockCountChanged(
                f"The stock count changed while this form was open (it is now {on_hand}).",
                details={"variant_id": variant_id, "on_hand": on_hand})
    if delta == 0:
        return db.session.execute(select(Variant.stock_quantity)
                                  .where(Variant.id == variant_id)).scalar_one()
    stmt = update(Variant).where(Variant.id == variant_id)
    if delta < 0:
        stmt = stmt.where(Variant.stock_quantity >= -delta)
    result = db.session.execute(stmt.values(stock_quantity=Variant.stock_quantity + delta)
                                .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        if db.session.get(Variant, variant_id) is None:
            raise NotFound("That variant does not exist.")
        raise ValidationError({"stock_quantity": "Stock cannot go below zero."})
    db.session.add(StockAdjustment(variant_id=variant_id, delta=delta, reason=reason,
                                   actor_id=actor_id))
    db.session.flush()
    return db.session.execute(select(Variant.stock_quantity)
                              .where(Variant.id == variant_id)).scalar_one()


def set_stock(variant_id: int, quantity: int, reason: str, actor_id: int | None = None) -> int:
    """Staff set the on-hand count; recorded as the difference. Only flushes.

    The count is read locked (FOR UPDATE, until the caller's transaction ends): a checkout
    taking units between the read and the write would otherwise be taken off the staff's
    number too, leaving less on hand than they counted."""
    if quantity < 0:
        raise ValidationError({"stock_quantity": "Stock cannot go below zero."})
    current = db.session.execute(select(Variant.stock_quantity)
                                 .where(Variant.id == variant_id).with_for_update()
                                 ).scalar_one_or_none()
    if current is None:
        raise NotFound("That variant does not exist.")
    return adjust(variant_id, quantity - current, reason, actor_id)
