"""Product search on the shop's own tables, on SQLite and MySQL alike.

`match()` turns a shopper's words into what the catalogue service needs to list the matches:
every word must match (as a prefix, so "shir" finds shirts), and results rank by relevance, a
word in the name above a word in the description.

The shop keeps each active product's words in `search_terms (term, product_id, weight)`: a
word of the name weighs 10, of the description 1 (11 in both); and each term's products in
`search_postings`, the same facts as three roaring bitmaps of product ids a term, one per
weight (services.postings). Both are written in the transaction of every product write: ORM
flush listeners see the ORM's (back office, API, CSV import, tests), the seed's Core inserts
call `add_products`. Only active products have terms, so a search never finds products it
does not show.

A term is a word folded by `fold()`, and so is each word of a shopper's query, so that the
two always agree: lower case, without accents ("creme" finds "Crème"), the letters that have
no accent to drop spelled as typed without them ("strasse" finds "Straße", "aeble" "Æble",
"ol" "Øl"). Words are letters and digits: punctuation, "_" too, separates them ("bar" finds
"foo_bar").

A search reads its words' terms with their postings (one query, a few kilobytes). When each
word stands for at most MAX_TERMS terms, the matches are counted and ranked in memory, well
under a millisecond even for 30,000 matches of 100,000 products, and the catalogue reads the
page's products by id. Counting and ranking them in SQL read every matching row instead:
MariaDB's 0.2-1.5 microseconds a row took "cast iron" (16,000 matches) 24 ms, and InnoDB's
FULLTEXT, before that, 60-80 ms for a word found in a third of the catalogue.

A search with filters or another sort, or with a word that stands for more terms, joins the
matches in SQL (`Match.source`): the search_terms rows of the rarest word look the others up
by key, then their products by id.
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyroaring import BitMap
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import postings

# A word is letters and digits: "_", which Python's \w counts as a letter, separates words
# as other punctuation does ("foo_bar" is foo and bar, as a shopper types them).
TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# Words joined by hyphens or apostrophes ("T-Shirt", "men's", "T‑Shirt" with a non-breaking
# hyphen): a product's text has each part as a term and the whole word joined too ("tshirt",
# "mens"), as shoppers type it. Changing what makes a term needs a migration that writes the
# terms again (0011, 0024). JOINED finds every word with what joins on to it, the joined ones
# kept: a pattern that asked for a joiner backtracked, quadratic in a long word's length.
JOINED = re.compile(r"[^\W_]+(?:['\-\u2010\u2011\u2019][^\W_]+)*", re.UNICODE)
_JOINERS = re.compile(r"['\-\u2010\u2011\u2019]")
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

    A search by these words alone, by relevance, can skip the products table: `ranked`
    gives one page of it (offset, limit) as the ids of its products in order, with the
    number of matches."""

    source: str = "products p"
    where: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    score: str | None = None
    order: str | None = None
    ranked: Callable[[int, int], tuple[list[int], int]] | None = None


def tokens(query: str) -> list[str]:
    """The words of a shopper's query, lower case, at most eight ("_" separates them as other
    punctuation does); match() folds them as a product's terms are folded."""
    return [t.lower() for t in TOKEN.findall(query or "")][:MAX_TOKENS]


def only_short_words(query: str) -> bool:
    """True when the query has words but none long enough to search for ("t", "a b"): such a
    search finds nothing, and the shopper is told why."""
    words = tokens(query)
    return bool(words) and all(len(w) < MIN_TOKEN for w in words)


def _joined_forms(query: str) -> dict[str, str]:
    """The query's joined words of one long part, by that part: "t-shirt" {"shirt": "tshirt"},
    "e-bike" {"bike": "ebike"}. Such a word stands for its part or its joined form: a product
    may write it either way ("T-Shirt" has both terms, "Tshirt" only the joined one). A word
    of two long parts ("coca-cola") stands for both parts, as before."""
    forms: dict[str, str] = {}
    for w in JOINED.findall((query or "").lower()):
        if not _JOINERS.search(w):
            continue
        long_parts = [p for p in TOKEN.findall(w) if len(p) >= MIN_TOKEN]
        if len(long_parts) == 1:
            joined = fold(_JOINERS.sub("", w))[:TERM_LENGTH]
            forms.setdefault(fold(long_parts[0])[:TERM_LENGTH], joined)
    return forms


def match(query: str, dialect: str, rows: Rows | None = None) -> Match:
    """The SQL that finds products matching every word of `query` on this database.

    `rows` runs a read (SQL with :name parameters): the words' terms are read first with
    their postings (one query), to know which terms each word stands for and, when each
    stands for a few, to count and rank the matches in memory."""
    words: list[str] = []
    for w in tokens(query):
        # A one-letter word is no term, and as a prefix it would stand for a large part of the
        # vocabulary: it is left out beside longer words, and alone it finds nothing.
        term = fold(w)[:TERM_LENGTH]
        if len(w) >= MIN_TOKEN and term not in words:
            words.append(term)
    if not words:
        return _NOTHING
    joined = _joined_forms(query) if _JOINERS.search(query) else {}
    # The prefixes each word stands for: itself, and the joined form of a joined word.
    prefixes = [[w] + ([joined[w]] if joined.get(w, w) != w and not joined[w].startswith(w)
                       else []) for w in words]
    if rows is None:
        raise ValueError("a search needs `rows` to look up its terms")
    params: dict[str, Any] = {}
    parts = []
    terms_sql = _SQLITE_TERMS if dialect == "sqlite" else _MYSQL_TERMS
    exact_sql = _SQLITE_EXACT if dialect == "sqlite" else _MYSQL_EXACT
    singulars: dict[int, list[str]] = {}
    for i in range(len(words)):
        for k, prefix in enumerate(prefixes[i]):
            key = f"{i}_{k}" if k else f"{i}"
            params[f"lo_{key}"], params[f"hi_{key}"] = prefix, prefix + _AFTER_PREFIX
            parts.append(terms_sql.format(i=i, key=key, n=MAX_TERMS + 1))
        forms = [form for prefix in prefixes[i] for form in _singulars(prefix)]
        if forms:
            singulars[i] = [f"s_{i}_{k}" for k in range(len(forms))]
            params.update(zip(singulars[i], forms, strict=True))
            parts.append(exact_sql.format(i=i, terms=", ".join(
                f":{name}" for name in singulars[i])))
    found: list[dict[str, postings.Tiers]] = [{} for _ in words]
    for word, term, both, name, description in rows(" UNION ALL ".join(parts), params):
        found[int(word)][term] = (postings.load(both), postings.load(name),
                                  postings.load(description))
    if any(not terms for terms in found):
        return _NOTHING
    # A plural's singular is one of its word's terms; the SQL below matches it beside the
    # word's range only when the shop has it.
    singulars = {i: names for i, names in singulars.items()
                 if any(params[n] in found[i] for n in names)}
    source = (_sqlite_matches(found, params, singulars, prefixes) if dialect == "sqlite"
              else _mysql_matches(prefixes, found, params, singulars))
    # A word of two prefixes may have read MAX_TERMS of each: all of them, or SQL.
    ranking = _Ranking(found) if all(
        len(terms) <= MAX_TERMS * len(prefixes[i]) and not _cut(terms, prefixes[i])
        for i, terms in enumerate(found)) else None
    return Match(source=source, params=params, score="m.score", order="m.score DESC, p.id DESC",
                 ranked=ranking.page if ranking else None)


# The terms a word is a prefix of, in order, with their postings: at most MAX_TERMS of them
# are ranked in memory; a word that stands for more ("a" would) is left to SQL.
MAX_TERMS = 256
_TERMS = ("SELECT {i} AS word, term, in_both, in_name, in_description FROM search_postings "
          "WHERE term >= :lo_{key} AND term < :hi_{key} ORDER BY term LIMIT {n}")
# SQLite takes no ORDER BY or LIMIT in a part of a UNION but in a subquery; MariaDB reads
# such subqueries into temporary tables (0.6 ms for two words) and takes the parts as they
# are between parentheses (0.25 ms).
_SQLITE_TERMS = "SELECT * FROM (" + _TERMS + ")"
_MYSQL_TERMS = "(" + _TERMS + ")"
# A plural's singular forms, looked up as whole terms ("mugs" finds a "Mug").
_EXACT = ("SELECT {i} AS word, term, in_both, in_name, in_description FROM search_postings "
          "WHERE term IN ({terms})")
_SQLITE_EXACT = _EXACT
_MYSQL_EXACT = "(" + _EXACT + ")"


def _cut(terms: dict[str, Any], prefixes: list[str]) -> bool:
    """Whether one of a word's prefixes stands for more than MAX_TERMS terms (its read stopped
    at MAX_TERMS + 1): then its matches are left to SQL."""
    return len(prefixes) > 1 and any(
        sum(term.startswith(prefix) for term in terms) > MAX_TERMS for prefix in prefixes)


def _singulars(word: str) -> list[str]:
    """What an English plural a shopper typed may be the plural of, as whole terms: "mugs"
    is "mug", "boxes" "boxe" or "box", "berries" "berrie", "berri" or "berry" (forms that are
    no term find nothing). Its prefix finds the plural itself and longer words."""
    if len(word) < MIN_TOKEN + 1 or not word.endswith("s") or word.endswith("ss"):
        return []
    forms = [word[:-1]]
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    return [form for form in forms if len(form) >= MIN_TOKEN]


def _no_page(_offset: int, _limit: int) -> tuple[list[int], int]:
    return [], 0


# Words that are no terms find nothing, with or without filters.
_NOTHING = Match(where=["1 = 0"], score="0", order="p.id DESC", ranked=_no_page)


class _Ranking:
    """The matches of some words, counted and ranked from their terms' postings.

    A product's score for a word is the best weight of the word's terms it has (11, 10 or 1)
    and its score the sum over the words; a page is the matches by score, then newest (the
    highest ids) first. The matches split into a few groups of one score each: for each word
    in turn, the products of each of its weights (a walk that stops where nothing is left)."""

    def __init__(self, found: list[dict[str, postings.Tiers]]) -> None:
        self._found = found
        self._scores: list[tuple[int, BitMap]] | None = None
        self._total = 0

    def _rank(self) -> list[tuple[int, BitMap]]:
        if self._scores is not None:
            return self._scores
        words = []
        for terms in self._found:
            tiers = list(terms.values())
            both = BitMap.union(*(t[0] for t in tiers))
            name = BitMap.union(*(t[1] for t in tiers)) - both
            description = BitMap.union(*(t[2] for t in tiers)) - both - name
            words.append((both, name, description))
        matches = BitMap.union(*words[0])
        for tiers_ in words[1:]:
            matches &= BitMap.union(*tiers_)
        self._total = len(matches)
        groups: dict[int, list[BitMap]] = defaultdict(list)

        def walk(i: int, products: BitMap, score: int) -> None:
            if not products:
                return
            if i == len(words):
                groups[score].append(products)
                return
            for weight, bitmap in zip(postings.WEIGHTS, words[i], strict=True):
                walk(i + 1, products & bitmap, score + weight)

        walk(0, matches, 0)
        self._scores = [(score, BitMap.union(*groups[score]))
                        for score in sorted(groups, reverse=True)]
        return self._scores

    def page(self, offset: int, limit: int) -> tuple[list[int], int]:
        """The ids of one page of the matches, in order, and the number of matches."""
        chosen: list[int] = []
        skip, wanted = int(offset), int(limit)
        for _score, products in self._rank():
            if wanted <= 0:
                break
            n = len(products)
            if skip >= n:
                skip -= n
                continue
            stop = n - skip
            start = max(0, stop - wanted)
            chosen.extend(reversed(products[start:stop]))
            wanted -= stop - start
            skip = 0
        return chosen, self._total


# The matches in SQL, for a search with filters or another sort: the catalogue query joins
# them to the products (the matches first, then their products by id).
# SQLite: a product's terms in a range, looked up by product: one seek in (product_id, term).
# Left to itself SQLite would read the whole range of terms for each product instead.
_BY_PRODUCT = "search_terms t{i} INDEXED BY ix_search_terms_product_id"


def _sqlite_matches(found: list[dict[str, postings.Tiers]], params: dict[str, Any],
                    singulars: dict[int, list[str]], prefixes: list[list[str]]) -> str:
    # A word of one term is that term's rows; a word of several ("mug": mug, mugs) their range
    # (and a plural's singular: "mugs": mug and the range of mugs; a joined word: the ranges
    # of its part and of its joined form).
    conditions: dict[int, str] = {}
    for i, terms_ in enumerate(found):
        if len(terms_) == 1:
            params[f"term_{i}"] = next(iter(terms_))
            conditions[i] = f"t{i}.term = :term_{i}"
            continue
        ranges = [f"t{i}.term >= :lo_{key} AND t{i}.term < :hi_{key}"
                  for key in (f"{i}_{k}" if k else f"{i}" for k in range(len(prefixes[i])))]
        if i in singulars:
            listed = ", ".join(f":{name}" for name in singulars[i])
            ranges.append(f"t{i}.term IN ({listed})")
        conditions[i] = ranges[0] if len(ranges) == 1 else f"({' OR '.join(ranges)})"
    # The rarest word drives (its products are read), the others are looked up for its
    # products: a word of one term by its primary key; a word of several terms by product,
    # and counted once per product with its best weight (GROUP BY).
    size = {i: sum(len(bitmap) for tiers in terms_.values() for bitmap in tiers)
            for i, terms_ in enumerate(found)}
    first = min(size, key=lambda i: (size[i], i))
    others = [i for i in range(len(found)) if i != first]
    tables = {i: f"search_terms t{i}" if len(found[i]) == 1 else _BY_PRODUCT.format(i=i)
              for i in others}
    joins = "".join(f" CROSS JOIN {tables[i]} ON t{i}.product_id = t{first}.product_id "
                    f"AND {conditions[i]}" for i in others)
    grouped = any(len(terms_) > 1 for terms_ in found)
    score = " + ".join((f"max(t{i}.weight)" if grouped else f"t{i}.weight")
                       for i in (first, *others))
    matches = (f"SELECT t{first}.product_id AS id, {score} AS score "
               f"FROM search_terms t{first}{joins} WHERE {conditions[first]}"
               + (f" GROUP BY t{first}.product_id" if grouped else ""))
    return f"({matches}) m CROSS JOIN products p ON p.id = m.id"


def _mysql_matches(prefixes: list[list[str]], found: list[dict[str, postings.Tiers]],
                   params: dict[str, Any], singulars: dict[int, list[str]]) -> str:
    # A word that is one term is that term's rows; a prefix of several terms is the best of
    # them for each product (a product can have several: "shirt" and "shirts").
    tables, conditions = [], []
    for i, terms_ in enumerate(found):
        if len(terms_) == 1:
            params[f"term_{i}"] = next(iter(terms_))
            tables.append(f"search_terms t{i}")
            conditions.append(f"t{i}.term = :term_{i}")
        else:
            likes = []
            for k, prefix in enumerate(prefixes[i]):
                key = f"{i}_{k}" if k else f"{i}"
                params[f"prefix_{key}"] = f"{_escape_like(prefix)}%"
                likes.append(f"term LIKE :prefix_{key}")
            singular = (" OR term IN ({})".format(", ".join(f":{n}" for n in singulars[i]))
                        if i in singulars else "")
            tables.append(f"(SELECT product_id, max(weight) AS weight FROM search_terms "
                          f"WHERE {' OR '.join(likes)}{singular} GROUP BY product_id) t{i}")
    joins = "".join(f" JOIN {table} ON t{i}.product_id = t0.product_id"
                    for i, table in enumerate(tables) if i)
    score = " + ".join(f"t{i}.weight" for i in range(len(prefixes)))
    matches = (f"SELECT t0.product_id AS id, {score} AS score FROM {tables[0]}{joins}"
               + (f" WHERE {' AND '.join(conditions)}" if conditions else ""))
    # Left to choose, MySQL would read the whole catalogue in price or date order and look
    # each product up in the terms (100,000 lookups instead of the matches').
    return f"({matches}) m STRAIGHT_JOIN products p ON p.id = m.id"


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Letters that compatibility decomposition (NFKD) keeps whole, as there is no accent to take
# off, spelled as a shopper types them on a keyboard without them: ß ss, æ ae, œ oe, þ th
# (their usual ASCII spellings), and a letter with a stroke or without its dot as the letter
# (ø o, ł l, đ and ð d, ħ h, ŧ t, ı i), as an accented letter loses its accent (ö is o). The
# capitals are here for the few characters NFKD turns into one ("ᴭ" is "Æ"); the others are
# lower case by then. Changing these changes terms: a migration writes them again (0024).
_SPELLED = {"ß": "ss", "æ": "ae", "œ": "oe", "þ": "th", "ø": "o", "ł": "l", "đ": "d",
            "ð": "d", "ħ": "h", "ŧ": "t", "ı": "i"}
_LETTERS = str.maketrans({**_SPELLED, "ẞ": "ss", "Æ": "ae", "Œ": "oe", "Þ": "th", "Ø": "o",
                          "Ł": "l", "Đ": "d", "Ð": "d", "Ħ": "h", "Ŧ": "t"})


def fold(word: str) -> str:
    """A word as a term: lower case, without accents ("Crème" is "creme") and with the letters
    decomposition keeps spelled in ASCII ("Straße" and "STRAẞE" are "strasse", "Æble"
    "aeble"), ligatures and other compatibility forms written out ("ﬁ" is "fi"). The terms
    of a product's text and the words of a shopper's query are folded here alike.

    Lower case comes first, so that a capital's letters are folded as its small letter's (ẞ is
    ß, then ss); then NFKD splits off the accents, which are dropped. str.lower, not casefold:
    casefold would also change Greek words (ς is σ, ᾳ is αι) and Cherokee ones, whose terms
    would all need writing again; the letter it spells out that matters here, ß, is spelled
    out above."""
    word = word.lower()
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(c)).translate(_LETTERS)


# Keeping the terms ---------------------------------------------------------------------------

def _words(text_: str) -> set[str]:
    """The terms of a text: its words of MIN_TOKEN letters or more, and its joined words
    joined ("T-Shirt": shirt and tshirt), folded (lower case, without accents, ß as ss: fold),
    cut to TERM_LENGTH."""
    lowered = (text_ or "").lower()
    words = [w for w in TOKEN.findall(lowered) if len(w) >= MIN_TOKEN]
    words.extend(_JOINERS.sub("", w) for w in JOINED.findall(lowered) if _JOINERS.search(w))
    return {fold(w)[:TERM_LENGTH] for w in words}


def terms(name: str, description: str) -> dict[str, int]:
    """A product's terms with their weights: a word of the name 10, of the description 1."""
    weights: dict[str, int] = {}
    for text_, weight in ((name, NAME_WEIGHT), (description, DESCRIPTION_WEIGHT)):
        for word in _words(text_):
            weights[word] = weights.get(word, 0) + weight
    return weights


_INSERT = "INSERT INTO search_terms (term, product_id, weight) VALUES ({0}, {0}, {0})"


def _rows_of(products: Iterable[tuple[int, str, str]]) -> list[tuple[str, int, int]]:
    return [(term, pid, weight) for pid, name, description in products
            for term, weight in terms(name, description).items()]


def _insert(connection: Connection, values: list[tuple[str, int, int]]) -> None:
    # In key order: each batch fills the (term, product) tree's pages one after the other.
    values.sort()
    insert = _INSERT.format("?" if connection.dialect.paramstyle == "qmark" else "%s")
    for start in range(0, len(values), 20_000):
        connection.exec_driver_sql(insert, values[start:start + 20_000])


def add_products(connection: Connection, products: Iterable[tuple[int, str, str]]) -> None:
    """Write the terms and postings of new active products, given as (id, name,
    description) (the seed's bulk inserts call it, the ORM's writes are watched)."""
    values = _rows_of(products)
    _insert(connection, values)
    postings.change(connection, added=values)


def _terms_of(connection: Connection, listed: str) -> list[tuple[str, int]]:
    return [(term, int(pid)) for term, pid in connection.execute(text(
        f"SELECT term, product_id FROM search_terms WHERE product_id IN ({listed})"))]


def reindex(connection: Connection, product_ids: Iterable[int]) -> None:
    """Write the terms and postings of these products again from what they are now: none
    for a product deleted or inactive."""
    ids = sorted({int(i) for i in product_ids})
    if not ids:
        return
    listed = ", ".join(str(i) for i in ids)
    removed = _terms_of(connection, listed)
    connection.execute(text(f"DELETE FROM search_terms WHERE product_id IN ({listed})"))
    current = connection.execute(text(
        f"SELECT id, name, description FROM products WHERE id IN ({listed}) "
        f"AND active = :active"), {"active": True}).all()
    values = _rows_of(current)
    _insert(connection, values)
    postings.change(connection, removed=removed, added=values)


def _before_flush(session: Session, _context, _instances) -> None:
    """Before an ORM flush deletes products: their postings lose them while their terms are
    still there to say where (the delete takes the terms with it, ON DELETE CASCADE)."""
    from ..models import Product

    ids = sorted(int(obj.id) for obj in session.deleted
                 if isinstance(obj, Product) and obj.id is not None)
    if ids:
        connection = session.connection()
        postings.change(connection, removed=_terms_of(connection, ", ".join(map(str, ids))))


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
    if not event.contains(session_class, "before_flush", _before_flush):
        event.listen(session_class, "before_flush", _before_flush)
    if not event.contains(session_class, "after_flush", _watch_flush):
        event.listen(session_class, "after_flush", _watch_flush)
