"""Test data as plain functions. Each writes through the models and commits."""

from __future__ import annotations

import itertools
from decimal import Decimal

from shop.extensions import db
from shop.models import Category, Coupon, Product, ProductImage, StockAdjustment, User, Variant
from shop.services import accounts
from shop.services.catalog import refresh_product_prices

_seq = itertools.count(1)
PASSWORD = "correct-horse-9"


def category(
    name: str | None = None, parent: Category | None = None, slug: str | None = None
) -> Category:
    n = next(_seq)
    name = name or f"Category {n}"
    item = Category(
        name=name,
        slug=slug or f"{name.lower().replace(' ', '-')}-{n}",
        parent_id=parent.id if parent else None,
        position=n,
    )
    db.session.add(item)
    db.session.commit()
    return item


def product(
    name: str | None = None,
    *,
    price: str | Decimal = "10.00",
    stock: int = 10,
    category: Category | None = None,
    variants: list[dict] | None = None,
    active: bool = True,
    description: str = "",
    slug: str | None = None,
    image: str | None = "img/products/mugs.svg",
) -> Product:
    """A product; `variants` is a list of dicts (options, price, stock, sku) or one default."""
    n = next(_seq)
    name = name or f"Product {n}"
    item = Product(
        name=name,
        slug=slug or f"product-{n}",
        description=description or name,
        category_id=category.id if category else None,
        active=active,
    )
    db.session.add(item)
    db.session.flush()
    if image:
        db.session.add(ProductImage(product_id=item.id, path=image, alt=name, position=0))
    specs = variants or [{"options": {}, "price": price, "stock": stock}]
    for pos, spec in enumerate(specs):
        variant = Variant(
            product_id=item.id,
            sku=spec.get("sku") or f"SKU-{n}-{pos}",
            options=spec.get("options", {}),
            price=Decimal(str(spec.get("price", price))),
            compare_at_price=spec.get("compare_at_price"),
            stock_quantity=spec.get("stock", stock),
            low_stock_threshold=spec.get("low_stock_threshold", 5),
            position=pos,
        )
        db.session.add(variant)
        db.session.flush()
        db.session.add(
            StockAdjustment(
                variant_id=variant.id, delta=variant.stock_quantity, reason="initial stock"
            )
        )
    db.session.flush()
    refresh_product_prices([item.id])
    db.session.commit()
    db.session.refresh(item)
    return item


def variant_of(item: Product, index: int = 0) -> Variant:
    return sorted(item.variants, key=lambda v: v.position)[index]


def user(
    email: str | None = None,
    *,
    password: str = PASSWORD,
    role: str = "customer",
    name: str = "Test Customer",
) -> User:
    email = email or f"user{next(_seq)}@example.com"
    return accounts.register(email, password, name=name, role=role)


def coupon(code: str = "SAVE10", kind: str = "percent", value: str = "10", **fields) -> Coupon:
    fields.setdefault("active", True)
    item = Coupon(code=code.upper(), kind=kind, value=Decimal(value), **fields)
    db.session.add(item)
    db.session.commit()
    return item


ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical St",
    "line2": "",
    "city": "London",
    "region": "",
    "postal_code": "N1 7AA",
    "country": "GB",
    "phone": "+44 20 7946 0000",
}
