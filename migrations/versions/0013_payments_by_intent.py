"""payments found by their provider's payment id (Stripe's PaymentIntent) by index

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 14:45:00

A refund made on Stripe reaches the shop as charge.refunded, which names the PaymentIntent:
without an index, finding its payment read the whole payments table.
"""
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("payments") as batch:
        batch.create_index("ix_payments_provider_payment", ["provider", "provider_payment_id"],
                           unique=False)


def downgrade():
    with op.batch_alter_table("payments") as batch:
        batch.drop_index("ix_payments_provider_payment")
