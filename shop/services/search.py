"""Product search on the shop's own `search_terms` table, on SQLite and MySQL alike.

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

SQLite: FTS5 ranked every match with bm25 (23 ms for "cotton"'s 30,000) before a page could
be cut. Here `search_terms` is a WITHOUT ROWID table (migration 0004): a term's rows are
together, in product order, weight included. The words' terms are listed first with their
numbers of products (one query). Then, by the shape of the search:
- one word, one term: that count is the total, the page is read off ix_search_terms_rank;
- one word of a few terms ("candl"): each term's rows of one weight are in product order, so
  SQLite merges them (UNION for the total; UNION, EXCEPT for the products whose best term
  has a weight) without sorting anything;
- two or three words of similar sizes: their rows are merged too (INTERSECT: about 0.09 us a
  row, where a lookup costs 0.37 us a match): the total, then the first page score by score;
- otherwise (one word much rarer, later pages) the rarest word's products look the others up
  by key, counted per score in one pass, and the page is read score by score in product
  order (`_ranked_in_tiers`).
A score is a sum of a few weights (10 a word in the name, 1 in the description), so "score by
score" is a handful of small reads, each stopping when the page is full.
"""
from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

TOKEN = re.compile(r"\w+", re.UNICODE)
# Shorter words are not terms (a shopper's one-letter word is left out).
MIN_TOKEN = 2
# The term column's length: longer words are kept (and looked for) by their first 40 letters.
TERM_LENGTH = 40
NAME_WEIGHT, DESCRIPTION_WEIGHT = 10, 1
MAX_TOKENS = 8
MYSQL_DIALECTS = ("mysql", "mariadb")
# Above every character a term can continue with: a prefix's terms are [prefix, prefix + this).
_AFTER_PREFIX = "\U0010ffff"

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
    params: dict[str, Any] = field(default_factory=dict)
    score: str | None = None
    order: str | None = None
    ranked_page: Callable[[int, int], str] | None = None
    total: str | None = None


def tokens(query: str) -> list[str]:
    """The words of a shopper's query, lower case, at most eight."""
    return [t.lower() for t in TOKEN.findall(query or "")][:MAX_TOKENS]


def only_short_words(query: str) -> bool:
    """True when the query has words but none long enough to search for ("t", "a b"): such a
    search finds nothing, and the shopper is told why."""
    words = tokens(query)
    return bool(words) and all(len(w) < MIN_TOKEN for w in words)


def match(query: str, dialect: str, rows: Rows | None = None) -> Match:
    """The SQL that finds products matching every word of `query` on this database.

    `rows` runs a read (SQL with :name parameters): the words' prefixes are looked up in the
    terms first (one query), to know which terms each word stands for."""
    words: list[str] = []
    for w in tokens(query):
        # A one-letter word is no term, and as a prefix it would stand for a large part of the
        # vocabulary: it is left out beside longer words, and alone it finds nothing.
        term = _fold(w)[:TERM_LENGTH]
        if len(w) >= MIN_TOKEN and term not in words:
            words.append(term)
    if not words:
        return Match(where=["1 = 0"])
    if rows is None:
        raise ValueError("a search needs `rows` to look up its terms")
    if dialect == "sqlite":
        return _sqlite_match(words, rows)
    return _mysql_match(words, rows)


# SQLite ---------------------------------------------------------------------------------------
# Each word's terms, one seek each (the term after the last one), with their numbers of
# products (a word alone: its total; several: which one drives).
_SQLITE_TERMS = ("w{i}(term) AS (SELECT min(term) FROM search_terms WHERE term >= :lo_{i} "
                 "AND term < :hi_{i} UNION ALL SELECT (SELECT min(s.term) FROM search_terms s "
                 "WHERE s.term > w{i}.term AND s.term < :hi_{i}) FROM w{i} "
                 "WHERE w{i}.term IS NOT NULL)")
_SQLITE_SIZES = ("SELECT {i} AS word, term, (SELECT count(*) FROM search_terms s "
                 "WHERE s.term = w{i}.term) AS n FROM w{i} WHERE term IS NOT NULL")
# A product's terms in a range, looked up by product: one seek in (product_id, term). Left to
# itself SQLite would read the whole range of terms for each product instead.
_BY_PRODUCT = "search_terms t{i} INDEXED BY ix_search_terms_product_id"


def _sqlite_match(words: list[str], rows: Rows) -> Match:
    params: dict[str, Any] = {}
    for i, w in enumerate(words):
        params[f"lo_{i}"], params[f"hi_{i}"] = w, w + _AFTER_PREFIX
    found: dict[int, dict[str, int]] = {i: {} for i in range(len(words))}
    expand = (f"WITH RECURSIVE {', '.join(_SQLITE_TERMS.format(i=i) for i in range(len(words)))} "
              + " UNION ALL ".join(_SQLITE_SIZES.format(i=i) for i in range(len(words))))
    for word, term, n in rows(expand, params):
        found[int(word)][term] = int(n)
    if any(not terms for terms in found.values()):
        return Match(where=["1 = 0"])
    # A word of one term is that term's rows; a word of several ("mug": mug, mugs) their range.
    conditions: dict[int, str] = {}
    for i, terms_ in found.items():
        if len(terms_) == 1:
            params[f"term_{i}"] = next(iter(terms_))
            conditions[i] = f"t{i}.term = :term_{i}"
        else:
            for k, term in enumerate(terms_):
                params[f"term_{i}_{k}"] = term
            conditions[i] = f"t{i}.term >= :lo_{i} AND t{i}.term < :hi_{i}"
    # One word drives (its products are read), the others are looked up for its products: the
    # rarest, unless a word that is one term is nearly as rare: its rows come in product
    # order, one per product, so the page can be read in order (_ranked_in_tiers).
    size = {i: sum(terms_.values()) for i, terms_ in found.items()}
    rarest = min(size, key=lambda i: (size[i], i))
    single = [i for i in found if len(found[i]) == 1]
    first = min(single, key=lambda i: (size[i], i)) if single else rarest
    if size[first] > 2 * size[rarest]:
        first = rarest
    others = [i for i in range(len(words)) if i != first]
    # Each other word is looked up for the driving word's products: a word of one term by
    # its primary key; a word of several terms by product, and counted once per product with
    # its best weight (GROUP BY).
    tables = {i: f"search_terms t{i}" if len(found[i]) == 1 else _BY_PRODUCT.format(i=i)
              for i in others}
    joins = "".join(f" CROSS JOIN {tables[i]} ON t{i}.product_id = t{first}.product_id "
                    f"AND {conditions[i]}" for i in others)
    grouped = any(len(found[i]) > 1 for i in range(len(words)))
    score = " + ".join((f"max(t{i}.weight)" if grouped else f"t{i}.weight")
                       for i in (first, *others))
    body = (f"FROM search_terms t{first}{joins} WHERE {conditions[first]}"
            + (f" GROUP BY t{first}.product_id" if grouped else ""))
    matches = f"SELECT t{first}.product_id AS id, {score} AS score {body}"
    paged: Callable[[int, int], str]
    if len(found[first]) == 1:
        # The driving term's rows come in product order, one per product.
        paged = _ranked_in_tiers(first, score, body, grouped, params, rows)
    else:
        def paged(offset: int, limit: int) -> str:
            # The matches are found once, then counted and ranked.
            return (f"WITH m AS MATERIALIZED ({matches}) SELECT m.id, m.score, "
                    f"(SELECT count(*) FROM m) AS total FROM m "
                    f"ORDER BY m.score DESC, m.id DESC LIMIT {int(limit)} OFFSET {int(offset)}")
    if (len(words) in (2, 3) and sum(len(terms_) > 1 for terms_ in found.values()) <= 1
            and all(len(terms_) <= _MERGED_TERMS for terms_ in found.values())
            and sum(size.values()) <= (8 if grouped else 4) * min(size.values())):
        # Words of similar sizes: merging their rows costs less than looking each match up.
        paged = _ranked_by_merging(found, params, rows, paged)
    ranked_page: Callable[[int, int], str] | None = paged
    total: str | None = "page.total"
    if len(words) == 1 and len(found[0]) <= _MERGED_TERMS and len(found[0]) > 1:
        ranked_page = _ranked_by_best_term(len(found[0]), params, rows)
    elif len(words) == 1 and len(found[0]) == 1:
        # One term: its best page is the first rows of ix_search_terms_rank, read backwards,
        # and its count was read with the term.
        params["terms_total"] = found[0][params["term_0"]]

        def ranked_page(offset: int, limit: int) -> str:
            return (f"SELECT product_id AS id, weight AS score FROM search_terms "
                    f"INDEXED BY ix_search_terms_rank WHERE term = :term_0 "
                    f"ORDER BY weight DESC, product_id DESC "
                    f"LIMIT {int(limit)} OFFSET {int(offset)}")

        total = ":terms_total"
    # With filters or another sort the matches come first, then their products by id.
    return Match(source=f"({matches}) m CROSS JOIN products p ON p.id = m.id",
                 params=params, score="m.score", order="m.score DESC, p.id DESC",
                 ranked_page=ranked_page, total=total)


# A word of a few terms alone ("candl": candle, candles): each term's rows of one weight come
# in product order (ix_search_terms_rank), so SQLite merges them (UNION, EXCEPT) without a sort.
_MERGED_TERMS = 8
# The weights a term can have, best first: in the name and the description, the name, the
# description.
_WEIGHTS = (NAME_WEIGHT + DESCRIPTION_WEIGHT, NAME_WEIGHT, DESCRIPTION_WEIGHT)


def _products(i: int, count: int, weight: int | None = None) -> str:
    """The products of word i (of `count` terms, bound as :term_i or :term_i_0...) as a chain
    of compound SELECTs in product order; with `weight`, those whose best term has it (those
    with a term of that weight minus those with a better one). Compound operators apply left
    to right, so a chain of several terms can only start a longer one."""
    def having(term: str, w: int | None) -> str:
        return (f"SELECT product_id FROM search_terms WHERE term = :{term}"
                + ("" if w is None else f" AND weight = {w}"))

    if count == 1:
        return having(f"term_{i}", weight)
    chain = " UNION ".join(having(f"term_{i}_{k}", weight) for k in range(count))
    if weight is not None:
        chain += "".join(f" EXCEPT {having(f'term_{i}_{k}', better)}"
                         for better in _WEIGHTS[:_WEIGHTS.index(weight)] for k in range(count))
    return chain


_NO_PAGE = "SELECT NULL AS id, NULL AS score, 0 AS total LIMIT 0"


def _newest(chain: str, n: int, offset: int = 0) -> str:
    """The ids of a chain of compound SELECTs (in product order), newest first, n of them."""
    return f"SELECT * FROM ({chain} ORDER BY 1 DESC LIMIT {int(n)} OFFSET {int(offset)})"


def _first_page(total_chain: str, tiers: list[tuple[int, list[str]]], limit: int,
                params: dict[str, Any], rows: Rows) -> str:
    """The first page of matches ranked score by score: `tiers` are the scores, best first,
    each with the chains of its products. One query reads the total (a merge of
    `total_chain`) and the best score's newest `limit`; when they do not fill the page, the
    page's own query reads the next scores' newest too (each at most what is missing) and
    keeps the best. A search page is then three queries: terms, this, the cards."""
    limit = int(limit)
    score, chains = tiers[0]
    found = rows(f"SELECT NULL, (SELECT count(*) FROM ({total_chain} ORDER BY 1)) UNION ALL "
                 + " UNION ALL ".join(f"SELECT product_id, NULL FROM ({_newest(c, limit)})"
                                      for c in chains),
                 params)
    total = int(next(n for pid, n in found if pid is None))
    page = [(score, pid) for pid in sorted((int(pid) for pid, _ in found if pid is not None),
                                           reverse=True)][:limit]
    if not page and total == 0:
        return _NO_PAGE
    values = ("SELECT column1 AS id, column2 AS score FROM (VALUES "
              + ", ".join(f"({pid}, {score})" for score, pid in page) + ")")
    if len(page) >= min(limit, total):
        return f"SELECT id, score, {total} AS total FROM ({values})"
    missing = limit - len(page)
    rest = " UNION ALL ".join(f"SELECT product_id AS id, {score} AS score "
                              f"FROM ({_newest(c, missing)})"
                              for score, chains in tiers[1:] for c in chains)
    return (f"SELECT id, score, {total} AS total FROM ("
            + (f"{values} UNION ALL " if page else "")
            + f"SELECT * FROM ({rest})) ORDER BY score DESC, id DESC LIMIT {limit}")


def _ranked_by_best_term(count: int, params: dict[str, Any],
                         rows: Rows) -> Callable[[int, int], str]:
    """A page of the products with any of the terms :term_0_0 .. :term_0_{count - 1}, each
    scored by its best one, read weight by weight, newest first, as far as the page goes."""
    tiers = [(w, [_products(0, count, w)]) for w in _WEIGHTS]
    union = _products(0, count)

    def ranked_page(offset: int, limit: int) -> str:
        if not offset:
            return _first_page(union, tiers, limit, params, rows)
        # A later page skips whole weights: their sizes, with the total, in one query.
        counts = rows("SELECT " + ", ".join(f"(SELECT count(*) FROM ({chain} ORDER BY 1))"
                                            for chain in [union, *(t[1][0] for t in tiers)]),
                      params)[0]
        total = int(counts[0])
        parts, skip, wanted = [], int(offset), int(limit)
        for (weight, (chain,)), n in zip(tiers, counts[1:], strict=True):
            if wanted <= 0:
                break
            if skip >= n:
                skip -= n
                continue
            parts.append(f"SELECT product_id AS id, {weight} AS score, {total} AS total "
                         f"FROM ({_newest(chain, min(wanted, n - skip), skip)})")
            wanted -= n - skip
            skip = 0
        return " UNION ALL ".join(parts) or _NO_PAGE

    return ranked_page


def _ranked_by_merging(found: dict[int, dict[str, int]], params: dict[str, Any], rows: Rows,
                       deeper: Callable[[int, int], str]) -> Callable[[int, int], str]:
    """The first page of words of similar sizes (at most one of several terms), by merging
    rows in product order (INTERSECT) instead of looking each match up: the total is one
    merge, and each score's products are its combinations of weights (one weight per word),
    each merged newest first (_first_page). Later pages are left to `deeper`."""
    order = sorted(found, key=lambda i: (len(found[i]) == 1, i))  # the one of several first
    total_chain = " INTERSECT ".join(_products(i, len(found[i])) for i in order)
    combinations = sorted(itertools.product(_WEIGHTS, repeat=len(order)), key=sum,
                          reverse=True)
    tiers = [(score, [" INTERSECT ".join(_products(i, len(found[i]), w)
                                         for i, w in zip(order, weights, strict=True))
                      for weights in same])
             for score, same in itertools.groupby(combinations, key=sum)]

    def ranked_page(offset: int, limit: int) -> str:
        if offset:
            return deeper(offset, limit)
        return _first_page(total_chain, tiers, limit, params, rows)

    return ranked_page


def _ranked_in_tiers(first: int, score: str, body: str, grouped: bool, params: dict[str, Any],
                     rows: Rows) -> Callable[[int, int], str]:
    """A page of the matches `SELECT ..., score {body}` driven by one term (`t{first}`), whose
    rows come in product order. Scores are a few sums of weights: the matches are counted per
    score (one pass, no sort of the matches), then the page is read score by score, each
    newest first straight off the driving term's rows, stopping when the page is full."""
    newest = f"ORDER BY t{first}.product_id DESC"

    def ranked_page(offset: int, limit: int) -> str:
        tiers = sorted(((int(s), int(n)) for s, n in rows(
            f"SELECT score, count(*) FROM (SELECT {score} AS score {body}) GROUP BY score",
            params)), reverse=True)
        total = sum(n for _, n in tiers)
        parts, skip, wanted = [], int(offset), int(limit)
        for tier, n in tiers:
            if wanted <= 0:
                break
            if skip >= n:
                skip -= n
                continue
            only = f"HAVING {score} = {tier}" if grouped else f"AND {score} = {tier}"
            parts.append(f"SELECT * FROM (SELECT t{first}.product_id AS id, {tier} AS score, "
                         f"{total} AS total {body} {only} {newest} "
                         f"LIMIT {min(wanted, n - skip)} OFFSET {skip})")
            wanted -= n - skip
            skip = 0
        return " UNION ALL ".join(parts) or "SELECT NULL AS id, NULL AS score, 0 AS total LIMIT 0"

    return ranked_page


# MySQL ----------------------------------------------------------------------------------------
# Which terms each word is a prefix of: none, one (the term itself, found in order on an
# index), or several (shown by a second one). GROUP BY reads a term once, skipping its rows.
# A word's first two terms, each one seek in the terms index (min over a range). Grouping the
# range by term instead read every row of it: 5 ms for "cotton"'s 30,000 before any product.
_EXPAND = ("SELECT {i} AS word, a.term, (SELECT min(s.term) FROM search_terms s "
           "WHERE s.term > a.term AND s.term < :hi_{i}) AS next_term "
           "FROM (SELECT min(term) AS term FROM search_terms "
           "WHERE term >= :lo_{i} AND term < :hi_{i}) a")


def _mysql_match(words: list[str], rows: Rows) -> Match:
    params: dict[str, Any] = {}
    for i, w in enumerate(words):
        params[f"prefix_{i}"] = f"{_escape_like(w)}%"
        params[f"lo_{i}"], params[f"hi_{i}"] = w, w + _AFTER_PREFIX
    found: dict[int, list[str]] = {i: [] for i in range(len(words))}
    for word, term, next_term in rows(
            " UNION ALL ".join(_EXPAND.format(i=i) for i in range(len(words))), params):
        found[int(word)].extend(t for t in (term, next_term) if t is not None)
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
    if len(words) == 1 and conditions:
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
    return Match(source=f"({matches}) m STRAIGHT_JOIN products p ON p.id = m.id",
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
                     if len(w) >= MIN_TOKEN}:
            weights[word] = weights.get(word, 0) + weight
    return weights


_INSERT = "INSERT INTO search_terms (term, product_id, weight) VALUES ({0}, {0}, {0})"


def add_products(connection: Connection, products: Iterable[tuple[int, str, str]]) -> None:
    """Write the terms of new active products, given as (id, name, description) (the seed's
    bulk inserts call it, the ORM's writes are watched)."""
    values = [(term, pid, weight) for pid, name, description in products
              for term, weight in terms(name, description).items()]
    # In key order: each batch fills the (term, product) tree's pages one after the other.
    values.sort()
    insert = _INSERT.format("?" if connection.dialect.paramstyle == "qmark" else "%s")
    for start in range(0, len(values), 20_000):
        connection.exec_driver_sql(insert, values[start:start + 20_000])


def reindex(connection: Connection, product_ids: Iterable[int]) -> None:
    """Write the terms of these products again from what they are now: none for a product
    deleted or inactive."""
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
    """After each ORM flush: the terms of products added, deleted, renamed, described
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
