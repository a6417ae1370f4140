"""Catalogue: categories (a tree), products, their images and variants."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import created_column, money_column

# A product's sort key by name, compared byte for byte on MySQL as SQLite compares text, so
# that both order the keys alike (MySQL's own collation puts "_" after the letters, SQLite
# before them).
NAME_KEY = String(160).with_variant(mysql.VARCHAR(160, collation="utf8mb4_bin"), "mysql",
                                    "mariadb")


class Category(db.Model):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), index=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)

    parent: Mapped[Category | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Category]] = relationship(
        back_populates="parent", order_by="Category.position")

    def __str__(self) -> str:
        return self.name


class Product(db.Model):
    __tablename__ = "products"
    __table_args__ = (
        Index("ix_products_active_price", "active", "price"),
        Index("ix_products_active_name_key", "active", "name_key"),
        Index("ix_products_category_active", "category_id", "active"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(160), unique=True)
    name: Mapped[str] = mapped_column(String(160))
    # The name as the name sorts order it (services.catalog_state.name_key: no case, no
    # accents), kept with every write of the name; compared byte for byte on both databases.
    name_key: Mapped[str] = mapped_column(NAME_KEY, server_default="")
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The lowest variant price, kept by the catalog service so lists filter and sort on one table.
    price: Mapped[Decimal] = money_column(default=Decimal("0.00"))
    # Approved reviews, kept by the review service so cards need no extra query.
    rating_average: Mapped[Decimal | None] = mapped_column(db.Numeric(3, 2))
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    # The first image (by position) that cards show, kept with the images' writes
    # (services.catalog_state) so a page of cards reads no image rows. NULL: no image.
    card_image_path: Mapped[str | None] = mapped_column(String(255))
    card_image_alt: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_column()

    category: Mapped[Category | None] = relationship()
    images: Mapped[list[ProductImage]] = relationship(
        back_populates="product", order_by="ProductImage.position",
        cascade="all, delete-orphan")
    variants: Mapped[list[Variant]] = relationship(
        back_populates="product", order_by="Variant.position", cascade="all, delete-orphan")

    def __str__(self) -> str:
        return self.name


# The listing's default order, newest first, read forwards: MariaDB walks an ascending index
# backwards at a third more cost a row, and a deep page (OFFSET) walks a thousand of them.
Index("ix_products_active_newest", Product.active, Product.created_at.desc(), Product.id.desc())


class ProductImage(db.Model):
    __tablename__ = "product_images"
    # A product's images in order (and its first image, on every product card).
    __table_args__ = (
        Index("ix_product_images_product_position", "product_id", "position", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # active_history: moving an image to another product keeps the old product's id in the
    # attribute's history, so both products' card images are worked out (catalog_state).
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"),
                                            active_history=True)
    # A path under static/ ("img/products/x.svg") or an uploaded file name ("uploads/ab12.png").
    path: Mapped[str] = mapped_column(String(255))
    alt: Mapped[str] = mapped_column(String(255), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship(back_populates="images")

    def __str__(self) -> str:
        return self.path


class VariantFacts:
    """What a variant says to a shopper, for the model and for read-only views of it alike
    (needs `options`, `stock_quantity`, `low_stock_threshold`)."""

    @property
    def label(self) -> str:
        """Option values as a shopper reads them: "M / Blue", or "Default"."""
        return " / ".join(str(v) for v in (self.options or {}).values()) or "Default"

    @property
    def in_stock(self) -> bool:
        return self.stock_quantity > 0

    @property
    def low_stock(self) -> bool:
        return 0 < self.stock_quantity <= self.low_stock_threshold

    @property
    def stock_status(self) -> str:
        """The stock as a shopper reads it: "In stock", "Only 3 left" or "Out of stock"."""
        if not self.in_stock:
            return "Out of stock"
        if self.low_stock:
            return f"Only {self.stock_quantity} left"
        return "In stock"


class Variant(VariantFacts, db.Model):
    __tablename__ = "variants"
    __table_args__ = (
        CheckConstraint("stock_quantity >= 0", name="stock_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        Index("ix_variants_product_stock", "product_id", "stock_quantity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    price: Mapped[Decimal] = money_column()
    compare_at_price: Mapped[Decimal | None] = money_column(nullable=True)
    stock_quantity: Mapped[int] = mapped_column(Integer, default=0)
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=5)
    position: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship(back_populates="variants")

    def __str__(self) -> str:
        return self.sku


class StockAdjustment(db.Model):
    """Units received or removed by staff (initial stock included): the stock ledger."""

    __tablename__ = "stock_adjustments"

    id: Mapped[int] = mapped_column(primary_key=True)
    variant_id: Mapped[int] = mapped_column(
        ForeignKey("variants.id", ondelete="CASCADE"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(120), default="")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_column()


class CatalogState(db.Model):
    """Facts every catalogue page needs, kept current by the writes that change them
    (services.catalog_state), so a page reads them instead of working them out: the category
    tree's revision (a new random number whenever a category changes) and the number of
    active products."""

    __tablename__ = "catalog_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


# Terms are compared byte for byte on MySQL: a case- or accent-insensitive collation would make
# two words the shop tells apart one key, and its prefix ranges would not be byte prefixes.
TERM = String(40).with_variant(mysql.VARCHAR(40, collation="utf8mb4_bin"), "mysql", "mariadb")


class SearchTerm(db.Model):
    """A word (two letters or more) of an active product's name or description, with its
    weight for ranking: the product search (services.search) reads these, on SQLite and MySQL.
    Kept in the transaction of every product write."""

    __tablename__ = "search_terms"
    __table_args__ = (
        # A term's products best first (weight, then newest): the top page without a sort.
        Index("ix_search_terms_rank", "term", "weight", "product_id"),
        Index("ix_search_terms_product_id", "product_id"),
        # SQLite: rows stored in key order with their weight (as InnoDB does), so a term's rows
        # are together and a lookup by (term, product) needs no second read.
        {"sqlite_with_rowid": False},
    )

    term: Mapped[str] = mapped_column(TERM, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    weight: Mapped[int] = mapped_column(SmallInteger)


# A bitmap of product ids: up to 16 MB on MySQL (a BLOB stops at 64 KB, about 500,000 ids).
BITMAP = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


class SearchPosting(db.Model):
    """A search term's products, as search_terms has them, a row per term: the ids as three
    roaring bitmaps by weight (services.postings). A search counts and ranks its matches from
    these in memory. Kept in the transaction of every product write, with search_terms."""

    __tablename__ = "search_postings"

    term: Mapped[str] = mapped_column(TERM, primary_key=True)
    # Weight 11 (the name and the description), 10 (the name only), 1 (the description only).
    in_both: Mapped[bytes] = mapped_column(BITMAP)
    in_name: Mapped[bytes] = mapped_column(BITMAP)
    in_description: Mapped[bytes] = mapped_column(BITMAP)
