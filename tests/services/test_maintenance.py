"""Daily housekeeping keeps what is recent and every customer's cart."""
from __future__ import annotations

from datetime import timedelta

from shop.extensions import db
from shop.models import Cart, IdempotencyRecord, utcnow
from shop.services import cart as carts
from shop.services.cart import CartOwner
from tests import factories as f


def test_cleanup_deletes_only_stale_records_and_guest_carts(app, runner):
    old = utcnow() - timedelta(days=40)
    variant = f.variant_of(f.product(stock=5))
    for token in ("old-guest", "new-guest"):
        carts.add_item(CartOwner(token=token), 1, variant_id=variant.id)
    customer = f.user()
    carts.add_item(CartOwner(user_id=customer.id), 1, variant_id=variant.id)
    db.session.add_all([
        IdempotencyRecord(scope="u1", key="old", request_hash="x", state="done", created_at=old),
        IdempotencyRecord(scope="u1", key="new", request_hash="x", state="done")])
    db.session.query(Cart).filter(Cart.token == "old-guest").update({"updated_at": old})
    db.session.query(Cart).filter(Cart.user_id == customer.id).update({"updated_at": old})
    db.session.commit()
    result = runner.invoke(args=["cleanup"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 idempotency records and 1 abandoned guest carts." in result.output
    assert [r.key for r in db.session.query(IdempotencyRecord)] == ["new"]
    assert {c.token for c in db.session.query(Cart)} == {"new-guest", None}
