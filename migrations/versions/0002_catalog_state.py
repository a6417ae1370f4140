"""catalog state (category tree revision, active product count); product images by position

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 12:00:00

"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('catalog_state',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_catalog_state'))
    )
    bind = op.get_bind()
    bind.execute(sa.text("INSERT INTO catalog_state (name, value) VALUES ('category_tree', :v)"),
                 {"v": secrets.randbits(62)})
    bind.execute(sa.text("INSERT INTO catalog_state (name, value) SELECT 'active_products', "
                         "count(*) FROM products WHERE active = :active"), {"active": True})
    with op.batch_alter_table('product_images', schema=None) as batch_op:
        batch_op.create_index('ix_product_images_product_position',
                              ['product_id', 'position', 'id'], unique=False)
        batch_op.drop_index('ix_product_images_product_id')


def downgrade():
    with op.batch_alter_table('product_images', schema=None) as batch_op:
        batch_op.create_index('ix_product_images_product_id', ['product_id'], unique=False)
        batch_op.drop_index('ix_product_images_product_position')
    op.drop_table('catalog_state')
