"""The catalogue as shoppers and integrators read it: filters, listing, product detail.

The shop's hot path. Listing and product pages read with a few hand-written SELECTs over the
tables (no ORM objects, no per-request statement building beyond string joins), so a page
costs the same handful of queries whatever the catalogue's size:
- a listing: one query for the page of cards with the total;
- a product: one query for the product with its variants and images;
each also reads the category tree's revision, and the tree itself (one more query) only when
it changed since the worker last read it (`with_current_tree`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import (
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import OrderLine, Product, Review, Variant
from ..models.catalog import VariantFacts
from . import catalog_state, reads, search
from .errors import InUse, NotFound
from .money import parse_money
from .paging import Paged

SORTS = ("relevance", "price", "-price", "name", "-name", "newest")
SORT_LABELS = {"relevance": "Relevance", "newest": "Newest", "price": "Price: low to high",
               "-price": "Price: high to low", "name": "Name: A to Z", "-name": "Name: Z to A"}
MAX_PER_PAGE = 100
MAX_PAGE = 100_000
# A search's words are read to this length (the search boxes' maxlength): longer text typed
# in a box made URLs past what the server takes (gunicorn's 414 page).
MAX_QUERY = 200
# A product is sold through its variants (one default variant when it has no options).
NO_VARIANT = ("A product needs at least one variant. To stop selling it, make it inactive "
              "instead.")
COMPARE_AT_NOT_HIGHER = ("A compare-at price must be higher than the price (it is shown as "
                         "the former price, crossed out), or empty.")



@dataclass
class ProductFilters:
    """A validated catalogue query (SPEC sections 5 and 7)."""

    q: str = ""
    category: str = ""
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool = False
    sort: str = "relevance"
    page: int = 1
    per_page: int = 24

    def as_args(self, **changes: object) -> dict[str, str]:
        """The query string that reproduces these filters (empty values left out)."""
        values = {"q": self.q, "category": self.category,
                  "min_price": "" if self.min_price is None else str(self.min_price),
                  "max_price": "" if self.max_price is None else str(self.max_price),
                  "in_stock": "true" if self.in_stock else "", "sort": self.sort,
                  "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        if values.get("sort") == "relevance":
            values["sort"] = ""
        if values.get("page") == "1":
            values["page"] = ""
        return {k: v for k, v in values.items() if v}


def listing_args(filters: ProductFilters, *, default_per_page: int,
                 category_in_path: bool = False) -> dict[str, str]:
    """The query arguments of the links a listing builds from its own URL (pagination, "last
    page"): the filters as parsed, so a value that was refused (`min_price=abc`,
    `sort=bogus`) is left out instead of repeating its error on every page they lead to.
    A page size other than the default is kept; a category the path already names is not."""
    args = filters.as_args()
    if category_in_path:
        args.pop("category", None)
    if filters.per_page != default_per_page:
        args["per_page"] = str(filters.per_page)
    return args


@dataclass
class CategoryNode:
    id: int
    slug: str
    name: str
    description: str
    parent_id: int | None
    children: list[CategoryNode] = field(default_factory=list)


@dataclass(eq=False)
class CategoryTree:
    roots: list[CategoryNode]
    by_slug: dict[str, CategoryNode]
    by_id: dict[int, CategoryNode]
    # catalog_state's revision it was read at (None: unknown, never remembered).
    revision: int | None = None
    # What pages build from the tree (navigation, category options), built once per tree.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def descendant_ids(self, node: CategoryNode) -> list[int]:
        """The category and every category below it."""
        ids, stack = [], [node]
        while stack:
            current = stack.pop()
            ids.append(current.id)
            stack.extend(current.children)
        return ids

    def ancestors(self, node: CategoryNode) -> list[CategoryNode]:
        """From the root down to the node's parent, for breadcrumbs."""
        chain, current = [], node
        while current.parent_id is not None and current.parent_id in self.by_id:
            current = self.by_id[current.parent_id]
            chain.append(current)
        return list(reversed(chain))


@dataclass
class ProductCard:
    """What a product grid needs of a product, read in one query."""

    id: int
    slug: str
    name: str
    price: Decimal
    compare_at_price: Decimal | None
    image_path: str | None
    image_alt: str
    in_stock: bool
    rating_average: Decimal | None
    rating_count: int
    default_variant_id: int | None
    variant_count: int


@dataclass
class ProductPage(Paged):
    items: list[ProductCard]
    page: int
    per_page: int
    total: int
    # The category tree's revision the page was read at (None: not known).
    tree_revision: int | None = None



@dataclass(frozen=True)
class ImageView:
    path: str
    alt: str


@dataclass(frozen=True)
class VariantView(VariantFacts):
    """A variant as the product page shows it."""

    id: int
    sku: str
    options: dict
    price: Decimal
    compare_at_price: Decimal | None
    stock_quantity: int
    low_stock_threshold: int


@dataclass(frozen=True)
class ProductDetail:
    """Everything the product page shows of a product (same names as the model's)."""

    id: int
    slug: str
    name: str
    description: str
    category_id: int | None
    active: bool
    price: Decimal
    rating_average: Decimal | None
    rating_count: int
    variants: list[VariantView]
    images: list[ImageView]
    tree_revision: int | None = None

    @property
    def in_stock(self) -> bool:
        """Some variant can be bought now."""
        return any(v.in_stock for v in self.variants)

    def chosen(self, variant_id: int | None) -> VariantView | None:
        """The option the product page shows (price, stock, SKU) and preselects: the one the
        shopper chose when it is one of this product's, else the first in stock, else the
        first (None: no variant at all)."""
        variants = self.variants
        return (next((v for v in variants if v.id == variant_id), None)
                or next((v for v in variants if v.in_stock), None)
                or (variants[0] if variants else None))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A price as people write one: digits, at most two decimals. Decimal also reads "1e3",
# "1_000" and other scripts' digits ("١٠"), which no shopper types as a price.
_PRICE = re.compile(r"(?:\d+(?:\.\d{0,2})?|\.\d{1,2})", re.ASCII)


def parse_filters(args: Mapping[str, str], *, default_per_page: int = 24
                  ) -> tuple[ProductFilters, dict[str, str]]:
    """Read catalogue filters from query arguments; errors name the field and say what is wrong.

    Invalid values are reported and left out of the returned filters.
    """
    errors: dict[str, str] = {}
    f = ProductFilters(per_page=default_per_page)
    # Control characters (a NUL in a pasted or crafted URL) are no part of a search: they
    # were echoed into the page's heading and search box.
    f.q = _CONTROL.sub(" ", args.get("q") or "").strip()[:MAX_QUERY]
    f.category = (args.get("category") or "").strip()[:120]
    for name in ("min_price", "max_price"):
        raw = args.get(name)
        if raw not in (None, ""):
            value = parse_money(raw)
            # More than cents ("10.999") was rounded without a word, where the API refuses it.
            if value is None or not _PRICE.fullmatch(str(raw).strip()):
                errors[name] = "Enter a price such as 10 or 24.99."
            else:
                setattr(f, name, value)
    if f.min_price is not None and f.max_price is not None and f.min_price > f.max_price:
        errors["max_price"] = "The maximum price must be at least the minimum price."
        f.max_price = None
    raw_stock = (args.get("in_stock") or "").strip().lower()
    if raw_stock in ("true", "1", "on", "yes"):
        f.in_stock = True
    elif raw_stock not in ("", "false", "0", "off", "no"):
        errors["in_stock"] = "Use in_stock=true or leave it out."
    sort = (args.get("sort") or "relevance").strip()
    if sort in SORTS:
        f.sort = sort
    else:
        errors["sort"] = f"Sort by one of: {', '.join(SORTS)}."
    f.page = _positive_int(args.get("page"), 1, MAX_PAGE, "page", errors)
    f.per_page = _positive_int(args.get("per_page"), default_per_page, MAX_PER_PAGE,
                               "per_page", errors)
    return f, errors


def _positive_int(raw: str | None, default: int, maximum: int, name: str,
                  errors: dict[str, str]) -> int:
    if raw in (None, ""):
        return default
    text = str(raw).strip()
    # ASCII digits only, as the prices take them: int() also read "２" and "٢" as 2, and "1_0"
    # as 10.
    if not (text.isascii() and text.isdigit()):
        errors[name] = f"{name} must be a whole number from 1 to {maximum}."
        return default
    value = int(text)
    if not 1 <= value <= maximum:
        errors[name] = f"{name} must be a whole number from 1 to {maximum}."
        return default
    return value


# Reading ------------------------------------------------------------------------------------
# The SQL below is assembled from fixed fragments only (values are always bound parameters,
# category ids are formatted ints), so the set of distinct statements is small. Each runs
# through services.reads (the session's choice of database, no statement compilation and no
# result processing per request). Values come back as the driver gives them and are
# converted here (SQLite gives floats for prices and text for JSON).

_rows = reads.rows


def _dialect() -> str:
    """The database's dialect name (the primary's; a replica is the same kind of server)."""
    return db.engine.dialect.name


_money = reads.money
_json = reads.json_object


# On MySQL a page's rows come back as JSON. PyMySQL (pure Python) parses a description of
# every column of a result and then every column of every row: for a page of 24 cards that
# cost the client more than the server spent on the query. So MySQL sends each row as one
# JSON_ARRAY, and json's C decoder reads them all at once, prices as exact decimals. The rows
# are the same lists of values either way; sqlite3 hands its rows over at no such cost and
# keeps its columns.

def _as_json(dialect: str) -> bool:
    return dialect != "sqlite"


def _json_rows(rows: list[Any]) -> list[Any]:
    """The values of rows of one JSON_ARRAY each, as MySQL sent them."""
    if not rows:
        return []
    return json.loads("[" + ",".join(row[0] for row in rows) + "]", parse_float=Decimal)


_TREE_SQL = (f"SELECT id, slug, name, description, parent_id, {catalog_state.TREE_SQL} "
             f"FROM categories ORDER BY position, name, id")
_TREE_REVISION_SQL = f"SELECT {catalog_state.TREE_SQL}"
_TREE_KEY = "shop.category_tree"


def category_tree() -> CategoryTree:
    """Every category, as a tree ordered by position, as it is now.

    A worker remembers the tree it read last with its revision (services.catalog_state): when
    the revision has not moved, checking it is the only query; otherwise the tree is read
    again (one query)."""
    known = remembered_tree()
    if known is not None:
        rows = _rows(_TREE_REVISION_SQL, {})
        if rows and rows[0][0] is not None and int(rows[0][0]) == known.revision:
            return known
    return _read_tree()


def remembered_tree() -> CategoryTree | None:
    """The tree this worker read last, not checked: a page that uses it reads the revision
    with its own query and calls `with_current_tree` (below)."""
    return current_app.extensions.get(_TREE_KEY)


def _read_tree() -> CategoryTree:
    rows = _rows(_TREE_SQL, {})
    by_id = {r[0]: CategoryNode(r[0], r[1], r[2], r[3] or "", r[4]) for r in rows}
    roots = []
    for node in by_id.values():
        parent = by_id.get(node.parent_id) if node.parent_id is not None else None
        (parent.children if parent else roots).append(node)
    revision = int(rows[0][5]) if rows and rows[0][5] is not None else None
    tree = CategoryTree(roots, {n.slug: n for n in by_id.values()}, by_id, revision)
    if revision is not None:
        current_app.extensions[_TREE_KEY] = tree
    else:
        current_app.extensions.pop(_TREE_KEY, None)
    return tree


T = TypeVar("T")


def with_current_tree(read: Callable[[CategoryTree], T],
                      revision_of: Callable[[T], int | None]) -> tuple[CategoryTree, T]:
    """Run a catalogue read with the remembered tree, and keep its result when the read saw
    that same tree revision (the read's own query carries it); otherwise, or when the read
    failed with the remembered tree (say a category it does not know yet), read the current
    tree and run the read again. The tree and the result are then always of one revision."""
    tree = remembered_tree()
    if tree is not None:
        try:
            result = read(tree)
        except NotFound:
            pass
        else:
            if revision_of(result) == tree.revision:
                return tree, result
    tree = _read_tree()
    return tree, read(tree)


# Each sort's column and direction (the id breaks ties, in the same direction). Names sort by
# their key (catalog_state.name_key), without case or accents on both databases.
_SORTS = {
    "price": ("p.price", "ASC"),
    "-price": ("p.price", "DESC"),
    "name": ("p.name_key", "ASC"),
    "-name": ("p.name_key", "DESC"),
    "newest": ("p.created_at", "DESC"),
}
_ORDER = {sort: f"{column} {way}, p.id {way}" for sort, (column, way) in _SORTS.items()}

# A page of cards: one row per variant of each product of the page (the page's ids come from
# the inner query), with the product's first image (kept on its row: catalog_state); variants
# are added up in Python, which costs less than a subquery per card. Then the total and the
# tree's revision (NULL and NULL when the page is empty: the total is then counted).
# On MySQL each row is one JSON_ARRAY of the same values (see _as_json), in the order of the
# inner query's own columns (its sort key `k` and id): sorting the page by the joined
# products' columns cost MariaDB a temporary table, a third of the query.
_CARD_COLUMNS = ("p.id, p.slug, p.name, p.price, p.rating_average, p.rating_count, "
                 "p.card_image_path, p.card_image_alt, v.id, v.stock_quantity, v.compare_at_price, "
                 "v.price")
_CARDS_SQL = ("SELECT " + _CARD_COLUMNS + ", {total}, " + catalog_state.TREE_SQL + """
FROM ({inner}) page JOIN products p ON p.id = page.id
LEFT JOIN variants v ON v.product_id = p.id
ORDER BY {order}""")
_CARDS_JSON_SQL = ("SELECT JSON_ARRAY(" + _CARD_COLUMNS + ", {total}, " + catalog_state.TREE_SQL
                   + """)
FROM ({inner}) page JOIN products p ON p.id = page.id
LEFT JOIN variants v ON v.product_id = p.id
ORDER BY {page_order}""")


def _card_rows(sql: str, json_sql: str, params: dict[str, Any]
               ) -> tuple[list[Any], Any, int | None]:
    """Run a cards query (its SQLite or its MySQL form): the cards' rows, the total and the
    tree revision the query read (None and None when it found no row)."""
    rows = _json_rows(_rows(json_sql, params)) if _as_json(_dialect()) else _rows(sql, params)
    total, revision = (rows[0][12], rows[0][13]) if rows else (None, None)
    return rows, total, None if revision is None else int(revision)


def _matching(filters: ProductFilters, tree: CategoryTree | None
              ) -> tuple[str, list[str], dict[str, Any], search.Match | None]:
    """FROM clause, WHERE conditions and parameters of the products the filters select."""
    where = ["p.active = :active"]
    params: dict[str, Any] = {"active": True}
    if filters.category:
        tree = tree or category_tree()
        node = tree.by_slug.get(filters.category)
        if node is None:
            raise NotFound(f"There is no category {filters.category!r}.", field="category")
        ids = ", ".join(str(int(i)) for i in sorted(tree.descendant_ids(node)))
        where.append(f"p.category_id IN ({ids})")
    if filters.min_price is not None:
        where.append("p.price >= :min_price")
        params["min_price"] = filters.min_price
    if filters.max_price is not None:
        where.append("p.price <= :max_price")
        params["max_price"] = filters.max_price
    if filters.in_stock:
        # In stock within the price range: a product whose only variants at or under the
        # maximum are sold out cannot be bought at that price. (Its lowest price is at least
        # the minimum, so every variant is.)
        within = " AND s.price <= :max_price" if filters.max_price is not None else ""
        where.append("EXISTS (SELECT 1 FROM variants s WHERE s.product_id = p.id "
                     f"AND s.stock_quantity > 0{within})")
    match = None
    source = "products p"
    if filters.q:
        match = search.match(filters.q, _dialect(), _rows)
        source = match.source
        where.extend(match.where)
        params.update(match.params)
    return source, where, params, match


def _count_sql(source: str, where: list[str], params: dict[str, Any], *,
               kept_only: bool = False) -> str:
    """The SQL of the number of matching products. All active products are kept counted in
    catalog_state; without that row they are counted: every row (quick on SQLite) minus the
    inactive ones (few, found by index). `kept_only`: the kept count alone (NULL without
    it), the subquery of a page's query (the fallback there cost MariaDB 0.1 ms a page)."""
    if source == "products p" and where == ["p.active = :active"]:
        if kept_only:
            return f"SELECT {catalog_state.ACTIVE_PRODUCTS_SQL}"
        params["inactive"] = False
        return (f"SELECT COALESCE({catalog_state.ACTIVE_PRODUCTS_SQL}, "
                "(SELECT count(*) FROM products) - "
                "(SELECT count(*) FROM products p WHERE p.active = :inactive))")
    return f"SELECT count(*) FROM {source} WHERE {' AND '.join(where)}"


def list_products(filters: ProductFilters, tree: CategoryTree | None = None, *,
                  with_total: bool = True) -> ProductPage:
    """One page of active products matching the filters, with the total: one query (two when
    the page is empty and the total is still wanted; a search reads its terms first)."""
    source, where, params, match = _matching(filters, tree)
    ranked = match is not None and filters.sort == "relevance" and match.order is not None
    offset = (int(filters.page) - 1) * int(filters.per_page)
    if ranked and match.ranked is not None and len(where) == 1 + len(match.where):
        # Words and nothing else, by relevance: the search counts and ranks the matches (in
        # memory, from the terms' postings); products are read for the page only.
        ids, total = match.ranked(offset, int(filters.per_page))
        return _page_of(ids, total if with_total else 0, filters)
    if ranked:
        order, score, page_order = (match.order, f", {match.score} AS score",
                                    "page.score DESC, page.id DESC")
    else:
        column, way = _SORTS.get(filters.sort, _SORTS["newest"])
        order, score, page_order = (_ORDER.get(filters.sort, _ORDER["newest"]),
                                    f", {column} AS k", f"page.k {way}, page.id {way}")
    # A search reads every match anyway (to rank them): it counts them in the same pass. A
    # listing's page stops early on an index, and its total is a separate, index-only count.
    windowed = match is not None and with_total
    inner = (f"SELECT p.id AS id{score}{', count(*) OVER () AS total' if windowed else ''} "
             f"FROM {source} WHERE {' AND '.join(where)} "
             f"ORDER BY {order} LIMIT {int(filters.per_page)} OFFSET {offset}")
    total_sql = ("page.total" if windowed else
                 f"({_count_sql(source, where, params, kept_only=True)})" if with_total else "0")
    parts = {"total": total_sql, "inner": inner, "page_order": page_order,
             "order": "page.score DESC, p.id DESC" if ranked else order}
    rows, total, revision = _card_rows(_CARDS_SQL.format(**parts),
                                       _CARDS_JSON_SQL.format(**parts), params)
    if with_total and total is None:  # an empty page, or no kept count
        total = _rows(_count_sql(source, where, params), params)[0][0]
    return ProductPage(_cards(rows), filters.page, filters.per_page, int(total or 0), revision)


# The cards of products chosen by id (a search's page), in no order: one row per variant.
# `+p.active` is no column for SQLite's planner: it reads the ids by key instead of every
# active product by the (active, ...) indexes.
_CARDS_BY_ID_FROM = """
FROM products p
LEFT JOIN variants v ON v.product_id = p.id
WHERE p.id IN ({ids}) AND +p.active = :active"""
_CARDS_BY_ID_SQL = ("SELECT " + _CARD_COLUMNS + ", NULL, " + catalog_state.TREE_SQL
                    + _CARDS_BY_ID_FROM)
_CARDS_BY_ID_JSON_SQL = ("SELECT JSON_ARRAY(" + _CARD_COLUMNS + ", NULL, "
                         + catalog_state.TREE_SQL + ")" + _CARDS_BY_ID_FROM)


def _page_of(ids: list[int], total: int, filters: ProductFilters) -> ProductPage:
    """The page of these products, in this order."""
    if not ids:
        return ProductPage([], filters.page, filters.per_page, total, None)
    listed = ", ".join(str(int(i)) for i in ids)
    rows, _total, revision = _card_rows(_CARDS_BY_ID_SQL.format(ids=listed),
                                        _CARDS_BY_ID_JSON_SQL.format(ids=listed),
                                        {"active": True})
    place = {pid: n for n, pid in enumerate(ids)}
    rows.sort(key=lambda row: place[row[0]])  # stable: a product's rows stay together
    return ProductPage(_cards(rows), filters.page, filters.per_page, total, revision)


def _cards(rows: list[Any]) -> list[ProductCard]:
    """Cards from the rows of _CARDS_SQL (one per variant, a product's rows together; the
    columns after the card's are not read)."""
    cards: list[ProductCard] = []
    card: ProductCard | None = None
    for (pid, slug, name, price, rating, rating_count, image_path, image_alt, variant_id, stock,
         compare, variant_price, *_rest) in rows:
        if card is None or card.id != pid:
            card = ProductCard(
                id=pid, slug=slug, name=name, price=_money(price) or Decimal("0.00"),
                compare_at_price=None, image_path=image_path, image_alt=image_alt or name,
                in_stock=False, rating_average=_money(rating), rating_count=rating_count or 0,
                default_variant_id=None, variant_count=0)
            cards.append(card)
        if variant_id is None:
            continue
        card.variant_count += 1
        card.in_stock = card.in_stock or (stock or 0) > 0
        # The card adds to the cart only a product's one variant: its id is kept while the
        # product has one. The card's price is the lowest variant price: a compare-at price
        # shows struck through only beside it, from a variant at that price (another
        # variant's "was" price is no saving on the price shown).
        card.default_variant_id = variant_id if card.variant_count == 1 else None
        compare = _money(compare)
        if compare is not None and compare > card.price and (
                _money(variant_price) == card.price) and (
                card.compare_at_price is None or compare < card.compare_at_price):
            card.compare_at_price = compare
    return cards


# The product, its variants and its images in one round trip: three SELECTs of the same shape
# (the columns a part does not have are NULL), told apart by the first column: kind, the
# product's id, the product's columns, the variant's, the image's, position, id and the tree's
# revision. On MySQL each row is one JSON_ARRAY of those values (see _as_json). The product
# page reads one product by slug; the API reads a page of products by id.
_PRODUCT_COLUMNS = (
    "0, p.id, p.slug, p.name, p.description, p.category_id, p.active, p.price, "
    "p.rating_average, p.rating_count, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "0, 0, " + catalog_state.TREE_SQL,
    "1, v.product_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, v.id, v.sku, v.options, "
    "v.price, v.compare_at_price, v.stock_quantity, v.low_stock_threshold, NULL, NULL, "
    "v.position, v.id, NULL",
    "2, i.product_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, i.path, i.alt, i.position, i.id, NULL")
_BY_SLUG = ("FROM products p WHERE p.slug = :slug",
            "FROM variants v JOIN products p ON p.id = v.product_id WHERE p.slug = :slug",
            "FROM product_images i JOIN products p ON p.id = i.product_id WHERE p.slug = :slug")
_BY_ID = ("FROM products p WHERE p.id IN ({ids})",
          "FROM variants v WHERE v.product_id IN ({ids})",
          "FROM product_images i WHERE i.product_id IN ({ids})")


def _union(sources: tuple[str, str, str], as_json: bool) -> str:
    return "\nUNION ALL\n".join(
        f"SELECT JSON_ARRAY({columns})\n{source}" if as_json else f"SELECT {columns}\n{source}"
        for columns, source in zip(_PRODUCT_COLUMNS, sources, strict=True))


_PRODUCT_SQL = _union(_BY_SLUG, False)
_PRODUCT_JSON_SQL = _union(_BY_SLUG, True)
_PRODUCTS_SQL = _union(_BY_ID, False)
_PRODUCTS_JSON_SQL = _union(_BY_ID, True)


# Sorted here, not by the query: on MariaDB an ORDER BY over the UNION costs a temporary table
# and a filesort, twice the time of the three lookups themselves (for a handful of rows).
def _product_order(row: Any) -> tuple[int, int, int, int]:
    return row[1] or 0, row[0], row[19] or 0, row[20] or 0  # product, kind, position, id


def _product_rows(sql: str, json_sql: str, params: dict[str, Any]) -> list[Any]:
    rows = _json_rows(_rows(json_sql, params)) if _as_json(_dialect()) else _rows(sql, params)
    rows.sort(key=_product_order)
    return rows


def one_line_end(text: str | None) -> str:
    """Text with its line breaks as LF: a browser sends a textarea's as CRLF and Excel on
    Windows saves CRLF. The back office stores descriptions so (a save of an untouched form
    rewrote them and logged a change), the CSV import reads and compares cells so, and the
    product page (paragraphs at blank lines) and the API read them so (a description stored
    with CRLF ran its paragraphs together)."""
    return (text or "").replace("\r\n", "\n").replace("\r", "\n")


def _details(rows: list[Any]) -> dict[int, ProductDetail]:
    """ProductDetails by id from rows of _PRODUCT_COLUMNS sorted by _product_order (a product
    without its own row, say deleted meanwhile, is left out)."""
    variants: dict[int, list[VariantView]] = {}
    images: dict[int, list[ImageView]] = {}
    products = []
    for r in rows:
        if r[0] == 0:
            products.append(r)
        elif r[0] == 1:
            variants.setdefault(r[1], []).append(VariantView(
                id=r[10], sku=r[11], options=_json(r[12]), price=_money(r[13]),
                compare_at_price=_money(r[14]), stock_quantity=r[15] or 0,
                low_stock_threshold=r[16] or 0))
        else:
            images.setdefault(r[1], []).append(ImageView(r[17], r[18] or ""))
    return {r[1]: ProductDetail(id=r[1], slug=r[2], name=r[3], description=one_line_end(r[4]),
                                category_id=r[5], active=bool(r[6]),
                                price=_money(r[7]) or Decimal("0.00"),
                                rating_average=_money(r[8]), rating_count=r[9] or 0,
                                variants=variants.get(r[1], []), images=images.get(r[1], []),
                                tree_revision=None if r[21] is None else int(r[21]))
            for r in products}


def product_detail(slug: str) -> ProductDetail:
    """An active product by slug as its page shows it, with its variants and images (one
    query)."""
    found = list(_details(_product_rows(_PRODUCT_SQL, _PRODUCT_JSON_SQL,
                                        {"slug": slug})).values())
    if not found or not found[0].active:
        raise NotFound("That product does not exist or is no longer sold.")
    return found[0]


def product_details(ids: list[int]) -> list[ProductDetail]:
    """Active products by id, in that order, with their variants and images (one query): the
    API's products in their full shape."""
    if not ids:
        return []
    listed = ", ".join(str(int(i)) for i in ids)
    found = _details(_product_rows(_PRODUCTS_SQL.format(ids=listed),
                                   _PRODUCTS_JSON_SQL.format(ids=listed), {}))
    return [found[i] for i in ids if i in found and found[i].active]


def find_product(key: str) -> ProductDetail:
    """An active product by numeric id or by slug, as product_detail reads it. Digits are an
    id first, then a slug (a product slugged "1984" is found by it when no product has that
    id)."""
    if key.isdigit():
        found = product_details([int(key)])
        if found:
            return found[0]
    return product_detail(key)


def get_product(key: str | int, *, include_inactive: bool = False) -> Product:
    """A product by id (an int) or slug (a str, digits or not: a product's page is /p/<slug>,
    and "1984" is a slug there), with its images, variants and category (three queries)."""
    stmt = select(Product).options(selectinload(Product.images), selectinload(Product.variants),
                                   selectinload(Product.category))
    if isinstance(key, int):
        stmt = stmt.where(Product.id == key)
    else:
        stmt = stmt.where(Product.slug == key)
    product = db.session.execute(stmt).scalar_one_or_none()
    if product is None or (not product.active and not include_inactive):
        raise NotFound("That product does not exist or is no longer sold.")
    return product


def refresh_product_prices(product_ids: list[int] | None = None) -> None:
    """Keep Product.price equal to its lowest variant price (call after variant changes).

    Only flushes: the caller owns the transaction.
    """
    lowest = (select(func.min(Variant.price)).where(Variant.product_id == Product.id)
              .scalar_subquery())
    stmt = update(Product).values(price=func.coalesce(lowest, 0))
    if product_ids is not None:
        stmt = stmt.where(Product.id.in_(product_ids))
    db.session.execute(stmt.execution_options(synchronize_session=False))


def options_key(options: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """What a shopper tells a product's variants apart by: its option names and values,
    whatever their capitals or order. Two variants of one product with the same key are one
    choice twice on the product page ("M" and "M")."""
    return tuple(sorted((str(name).strip().casefold(), str(value).strip().casefold())
                        for name, value in (options or {}).items()))


def sku_key(sku: str) -> str:
    """What makes two SKUs the same: "lin-s" is "LIN-S" (SKUs are ASCII)."""
    return sku.strip().lower()


def skus_in_use(skus: Iterable[str], *, except_variant_ids: Iterable[int] = ()
                ) -> dict[str, str]:
    """Of these SKUs, those a variant (other than `except_variant_ids`) already has, compared
    without case: sku_key -> the SKU as stored. MySQL's collation compares SKUs without case
    (its unique index refuses "lin-s" next to "LIN-S", and `sku IN (...)` finds either by the
    index); SQLite compares bytes, so it is asked for lower(sku) (a scan, at most 500 SKUs a
    query)."""
    keys = sorted({sku_key(sku) for sku in skus if sku and sku.strip()})
    excluded = sorted({int(i) for i in except_variant_ids})
    by_case = _dialect() in ("mysql", "mariadb")
    found: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        stmt = select(Variant.sku).where(
            Variant.sku.in_(chunk) if by_case else func.lower(Variant.sku).in_(chunk))
        if excluded:
            stmt = stmt.where(Variant.id.not_in(excluded))
        for sku in db.session.execute(stmt).scalars():
            found[sku_key(sku)] = sku
    return found


def compare_at_problem(price: Decimal | None, compare_at: Decimal | None) -> str | None:
    """Why a variant's compare-at ("was") price cannot be kept: at or below its price, the
    product page would show "$5.56 Was $1.00". Empty is fine; so is a missing price (refused
    by its own check)."""
    if compare_at is None or price is None or compare_at > price:
        return None
    return COMPARE_AT_NOT_HIGHER


def _lock_variants(stmt: Any) -> list[int]:
    """Lock variant rows (by id, one order) so that no checkout takes their stock, and so
    writes order lines for them, until the caller's transaction ends; then the locking reads
    below see every order line committed before."""
    return list(db.session.execute(stmt.order_by(Variant.id).with_for_update()).scalars())


def ensure_deletable(product: Product) -> None:
    """Refuse (InUse) to delete a product that has order lines or reviews: deleting it took
    its variants, stock ledger and reviews with it and left its orders' lines pointing at no
    variant, so the stock balance (SPEC 4) of what it sold could no longer be checked. Such a
    product is deactivated instead; one never ordered (created by mistake) may go. Only reads
    (and locks the product's variants): the caller owns the transaction."""
    variant_ids = _lock_variants(select(Variant.id).where(Variant.product_id == product.id))
    ordered = OrderLine.product_id == product.id
    if variant_ids:
        ordered = or_(ordered, OrderLine.variant_id.in_(variant_ids))
    lines = db.session.execute(select(func.count(OrderLine.id)).where(ordered)
                               .with_for_update(read=True)).scalar_one()
    reviews = db.session.execute(select(func.count(Review.id))
                                 .where(Review.product_id == product.id)).scalar_one()
    if lines or reviews:
        raise InUse(f"\"{product.name}\" cannot be deleted: it has {lines} order line(s) and "
                    f"{reviews} review(s), which would lose their product. Deactivate it "
                    "instead (untick \"Active\" and save): it leaves the shop and keeps its "
                    "history.", details={"order_lines": lines, "reviews": reviews})


def ordered_variants(variant_ids: Iterable[int]) -> dict[int, int]:
    """Of these variants, those with order lines: variant id -> number of lines. Such a
    variant is not removed from its product (its orders' lines would point at nothing and its
    stock balance, SPEC 4, could no longer be checked); one never ordered may be. Locks the
    variants: the caller owns the transaction and removes the others in it."""
    ids = _lock_variants(select(Variant.id).where(
        Variant.id.in_(sorted({int(i) for i in variant_ids}))))
    if not ids:
        return {}
    return dict(db.session.execute(
        select(OrderLine.variant_id, func.count(OrderLine.id))
        .where(OrderLine.variant_id.in_(ids)).group_by(OrderLine.variant_id)
        .with_for_update(read=True)).all())


def ordered_variant_message(sku: str, lines: int) -> str:
    """Why staff cannot remove this variant, and what to do instead."""
    return (f"{sku} cannot be removed: it has {lines} order line(s). Set its stock to 0 to stop "
            "selling it, or deactivate the product.")
