"""search terms of two letters: a shopper's two-letter word is a prefix of terms like the others

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 16:00:00

"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The terms as shop.services.search makes them at this revision (words of 2 letters or more)
# and at the one before (3 or more): a migration keeps its own copy, as 0003 and 0004 do.
TOKEN = re.compile(r"\w+", re.UNICODE)


def _fold(word):
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(c))


def _terms(name, description, shortest):
    weights = {}
    for text, weight in ((name, 10), (description, 1)):
        for word in {_fold(w)[:40] for w in TOKEN.findall((text or "").lower())
                     if len(w) >= shortest}:
            weights[word] = weights.get(word, 0) + weight
    return weights


def _refill(shortest, before):
    """Write again the terms of the active products whose terms change from words of
    `before` letters or more to words of `shortest` or more (most products' do not)."""
    bind = op.get_bind()
    mark = "?" if bind.dialect.paramstyle == "qmark" else "%s"
    last = 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, name, description FROM products WHERE id > :last AND active = :active "
            "ORDER BY id LIMIT 5000"), {"last": last, "active": True}).all()
        if not rows:
            return
        changed, values = [], []
        for pid, name, description in rows:
            now = _terms(name, description, shortest)
            if now != _terms(name, description, before):
                changed.append(pid)
                values.extend((term, pid, weight) for term, weight in now.items())
        if changed:
            bind.execute(sa.text(f"DELETE FROM search_terms WHERE product_id IN "
                                 f"({', '.join(str(int(pid)) for pid in changed)})"))
        if values:
            values.sort()
            bind.exec_driver_sql(
                f"INSERT INTO search_terms (term, product_id, weight) VALUES ({mark}, {mark}, "
                f"{mark})", values)
        last = rows[-1][0]


def upgrade():
    _refill(2, 3)


def downgrade():
    _refill(3, 2)
