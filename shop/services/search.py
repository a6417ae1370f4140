"""Full-text product search behind one interface: FTS5 on SQLite, FULLTEXT on MySQL.

`match()` turns a shopper's words into SQL fragments that the catalogue service puts into its
listing and count queries: every word must match (as a prefix, so "shir" finds shirts), and
results rank by relevance, name matches above description matches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

TOKEN = re.compile(r"\w+", re.UNICODE)
# InnoDB's FULLTEXT ignores shorter words (innodb_ft_min_token_size); those go through LIKE.
MYSQL_MIN_TOKEN = 3
MAX_TOKENS = 8
# bm25 weights of the FTS5 columns (name, description): a word in the name counts ten times.
SQLITE_SOURCE = ("(SELECT rowid AS id, bm25(product_fts, 10.0, 1.0) AS rank FROM product_fts "
                 "WHERE product_fts MATCH :fts_query) fts CROSS JOIN products p ON p.id = fts.id")
MYSQL_MATCH = "MATCH (p.name, p.description) AGAINST (:fts_query IN BOOLEAN MODE)"


@dataclass(frozen=True)
class Match:
    """How to restrict a products query (aliased `p`) to a search.

    `source` replaces `products p` in the FROM clause, `where` are extra conditions, `score`
    is a relevance expression (higher is better) and `order` the ORDER BY for relevance;
    both are None when the words cannot be ranked."""

    source: str = "products p"
    where: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    score: str | None = None
    order: str | None = None


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


def match(query: str, dialect: str) -> Match:
    """The SQL that finds products matching every word of `query` on this database."""
    words = tokens(query)
    if not words:
        return Match(where=["1 = 0"])
    if dialect == "sqlite":
        # The FTS table drives the join (CROSS JOIN fixes the order in SQLite): the matches
        # are looked up in products by id, never the whole catalogue scanned per match.
        # A one-letter prefix would expand to a good part of the vocabulary: exact only.
        fts_query = " ".join(f'"{w}"*' if len(w) > 1 else f'"{w}"' for w in words)
        return Match(source=SQLITE_SOURCE, params={"fts_query": fts_query},
                     score="-fts.rank", order="fts.rank ASC, p.id DESC")
    where: list[str] = []
    params: dict[str, str] = {}
    long_words = [w for w in words if len(w) >= MYSQL_MIN_TOKEN] \
        if dialect in ("mysql", "mariadb") else []
    for i, w in enumerate(words):
        if w not in long_words:
            where.append(f"p.name LIKE :like_{i}")
            params[f"like_{i}"] = f"%{_escape_like(w)}%"
    if not long_words:
        return Match(where=where, params=params)
    params["fts_query"] = " ".join(f"+{w}*" for w in long_words)
    # FULLTEXT weighs the name like the description: a word in the name adds a bonus, so name
    # matches rank first as with FTS5's column weights. Only matching rows are scored.
    bonus = []
    for i, w in enumerate(long_words):
        bonus.append(f"(p.name LIKE :name_{i})")
        params[f"name_{i}"] = f"%{_escape_like(w)}%"
    score = f"({MYSQL_MATCH} + 10 * ({' + '.join(bonus)}))"
    return Match(where=[MYSQL_MATCH, *where], params=params, score=score,
                 order=f"{score} DESC, p.id DESC")


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
