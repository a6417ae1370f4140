"""coupon_uses (coupon_id, email): a person's uses are also found by email

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 20:50:00

A per-customer limit now counts the uses made under any email an account has gone by, and
the other uses of an account that used the coupon under a guest's email
(coupons.person_uses): each checkout with a coupon looks its uses up by email.
"""
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_coupon_uses_coupon_email", "coupon_uses", ["coupon_id", "email"])


def downgrade():
    op.drop_index("ix_coupon_uses_coupon_email", table_name="coupon_uses")
