"""newest-first index: (active, created_at DESC, id DESC) replaces (active, created_at)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_index('ix_products_active_newest',
                              ['active', sa.text('created_at DESC'), sa.text('id DESC')],
                              unique=False)
        batch_op.drop_index('ix_products_active_created')


def downgrade():
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_index('ix_products_active_created', ['active', 'created_at'],
                              unique=False)
        batch_op.drop_index('ix_products_active_newest')
