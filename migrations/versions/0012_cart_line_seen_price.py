"""cart lines remember the price the shopper last saw, to tell them when it has changed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 14:10:00

A line added before this revision has no price seen (NULL): nothing is said about it.
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("cart_lines") as batch:
        batch.add_column(sa.Column("seen_price", sa.Numeric(10, 2), nullable=True))


def downgrade():
    with op.batch_alter_table("cart_lines") as batch:
        batch.drop_column("seen_price")
