"""search terms spell out the letters decomposition keeps (ß ss, æ ae, ø o) and "_" parts words

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 15:00:00

A term used to lose only the accents NFKD splits off: "Straße", "Æble", "Øl" kept their ß, Æ
and Ø, so "strasse" did not find them; and "_" was a letter, so "foo_bar" was one term that
"bar" did not find. Now ß ẞ are ss, æ ae, œ oe, þ th, and ø ł đ ð ħ ŧ ı the letter without
its stroke or dot (shop.services.search.fold), and "_" separates words.

Only the products with one of those characters or "_" in their name or description have
different terms, and only theirs are written again: the database finds them (a scan of the
products table, no terms worked out for the others), the terms of those whose terms changed
are written again, and then the postings of every term that changed, from search_terms.
100,000 products with descriptions of a kilobyte, every one with an accent and 133 with such
a letter or "_", took 1.9 s on SQLite and 1.1 s on MariaDB.

Going down leaves the terms as they are (see downgrade()). During a rolling deploy, a product
the old code changes gets its terms the old way: `flask --app wsgi refresh-catalog`, once the
old code is gone, writes every product's terms again.
"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op
from pyroaring import BitMap

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

# The terms as shop.services.search makes them at this revision, and the postings as
# shop.services.postings writes them: a migration keeps its own copy, as 0005, 0006 and 0011
# do, so that it writes the same terms whatever the service's code becomes (a later change of
# the terms has its own migration, which counts on the terms this one wrote).
TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
JOINED = re.compile(r"[^\W_]+(?:['\-\u2010\u2011\u2019][^\W_]+)*", re.UNICODE)
JOINERS = re.compile(r"['\-\u2010\u2011\u2019]")
LETTERS = str.maketrans({
    "ß": "ss", "æ": "ae", "œ": "oe", "þ": "th", "ø": "o", "ł": "l", "đ": "d", "ð": "d",
    "ħ": "h", "ŧ": "t", "ı": "i", "ẞ": "ss", "Æ": "ae", "Œ": "oe", "Þ": "th", "Ø": "o",
    "Ł": "l", "Đ": "d", "Ð": "d", "Ħ": "h", "Ŧ": "t"})
TIER = {11: 0, 10: 1, 1: 2}
# Every character of a word that this revision folds otherwise than the one before, worked
# out over the whole of Unicode (lower case, NFKD, without combining marks, then LETTERS,
# against the same without LETTERS): the letters above, their capitals, their accented forms
# (ǽ, ǿ) and the compatibility characters NFKD turns into them (ᴭ, ℏ). With "_", a product
# whose text has none of these has the same terms as before.
CHANGED = ("ÆÐØÞßæðøþĐđĦħıŁłŒœŦŧǢǣǼǽǾǿᴭᶞẞℏ\ua7f8\ua7f9"
           "\U00010783\U00010795\U000107a2\U0001d6a4_")
BATCH = 500


def _fold(word):
    word = word.lower()
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(c)).translate(LETTERS)


def _terms(name, description):
    weights = {}
    for text, weight in ((name, 10), (description, 1)):
        lowered = (text or "").lower()
        words = [w for w in TOKEN.findall(lowered) if len(w) >= 2]
        words.extend(JOINERS.sub("", w) for w in JOINED.findall(lowered) if JOINERS.search(w))
        for word in {_fold(w)[:40] for w in words}:
            weights[word] = weights.get(word, 0) + weight
    return weights


def _dump(ids):
    bitmap = BitMap(ids)
    bitmap.run_optimize()
    return bitmap.serialize()


def _may_have_changed_characters(mysql):
    """The SQL condition (on products p) that keeps the products whose name or description
    may have one of CHANGED, read without working out terms: on MySQL a regular expression,
    matched character for character whatever the column's collation (utf8mb4_bin; under a
    case-insensitive one "[s]" matches "ſ"), a second for 100,000 products; on SQLite, whose
    instr() took 8 seconds over 100,000 descriptions for the 36 letters, a text with "_" or
    that is not all ASCII (its length in bytes is not its length in characters), most
    catalogues' few. _has_changed_characters() has the last word."""
    if mysql:
        return ("(CONVERT(p.name USING utf8mb4) COLLATE utf8mb4_bin REGEXP :letters OR "
                "CONVERT(p.description USING utf8mb4) COLLATE utf8mb4_bin REGEXP :letters)")
    return ("(instr(p.name, '_') > 0 OR instr(p.description, '_') > 0 OR "
            "length(CAST(p.name AS BLOB)) <> length(p.name) OR "
            "length(CAST(p.description AS BLOB)) <> length(p.description))")


def _has_changed_characters(*texts):
    # `in` looks a character up at C speed, and at once finds none above a text's widest.
    return any(c in text for text in texts if text for c in CHANGED)


def _refill():
    """Write again the terms of the active products with one of CHANGED whose terms are not
    the ones this revision makes, and return the terms whose rows changed."""
    bind = op.get_bind()
    mysql = bind.dialect.name in ("mysql", "mariadb")
    mark = "?" if bind.dialect.paramstyle == "qmark" else "%s"
    # In id order, by the primary key: a condition on `active` had SQLite read the products
    # by their (active, name) index and sort them, every batch (a minute for 100,000).
    find = sa.text(f"SELECT p.id, p.name, p.description, p.active FROM products p "
                   f"WHERE p.id > :last AND {_may_have_changed_characters(mysql)} "
                   f"ORDER BY p.id LIMIT {BATCH}")
    changed_terms = set()
    last = 0
    while True:
        found = bind.execute(find, {"letters": f"[{CHANGED}]", "last": last}).all()
        if not found:
            return changed_terms
        last = found[-1][0]
        rows = [(pid, name, description) for pid, name, description, active in found
                if active and _has_changed_characters(name, description)]
        if not rows:
            continue
        listed = ", ".join(str(int(pid)) for pid, _name, _description in rows)
        stored = {}
        for term, pid, weight in bind.execute(sa.text(
                f"SELECT term, product_id, weight FROM search_terms "
                f"WHERE product_id IN ({listed})")):
            stored.setdefault(int(pid), {})[term] = int(weight)
        changed, values = [], []
        for pid, name, description in rows:
            now = _terms(name, description)
            before = stored.get(int(pid), {})
            if now != before:
                changed.append(int(pid))
                values.extend((term, int(pid), weight) for term, weight in now.items())
                changed_terms.update(term for term in now.keys() | before.keys()
                                     if now.get(term) != before.get(term))
        if changed:
            bind.execute(sa.text(f"DELETE FROM search_terms WHERE product_id IN "
                                 f"({', '.join(map(str, changed))})"))
        if values:
            values.sort()
            bind.exec_driver_sql(
                f"INSERT INTO search_terms (term, product_id, weight) VALUES ({mark}, {mark}, "
                f"{mark})", values)


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
    _repost(_refill())


def downgrade():
    """Nothing to undo in the schema, and the terms are left folded: the code before this
    revision still finds those products by the words as it folds them but for the letters
    (a search for "straße" no longer finds "Straße", "strasse" does; "foo_bar" finds no
    "foo_bar", "foo bar" does). Writing them the old way is `flask --app wsgi
    refresh-catalog` with the old code, which writes every product's terms its own way."""
