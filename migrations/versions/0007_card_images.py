"""card images: each product's first image on its products row, filled from product_images

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 23:20:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The first image as shop.services.catalog_state picks it at this revision.
FIRST = ("(SELECT f.{column} FROM product_images f WHERE f.product_id = products.id "
         "ORDER BY f.position, f.id LIMIT 1)")


def upgrade():
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('card_image_path', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('card_image_alt', sa.String(length=255), nullable=True))
    op.get_bind().execute(sa.text(
        f"UPDATE products SET card_image_path = {FIRST.format(column='path')}, "
        f"card_image_alt = {FIRST.format(column='alt')}"))


def downgrade():
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('card_image_alt')
        batch_op.drop_column('card_image_path')
