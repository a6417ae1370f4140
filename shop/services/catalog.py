"""The catalogue as shoppers and integrators read it: filters, listing, product detail."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Category, Product, ProductImage, Variant
from . import search
from .errors import NotFound
from .money import parse_money

SORTS = ("relevance", "price", "-price", "name", "-name", "newest")
SORT_LABELS = {"relevance": "Relevance", "newest": "Newest", "price": "Price: low to high",
               "-price": "Price: high to low", "name": "Name: A to Z", "-name": "Name: Z to A"}
MAX_PER_PAGE = 100
MAX_PAGE = 100_000


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


@dataclass
class CategoryNode:
    id: int
    slug: str
    name: str
    description: str
    parent_id: int | None
    children: list[CategoryNode] = field(default_factory=list)


@dataclass
class CategoryTree:
    roots: list[CategoryNode]
    by_slug: dict[str, CategoryNode]
    by_id: dict[int, CategoryNode]

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
    category_slug: str | None
    category_name: str | None


@dataclass
class ProductPage:
    items: list[ProductCard]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.total else 0


def parse_filters(args: Mapping[str, str], *, default_per_page: int = 24
                  ) -> tuple[ProductFilters, dict[str, str]]:
    """Read catalogue filters from query arguments; errors name the field and say what is wrong.

    Invalid values are reported and left out of the returned filters.
    """
    errors: dict[str, str] = {}
    f = ProductFilters(per_page=default_per_page)
    f.q = (args.get("q") or "").strip()[:200]
    f.category = (args.get("category") or "").strip()[:120]
    for name in ("min_price", "max_price"):
        raw = args.get(name)
        if raw not in (None, ""):
            value = parse_money(raw)
            if value is None:
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
    try:
        value = int(str(raw).strip())
    except ValueError:
        errors[name] = f"{name} must be a whole number from 1 to {maximum}."
        return default
    if not 1 <= value <= maximum:
        errors[name] = f"{name} must be a whole number from 1 to {maximum}."
        return default
    return value


def category_tree() -> CategoryTree:
    """Every category, as a tree ordered by position (one query)."""
    rows = db.session.execute(
        select(Category.id, Category.slug, Category.name, Category.description,
               Category.parent_id).order_by(Category.position, Category.name)).all()
    by_id = {r.id: CategoryNode(r.id, r.slug, r.name, r.description or "", r.parent_id)
             for r in rows}
    roots = []
    for node in by_id.values():
        parent = by_id.get(node.parent_id) if node.parent_id is not None else None
        (parent.children if parent else roots).append(node)
    return CategoryTree(roots, {n.slug: n for n in by_id.values()}, by_id)


def list_products(filters: ProductFilters, tree: CategoryTree | None = None) -> ProductPage:
    """One page of active products matching the filters, with the total (two queries)."""
    stmt = select(Product.id).where(Product.active.is_(True))
    if filters.category:
        tree = tree or category_tree()
        node = tree.by_slug.get(filters.category)
        if node is None:
            raise NotFound(f"There is no category {filters.category!r}.", field="category")
        stmt = stmt.where(Product.category_id.in_(tree.descendant_ids(node)))
    if filters.min_price is not None:
        stmt = stmt.where(Product.price >= filters.min_price)
    if filters.max_price is not None:
        stmt = stmt.where(Product.price <= filters.max_price)
    if filters.in_stock:
        stmt = stmt.where(exists().where(
            and_(Variant.product_id == Product.id, Variant.stock_quantity > 0)))
    score = None
    if filters.q:
        stmt, score = search.apply(stmt, filters.q)

    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    order = _ordering(filters.sort, score)
    ids_page = stmt.order_by(*order).limit(filters.per_page).offset(
        (filters.page - 1) * filters.per_page)
    items = _cards(ids_page) if total else []
    return ProductPage(items, filters.page, filters.per_page, total)


def _ordering(sort: str, score):
    if sort == "relevance" and score is not None:
        return [score.desc(), Product.id.desc()]
    return {
        "price": [Product.price.asc(), Product.id.asc()],
        "-price": [Product.price.desc(), Product.id.desc()],
        "name": [Product.name.asc(), Product.id.asc()],
        "-name": [Product.name.desc(), Product.id.desc()],
    }.get(sort, [Product.created_at.desc(), Product.id.desc()])


def _cards(ids_stmt) -> list[ProductCard]:
    """The cards for a page of product ids, in that order, in one query."""
    page = ids_stmt.add_columns(Product.slug, Product.name, Product.price,
                                Product.rating_average, Product.rating_count,
                                Product.category_id).subquery("page")
    first_image = (select(ProductImage.path, ProductImage.alt)
                   .where(ProductImage.product_id == page.c.id)
                   .order_by(ProductImage.position, ProductImage.id).limit(1))
    default_variant = (select(Variant.id).where(Variant.product_id == page.c.id)
                       .order_by(Variant.position, Variant.id).limit(1))
    stmt = select(
        page.c.id, page.c.slug, page.c.name, page.c.price, page.c.rating_average,
        page.c.rating_count,
        first_image.with_only_columns(ProductImage.path).scalar_subquery().label("image_path"),
        first_image.with_only_columns(ProductImage.alt).scalar_subquery().label("image_alt"),
        exists().where(and_(Variant.product_id == page.c.id, Variant.stock_quantity > 0))
        .label("in_stock"),
        select(func.min(Variant.compare_at_price)).where(Variant.product_id == page.c.id)
        .scalar_subquery().label("compare_at_price"),
        default_variant.scalar_subquery().label("default_variant_id"),
        select(func.count(Variant.id)).where(Variant.product_id == page.c.id)
        .scalar_subquery().label("variant_count"),
        Category.slug.label("category_slug"), Category.name.label("category_name"),
    ).outerjoin(Category, Category.id == page.c.category_id)
    rows = db.session.execute(stmt).all()
    order = {row.id: i for i, row in enumerate(rows)}
    cards = [ProductCard(
        id=r.id, slug=r.slug, name=r.name, price=r.price,
        compare_at_price=r.compare_at_price if r.compare_at_price and r.compare_at_price > r.price
        else None,
        image_path=r.image_path, image_alt=r.image_alt or r.name, in_stock=bool(r.in_stock),
        rating_average=r.rating_average, rating_count=r.rating_count or 0,
        default_variant_id=r.default_variant_id, variant_count=r.variant_count or 0,
        category_slug=r.category_slug, category_name=r.category_name) for r in rows]
    cards.sort(key=lambda c: order[c.id])
    return cards


def get_product(key: str | int, *, include_inactive: bool = False) -> Product:
    """A product by id or slug, with its images, variants and category (three queries)."""
    stmt = select(Product).options(selectinload(Product.images), selectinload(Product.variants),
                                   selectinload(Product.category))
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        stmt = stmt.where(Product.id == int(key))
    else:
        stmt = stmt.where(Product.slug == key)
    product = db.session.execute(stmt).scalar_one_or_none()
    if product is None or (not product.active and not include_inactive):
        raise NotFound("That product does not exist or is no longer sold.")
    return product


def load_products(ids: list[int]) -> list[Product]:
    """Full products (images, variants, category) for a page of ids, in that order, in four
    queries: the API lists products in their full shape."""
    if not ids:
        return []
    stmt = select(Product).options(selectinload(Product.images), selectinload(Product.variants),
                                   selectinload(Product.category)).where(Product.id.in_(ids))
    found = {p.id: p for p in db.session.execute(stmt).scalars()}
    return [found[i] for i in ids if i in found]


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
