"""search terms: MySQL's product search reads the shop's own terms table, not FULLTEXT

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 10:00:00

"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# The terms as shop.services.search made them at this revision (a migration keeps its own
# copy: it must give the same result whatever the code becomes).
TOKEN = re.compile(r"\w+", re.UNICODE)


def _fold(word):
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(c))


def _terms(name, description):
    weights = {}
    for text, weight in ((name, 10), (description, 1)):
        for word in {_fold(w)[:40] for w in TOKEN.findall((text or "").lower()) if len(w) >= 3}:
            weights[word] = weights.get(word, 0) + weight
    return weights


def _is_mysql():
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade():
    op.create_table('search_terms',
    sa.Column('term', sa.String(length=40).with_variant(
        mysql.VARCHAR(length=40, collation='utf8mb4_bin'), 'mysql', 'mariadb'), nullable=False),
    sa.Column('product_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('weight', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'],
                            name=op.f('fk_search_terms_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('term', 'product_id', name=op.f('pk_search_terms'))
    )
    with op.batch_alter_table('search_terms', schema=None) as batch_op:
        batch_op.create_index('ix_search_terms_rank', ['term', 'weight', 'product_id'],
                              unique=False)
        batch_op.create_index('ix_search_terms_product_id', ['product_id'], unique=False)
    if _is_mysql():
        _index_products()
        op.drop_index('ft_products_name_description', table_name='products')


def _index_products():
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, name, description FROM products WHERE id > :last AND active = :active "
            "ORDER BY id LIMIT 5000"), {"last": last, "active": True}).all()
        if not rows:
            return
        values = [(term, pid, weight) for pid, name, description in rows
                  for term, weight in _terms(name, description).items()]
        if values:
            bind.exec_driver_sql(
                "INSERT INTO search_terms (term, product_id, weight) VALUES (%s, %s, %s)",
                values)
        last = rows[-1][0]


def downgrade():
    if _is_mysql():
        op.create_index('ft_products_name_description', 'products', ['name', 'description'],
                        mysql_prefix='FULLTEXT')
    # Its indexes go with it (MySQL would not drop the product_id one before the foreign key).
    op.drop_table('search_terms')
