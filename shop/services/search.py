"""Full-text product search behind one interface: FTS5 on SQLite, FULLTEXT on MySQL."""
from __future__ import annotations

import re

from sqlalchemy import Float, Integer, Select, column, literal_column, select, text
from sqlalchemy.dialects.mysql import match as mysql_match
from sqlalchemy.sql.elements import ColumnElement

from ..extensions import db
from ..models import Product

TOKEN = re.compile(r"\w+", re.UNICODE)
# InnoDB's FULLTEXT ignores shorter words (innodb_ft_min_token_size); those go through LIKE.
MYSQL_MIN_TOKEN = 3
MAX_TOKENS = 8


def tokens(query: str) -> list[str]:
    """The words of a shopper's query, lower case, at most eight."""
    return [t.lower() for t in TOKEN.findall(query or "")][:MAX_TOKENS]


def apply(stmt: Select, query: str) -> tuple[Select, ColumnElement | None]:
    """Restrict `stmt` (over products) to matches of `query`; return it with a relevance
    expression to order by (higher is better), or None when no ranking is possible."""
    words = tokens(query)
    if not words:
        return stmt.where(literal_column("1") == 0), None
    dialect = db.engine.dialect.name
    if dialect == "sqlite":
        match = " ".join(f'"{w}"*' for w in words)
        fts = (select(column("rowid", Integer).label("id"),
                      (literal_column("-bm25(product_fts, 10.0, 1.0)", Float)).label("score"))
               .select_from(text("product_fts"))
               .where(text("product_fts MATCH :fts_query").bindparams(fts_query=match))
               .subquery("fts"))
        return stmt.join(fts, fts.c.id == Product.id), fts.c.score
    if dialect in ("mysql", "mariadb"):
        long_words = [w for w in words if len(w) >= MYSQL_MIN_TOKEN]
        for w in words:
            if len(w) < MYSQL_MIN_TOKEN:
                stmt = stmt.where(Product.name.ilike(f"%{_escape_like(w)}%", escape="\\"))
        if not long_words:
            return stmt, None
        against = " ".join(f"+{w}*" for w in long_words)
        score_col = mysql_match(Product.name, Product.description,
                                against=against).in_boolean_mode()
        return stmt.where(score_col > 0), score_col
    for w in words:
        stmt = stmt.where(Product.name.ilike(f"%{_escape_like(w)}%", escape="\\"))
    return stmt, None


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
