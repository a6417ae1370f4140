"""reviews: a product's approved reviews are read newest first from an index

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 20:00:00

The product page lists a product's approved reviews by created_at DESC, id DESC
(services.reviews._APPROVED_PAGE_SQL). The only index was (product_id, status): the database
found every approved review of the product and sorted them all for each page (19 ms for a
product with 20,000 reviews). (product_id, status, created_at, id) gives them in the page's
order, read backwards, and stops after the page. It also serves everything (product_id,
status) did (the count of approved reviews), which is dropped. The foreign key on product_id
keeps an index that starts with it on MySQL: the unique (product_id, user_id) and this one.
Going down puts the (product_id, status) index back.
"""
from alembic import op

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("reviews") as batch:
        batch.create_index("ix_reviews_product_status_created",
                           ["product_id", "status", "created_at", "id"], unique=False)
        batch.drop_index("ix_reviews_product_status")


def downgrade():
    with op.batch_alter_table("reviews") as batch:
        batch.create_index("ix_reviews_product_status", ["product_id", "status"], unique=False)
        batch.drop_index("ix_reviews_product_status_created")
