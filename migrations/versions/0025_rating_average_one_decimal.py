"""products.rating_average kept on the side of the exact average that the pages' one decimal is
written from

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 16:00:00

The average was kept to two decimals, half up, and the pages write it to one, half up again:
169 in 49 ratings (3.449) was kept 3.45 and shown "3.5" with four stars, where it is 3.4 with
three. services.reviews.stored_average now keeps such an average at 3.44; this recomputes, from
the approved reviews, the averages kept before and rewrites those that differ (only averages
on such a point, or ones out of step with their reviews). The rule is copied here, frozen, as
migrations copy what they compute. Downgrade leaves the averages: the old code reads them as
they are, and writes its own at the next review approved or rejected.
"""
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def _stored_average(total: int, count: int) -> Decimal:
    exact = Decimal(total) / Decimal(count)
    kept = exact.quantize(Decimal("0.01"), ROUND_HALF_UP)
    if kept.quantize(Decimal("0.1"), ROUND_HALF_UP) != exact.quantize(Decimal("0.1"),
                                                                      ROUND_HALF_UP):
        kept -= Decimal("0.01")
    return kept


def upgrade():
    connection = op.get_bind()
    kept = dict(connection.execute(sa.text(
        "SELECT id, rating_average FROM products WHERE rating_average IS NOT NULL")).all())
    sums = connection.execute(sa.text(
        "SELECT product_id, count(*), sum(rating) FROM reviews WHERE status = 'approved' "
        "GROUP BY product_id")).all()
    for product_id, count, total in sums:
        if product_id not in kept or not count:
            continue
        average = _stored_average(int(total), int(count))
        if Decimal(str(kept[product_id])).quantize(Decimal("0.01")) != average:
            connection.execute(sa.text("UPDATE products SET rating_average = :average "
                                       "WHERE id = :id"), {"average": str(average), "id": product_id})


def downgrade():
    pass
