"""SQLite searches search_terms too: a WITHOUT ROWID terms table, filled; FTS5 dropped

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 09:40:00

"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# The terms as shop.services.search makes them at this revision (as in 0003: a migration keeps
# its own copy).
TOKEN = re.compile(r"\w+", re.UNICODE)
FTS_TRIGGERS = ("products_fts_insert", "products_fts_delete", "products_fts_update")


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


def _is_sqlite():
    return op.get_bind().dialect.name == "sqlite"


def _create_terms_table(with_rowid):
    op.create_table('search_terms',
    sa.Column('term', sa.String(length=40), nullable=False),
    sa.Column('product_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('weight', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'],
                            name=op.f('fk_search_terms_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('term', 'product_id', name=op.f('pk_search_terms')),
    sqlite_with_rowid=with_rowid,
    )
    op.create_index('ix_search_terms_rank', 'search_terms', ['term', 'weight', 'product_id'],
                    unique=False)
    op.create_index('ix_search_terms_product_id', 'search_terms', ['product_id'], unique=False)


def upgrade():
    # MySQL has kept search_terms since 0003 (InnoDB stores rows in key order already).
    if not _is_sqlite():
        return
    for trigger in FTS_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS product_fts")
    op.drop_table('search_terms')  # empty on SQLite until now
    _create_terms_table(with_rowid=False)
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, name, description FROM products WHERE id > :last AND active = :active "
            "ORDER BY id LIMIT 5000"), {"last": last, "active": True}).all()
        if not rows:
            return
        values = sorted((term, pid, weight) for pid, name, description in rows
                        for term, weight in _terms(name, description).items())
        if values:
            bind.exec_driver_sql(
                "INSERT INTO search_terms (term, product_id, weight) VALUES (?, ?, ?)", values)
        last = rows[-1][0]


def downgrade():
    if not _is_sqlite():
        return
    op.drop_table('search_terms')
    _create_terms_table(with_rowid=True)
    op.execute("CREATE VIRTUAL TABLE product_fts USING fts5(name, description, "
               "content='products', content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
    op.execute("""CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
        INSERT INTO product_fts(rowid, name, description) VALUES (new.id, new.name, new.description);
        END""")
    op.execute("""CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
        INSERT INTO product_fts(product_fts, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
        END""")
    op.execute("""CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products BEGIN
        INSERT INTO product_fts(product_fts, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
        INSERT INTO product_fts(rowid, name, description) VALUES (new.id, new.name, new.description);
        END""")
    op.execute("INSERT INTO product_fts(product_fts) VALUES ('rebuild')")
