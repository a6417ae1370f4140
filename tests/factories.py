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


# Image files (built byte by byte: no imaging library is installed) ---------------------------

def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def png_bytes(width: int = 2, height: int = 2, pixels: bool = True) -> bytes:
    """An RGB PNG. With pixels=False the IDAT holds one empty row only: enough for a header
    claiming a huge size without building its pixels."""
    import struct
    import zlib

    rows = (b"\x00" + b"\x80" * 3 * width) * height if pixels else b"\x00"
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def jpeg_bytes(width: int = 2, height: int = 2) -> bytes:
    """A baseline JPEG's structure: SOI, APP0, SOF0 with the size, SOS, scan bytes, EOI."""
    import struct

    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app0 + sof0 + sos + b"\x12\xff\x00\x34" + b"\xff\xd9"


def gif_bytes(width: int = 1, height: int = 1) -> bytes:
    """A one-colour GIF89a."""
    import struct

    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00"
            + b"\xff\xff\xff" + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
            + b"\x02\x02\x44\x01\x00" + b"\x3b")


def webp_bytes(width: int = 1, height: int = 1, kind: str = "VP8L") -> bytes:
    """The start of a WebP file of the given chunk kind (VP8, VP8L or VP8X) with this size."""
    import struct

    if kind == "VP8 ":
        payload = b"\x30\x01\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(8)
    elif kind == "VP8L":
        payload = b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + bytes(5)
    else:
        payload = (b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
                   + (height - 1).to_bytes(3, "little"))
    chunk = kind.encode() + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
