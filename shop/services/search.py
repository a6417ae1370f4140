"""Full-text product search behind one interface: FTS5 on SQLite, the shop's own `search_terms`
table on MySQL.

`match()` turns a shopper's words into SQL fragments that the catalogue service puts into its
listing and count queries: every word must match (as a prefix, so "shir" finds shirts), and
results rank by relevance, name matches above description matches.

MySQL: InnoDB's FULLTEXT spends about 2.5 microseconds per matching document, so a word found
in a third of 100,000 products took 60-80 ms whatever the page. Instead the shop keeps each
active product's words in `search_terms (term, product_id, weight)`: a word of the name
weighs 10, of the description 1 (11 in both). One word that is one term reads its best page
straight off an index in order and counts an index range; a prefix that covers several terms
or several words join on product id. The table is written in the transaction of every product
write: an `after_flush` listener sees the ORM's (back office, API, CSV import, tests), the
seed's Core inserts call `add_products`. Only active products have terms, so a search never
looks up products it does not show.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

TOKEN = re.compile(r"\w+", re.UNICODE)
# Shorter words are not terms (MySQL): a shopper's short word goes through LIKE on the name.
MYSQL_MIN_TOKEN = 3
# The term column's length: longer words are kept (and looked for) by their first 40 letters.
TERM_LENGTH = 40
NAME_WEIGHT, DESCRIPTION_WEIGHT = 10, 1
MAX_TOKENS = 8
MYSQL_DIALECTS = ("mysql", "mariadb")
# bm25 weights of the FTS5 columns (name, description): a word in the name counts ten times.
SQLITE_SOURCE = ("(SELECT rowid AS id, bm25(product_fts, 10.0, 1.0) AS rank FROM product_fts "
                 "WHERE product_fts MATCH :fts_query) fts CROSS JOIN products p ON p.id = fts.id")

Rows = Callable[[str, dict[str, Any]], Sequence[Any]]


@dataclass(frozen=True)
class Match:
    """How to restrict a products query (aliased `p`) to a search.

    `source` replaces `products p` in the FROM clause, `where` are extra conditions, `score`
    is a relevance expression (higher is better) and `order` the ORDER BY for relevance;
    both are None when the words cannot be ranked.

    A search by these words alone, by relevance, can skip the products table: `ranked_page`
    gives the SQL of one page of ids and scores (columns `id`, `score`) and `total` the SQL
    expression of the number of matches (it may name `page.total`, a column of that page)."""

    source: str = "products p"
    where: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    score: str | None = None
    order: str | None = None
    ranked_page: Callable[[int, int], str] | None = None
    total: str | None = None


# A search with no other filter, by relevance, on SQLite: counting and ranking read the FTS
# table alone (a match is looked up in products only if it is on the page), minus the
# inactive products that match. Ties in rank go to the newest (highest id), as in SQLITE_SOURCE.
_SQLITE_MATCHES = "SELECT rowid FROM product_fts WHERE product_fts MATCH :fts_query"
_SQLITE_INACTIVE = (f"(SELECT count(*) FROM products p WHERE p.active = :inactive "
                    f"AND p.id IN ({_SQLITE_MATCHES}))")
SQLITE_TOTAL = (f"((SELECT count(*) FROM product_fts WHERE product_fts MATCH :fts_query) - "
                f"{_SQLITE_INACTIVE})")


def sqlite_ranked_page(offset: int, limit: int) -> str:
    """The ids (and scores) of one page of active matches, best first (SQLite only)."""
    return (f"SELECT p.id AS id, -fts.rank AS score FROM (SELECT rowid AS id, "
            f"bm25(product_fts, 10.0, 1.0) AS rank FROM product_fts "
            f"WHERE product_fts MATCH :fts_query ORDER BY rank, rowid DESC "
            f"LIMIT {int(offset) + int(limit)} + {_SQLITE_INACTIVE}) fts "
            f"CROSS JOIN products p ON p.id = fts.id WHERE p.active = :active "
            f"ORDER BY fts.rank, p.id DESC LIMIT {int(limit)} OFFSET {int(offset)}")


def tokens(query: str) -> list[str]:
    """The words of a shopper's query, lower case, at most eight."""
    return [t.lower() for t in TOKEN.findall(query or "")][:MAX_TOKENS]


def match(query: str, dialect: str, rows: Rows | None = None) -> Match:
    """The SQL that finds products matching every word of `query` on this database.

    On MySQL `rows` runs a read (SQL with :name parameters): the words' prefixes are looked up
    in the terms first (one query), to know which words are a single term."""
    words = tokens(query)
    if not words:
        return Match(where=["1 = 0"])
    if dialect == "sqlite":
        # The FTS table drives the join (CROSS JOIN fixes the order in SQLite): the matches
        # are looked up in products by id, never the whole catalogue scanned per match.
        # A one-letter prefix would expand to a good part of the vocabulary: exact only.
        fts_query = " ".join(f'"{w}"*' if len(w) > 1 else f'"{w}"' for w in words)
        return Match(source=SQLITE_SOURCE, params={"fts_query": fts_query},
                     score="-fts.rank", order="fts.rank ASC, p.id DESC",
                     ranked_page=sqlite_ranked_page, total=SQLITE_TOTAL)
    where: list[str] = []
    params: dict[str, str] = {}
    long_words: list[str] = []
    for i, w in enumerate(words):
        if dialect in MYSQL_DIALECTS and len(w) >= MYSQL_MIN_TOKEN:
            term = _fold(w)[:TERM_LENGTH]
            if term not in long_words:
                long_words.append(term)
        else:
            where.append(f"p.name LIKE :like_{i}")
            params[f"like_{i}"] = f"%{_escape_like(w)}%"
    if not long_words:
        return Match(where=where, params=params)
    if rows is None:
        raise ValueError("a MySQL search needs `rows` to look up its terms")
    return _mysql_match(long_words, where, params, rows)


# Which terms each word is a prefix of: none, one (the term itself, found in order on an
# index), or several (shown by a second one). GROUP BY reads a term once, skipping its rows.
_EXPAND = ("(SELECT {i} AS word, term FROM search_terms WHERE term LIKE :prefix_{i} "
           "GROUP BY term LIMIT 2)")


def _mysql_match(words: list[str], where: list[str], params: dict[str, str],
                 rows: Rows) -> Match:
    for i, w in enumerate(words):
        params[f"prefix_{i}"] = f"{_escape_like(w)}%"
    found: dict[int, list[str]] = {i: [] for i in range(len(words))}
    for word, term in rows(" UNION ALL ".join(_EXPAND.format(i=i) for i in range(len(words))),
                           params):
        found[int(word)].append(term)
    if any(not terms for terms in found.values()):
        return Match(where=["1 = 0"])
    # A word that is one term is that term's rows; a prefix of several terms is the best of
    # them for each product (a product can have several: "shirt" and "shirts").
    tables, conditions = [], []
    for i in range(len(words)):
        if len(found[i]) == 1:
            params[f"term_{i}"] = found[i][0]
            tables.append(f"search_terms t{i}")
            conditions.append(f"t{i}.term = :term_{i}")
        else:
            tables.append(f"(SELECT product_id, max(weight) AS weight FROM search_terms "
                          f"WHERE term LIKE :prefix_{i} GROUP BY product_id) t{i}")
    joins = "".join(f" JOIN {table} ON t{i}.product_id = t0.product_id"
                    for i, table in enumerate(tables) if i)
    score = " + ".join(f"t{i}.weight" for i in range(len(words)))
    matches = (f"SELECT t0.product_id AS id, {score} AS score FROM {tables[0]}{joins}"
               + (f" WHERE {' AND '.join(conditions)}" if conditions else ""))
    if where:  # short words need the products' names: no shortcut past products
        ranked_page, total = None, None
    elif len(words) == 1 and conditions:
        # One term: its best page is the first rows of ix_search_terms_rank, read backwards,
        # and its count an index range; nothing else is read.
        def ranked_page(offset: int, limit: int) -> str:
            return (f"SELECT product_id AS id, weight AS score FROM search_terms "
                    f"WHERE term = :term_0 ORDER BY weight DESC, product_id DESC "
                    f"LIMIT {int(limit)} OFFSET {int(offset)}")

        total = "(SELECT count(*) FROM search_terms WHERE term = :term_0)"
    else:
        # Several words: the join is made once; its rows are counted and ranked together.
        def ranked_page(offset: int, limit: int) -> str:
            return (f"SELECT m.id, m.score, count(*) OVER () AS total FROM ({matches}) m "
                    f"ORDER BY m.score DESC, m.id DESC LIMIT {int(limit)} OFFSET {int(offset)}")

        total = "page.total"
    # With filters or another sort the matches come first, then their products by id: left
    # to choose, MySQL would read the whole catalogue in price or date order and look each
    # product up in the terms (100,000 lookups instead of the matches').
    return Match(source=f"({matches}) m STRAIGHT_JOIN products p ON p.id = m.id", where=where,
                 params=params, score="m.score", order="m.score DESC, p.id DESC",
                 ranked_page=ranked_page, total=total)


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _fold(word: str) -> str:
    """A word without its accents ("café" is "cafe"), as MySQL's collations compared them."""
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(c))


# Keeping the terms ---------------------------------------------------------------------------

def terms(name: str, description: str) -> dict[str, int]:
    """A product's terms with their weights: a word of the name 10, of the description 1."""
    weights: dict[str, int] = {}
    for text_, weight in ((name, NAME_WEIGHT), (description, DESCRIPTION_WEIGHT)):
        for word in {_fold(w)[:TERM_LENGTH] for w in TOKEN.findall((text_ or "").lower())
                     if len(w) >= MYSQL_MIN_TOKEN}:
            weights[word] = weights.get(word, 0) + weight
    return weights


_INSERT = "INSERT INTO search_terms (term, product_id, weight) VALUES (%s, %s, %s)"


def add_products(connection: Connection, products: Iterable[tuple[int, str, str]]) -> None:
    """Write the terms of new active products, given as (id, name, description) (MySQL only;
    the seed's bulk inserts call it, the ORM's writes are watched)."""
    if connection.dialect.name not in MYSQL_DIALECTS:
        return
    values = [(term, pid, weight) for pid, name, description in products
              for term, weight in terms(name, description).items()]
    for start in range(0, len(values), 20_000):
        connection.exec_driver_sql(_INSERT, values[start:start + 20_000])


def reindex(connection: Connection, product_ids: Iterable[int]) -> None:
    """Write the terms of these products again from what they are now (MySQL only): none for
    a product deleted or inactive."""
    if connection.dialect.name not in MYSQL_DIALECTS:
        return
    ids = sorted({int(i) for i in product_ids})
    if not ids:
        return
    listed = ", ".join(str(i) for i in ids)
    connection.execute(text(f"DELETE FROM search_terms WHERE product_id IN ({listed})"))
    current = connection.execute(text(
        f"SELECT id, name, description FROM products WHERE id IN ({listed}) "
        f"AND active = :active"), {"active": True}).all()
    add_products(connection, current)


def _watch_flush(session: Session, _context) -> None:
    """After each ORM flush on MySQL: the terms of products added, deleted, renamed, described
    anew, activated or deactivated."""
    from ..models import Product

    changed = [obj.id for obj in (*session.new, *session.deleted) if isinstance(obj, Product)]
    for obj in session.dirty:
        if isinstance(obj, Product):
            attrs = inspect(obj).attrs
            if any(getattr(attrs, name).history.has_changes()
                   for name in ("name", "description", "active")):
                changed.append(obj.id)
    if changed:
        reindex(session.connection(), changed)


def install(session_class: type[Session]) -> None:
    """Watch every flush of the shop's sessions (idempotent)."""
    if not event.contains(session_class, "after_flush", _watch_flush):
        event.listen(session_class, "after_flush", _watch_flush)
