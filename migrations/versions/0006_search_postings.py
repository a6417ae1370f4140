"""search_postings: each search term's products as roaring bitmaps, filled from search_terms

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 14:30:00

"""
import sqlalchemy as sa
from alembic import op
from pyroaring import BitMap
from sqlalchemy.dialects import mysql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# The rows as shop.services.postings writes them at this revision (a migration keeps its own
# copy): per term, the product ids of weight 11, 10 and 1 as serialized roaring bitmaps.
TIER = {11: 0, 10: 1, 1: 2}
BITMAP = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
TERM = sa.String(length=40).with_variant(mysql.VARCHAR(40, collation="utf8mb4_bin"),
                                         "mysql", "mariadb")


def _dump(ids):
    bitmap = BitMap(ids)
    bitmap.run_optimize()
    return bitmap.serialize()


def _fill():
    bind = op.get_bind()
    mark = "?" if bind.dialect.paramstyle == "qmark" else "%s"
    insert = (f"INSERT INTO search_postings (term, in_both, in_name, in_description) "
              f"VALUES ({mark}, {mark}, {mark}, {mark})")
    batch, term_now, tiers, last = [], None, [[], [], []], None
    while True:
        if last is None:
            chunk = bind.exec_driver_sql(
                "SELECT term, product_id, weight FROM search_terms "
                "ORDER BY term, product_id LIMIT 50000").all()
        else:
            chunk = bind.exec_driver_sql(
                f"SELECT term, product_id, weight FROM search_terms WHERE term > {mark} OR "
                f"(term = {mark} AND product_id > {mark}) ORDER BY term, product_id "
                f"LIMIT 50000", (last[0], last[0], last[1])).all()
        if not chunk:
            break
        for term, product_id, weight in chunk:
            if term != term_now:
                if term_now is not None:
                    batch.append((term_now, *(_dump(ids) for ids in tiers)))
                term_now, tiers = term, [[], [], []]
            tiers[TIER[int(weight)]].append(int(product_id))
        last = (chunk[-1][0], int(chunk[-1][1]))
        if len(batch) >= 2000:
            bind.exec_driver_sql(insert, batch)
            batch = []
    if term_now is not None:
        batch.append((term_now, *(_dump(ids) for ids in tiers)))
    if batch:
        bind.exec_driver_sql(insert, batch)


def upgrade():
    op.create_table('search_postings',
    sa.Column('term', TERM, nullable=False),
    sa.Column('in_both', BITMAP, nullable=False),
    sa.Column('in_name', BITMAP, nullable=False),
    sa.Column('in_description', BITMAP, nullable=False),
    sa.PrimaryKeyConstraint('term', name=op.f('pk_search_postings'))
    )
    _fill()


def downgrade():
    op.drop_table('search_postings')
