"""payments.refunded_amount: the running total of partial refunds recorded from Stripe

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 10:00:00

Stripe's charge.refunded events carry the running total refunded and may come in any order.
Told apart only by their note's text, an older report with a smaller total was recorded
after a newer one: the history and the customer's mail said less had been refunded than had.
The highest total recorded is now kept on the payment, and a report at or below it is
ignored. Payments before start at 0 (the notes' amounts are formatted text, not exact to read
back): a partial refund recorded before the upgrade and delivered again after it is recorded
once more.
"""
import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("refunded_amount", sa.Numeric(12, 2), nullable=False,
                                   server_default="0"))


def downgrade():
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("refunded_amount")
