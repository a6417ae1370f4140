"""joined words are search terms too: "T-Shirt" gives the terms shirt and tshirt

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 14:00:00

A word joined by hyphens or apostrophes ("T-Shirt", "men's") is now also a term written
joined ("tshirt", "mens"), so a shopper's "tshirt" finds a T-Shirt. The terms of the active
products that have such words are written again, and the postings of every term that changed
are written again from search_terms; other products' terms are left as they are. Going back
down takes the joined terms out the same way. During a rolling deploy, a product the old
code changes gets its terms without the joined words: `flask --app wsgi refresh-catalog` once
the old code is gone writes every product's terms again.
"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op
from pyroaring import BitMap

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# The terms as shop.services.search makes them at this revision (`joined`) and at the one
# before, and the postings as shop.services.postings writes them: a migration keeps its own
# copy, as 0005 and 0006 do.
TOKEN = re.compile(r"\w+", re.UNICODE)
JOINED = re.compile(r"\w+(?:['\-\u2010\u2011\u2019]\w+)*", re.UNICODE)
JOINERS = re.compile(r"['\-\u2010\u2011\u2019]")
TIER = {11: 0, 10: 1, 1: 2}


def _fold(word):
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(c))


def _terms(name, description, joined):
    weights = {}
    for text, weight in ((name, 10), (description, 1)):
        lowered = (text or "").lower()
        words = [w for w in TOKEN.findall(lowered) if len(w) >= 2]
        if joined:
            words.extend(JOINERS.sub("", w) for w in JOINED.findall(lowered)
                         if JOINERS.search(w))
        for word in {_fold(w)[:40] for w in words}:
            weights[word] = weights.get(word, 0) + weight
    return weights


def _dump(ids):
    bitmap = BitMap(ids)
    bitmap.run_optimize()
    return bitmap.serialize()


def _refill(joined):
    """Write again the terms of the active products whose terms change between the two ways
    (`joined`: to the joined words' way), and return the terms whose rows changed."""
    bind = op.get_bind()
    mark = "?" if bind.dialect.paramstyle == "qmark" else "%s"
    changed_terms = set()
    last = 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, name, description FROM products WHERE id > :last AND active = :active "
            "ORDER BY id LIMIT 5000"), {"last": last, "active": True}).all()
        if not rows:
            return changed_terms
        changed, values = [], []
        for pid, name, description in rows:
            now = _terms(name, description, joined)
            before = _terms(name, description, not joined)
            if now != before:
                changed.append(pid)
                values.extend((term, pid, weight) for term, weight in now.items())
                changed_terms.update(term for term in now.keys() | before.keys()
                                     if now.get(term) != before.get(term))
        if changed:
            bind.execute(sa.text(f"DELETE FROM search_terms WHERE product_id IN "
                                 f"({', '.join(str(int(pid)) for pid in changed)})"))
        if values:
            values.sort()
            bind.exec_driver_sql(
                f"INSERT INTO search_terms (term, product_id, weight) VALUES ({mark}, {mark}, "
                f"{mark})", values)
        last = rows[-1][0]


def _repost(terms):
    """Write the postings of these terms again from search_terms (none for a term no product
    has any more)."""
    bind = op.get_bind()
    mark = "?" if bind.dialect.paramstyle == "qmark" else "%s"
    ordered = sorted(terms)
    for start in range(0, len(ordered), 500):
        chunk = tuple(ordered[start:start + 500])
        listed = ", ".join([mark] * len(chunk))
        bind.exec_driver_sql(f"DELETE FROM search_postings WHERE term IN ({listed})", chunk)
        tiers = {}
        for term, product_id, weight in bind.exec_driver_sql(
                f"SELECT term, product_id, weight FROM search_terms WHERE term IN ({listed})",
                chunk):
            tiers.setdefault(term, ([], [], []))[TIER[int(weight)]].append(int(product_id))
        if tiers:
            bind.exec_driver_sql(
                f"INSERT INTO search_postings (term, in_both, in_name, in_description) "
                f"VALUES ({mark}, {mark}, {mark}, {mark})",
                [(term, *(_dump(ids) for ids in tiers[term])) for term in sorted(tiers)])


def upgrade():
    _repost(_refill(joined=True))


def downgrade():
    _repost(_refill(joined=False))
