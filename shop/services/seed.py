"""Demo and benchmark data. `demo()` is idempotent: it adds only what is missing."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import func, insert, select

from ..extensions import db
from ..models import Category, Coupon, Product, ProductImage, StockAdjustment, Variant, utcnow
from . import cache, catalog_state, search
from .catalog import refresh_product_prices
from .database import write_transaction
from .money import WHOLE, quantize, unit

# (top-level slug, name, description, [(child slug, child name, nouns, base price)])
TREE = [
    (
        "clothing",
        "Clothing",
        "Soft basics and everyday layers.",
        [
            (
                "t-shirts",
                "T-shirts",
                [
                    "Tee",
                    "Crew Tee",
                    "Pocket Tee",
                    "V-neck Tee",
                    "Long-sleeve Tee",
                    "Boxy Tee",
                    "Henley",
                    "Raglan Tee",
                ],
                22,
            ),
            (
                "hoodies",
                "Hoodies & Sweatshirts",
                ["Hoodie", "Zip Hoodie", "Crewneck Sweatshirt", "Half-zip", "Fleece", "Cardigan"],
                58,
            ),
            (
                "socks",
                "Socks",
                [
                    "Crew Socks",
                    "Ankle Socks",
                    "Wool Socks",
                    "Hiking Socks",
                    "Dress Socks",
                    "Sleep Socks",
                ],
                12,
            ),
        ],
    ),
    (
        "home",
        "Home",
        "Things that make a place feel like yours.",
        [
            (
                "mugs",
                "Mugs & Cups",
                [
                    "Mug",
                    "Espresso Cup",
                    "Travel Mug",
                    "Tumbler",
                    "Latte Bowl",
                    "Teacup",
                    "Camp Mug",
                ],
                16,
            ),
            (
                "candles",
                "Candles",
                [
                    "Candle",
                    "Tin Candle",
                    "Pillar Candle",
                    "Taper Set",
                    "Votive Set",
                    "Jar Candle",
                    "Wax Melts",
                ],
                24,
            ),
            (
                "blankets",
                "Blankets & Throws",
                ["Throw", "Wool Blanket", "Picnic Blanket", "Knit Throw", "Quilt", "Cushion Cover"],
                79,
            ),
        ],
    ),
    (
        "outdoors",
        "Outdoors",
        "Gear for trails, parks and long weekends.",
        [
            (
                "backpacks",
                "Backpacks",
                ["Daypack", "Rolltop Pack", "Hip Pack", "Travel Pack", "Sling Bag", "Tote Pack"],
                89,
            ),
            (
                "bottles",
                "Water Bottles",
                [
                    "Bottle",
                    "Insulated Bottle",
                    "Trail Flask",
                    "Sport Bottle",
                    "Growler",
                    "Kids Bottle",
                ],
                28,
            ),
            (
                "camping",
                "Camping",
                ["Lantern", "Hammock", "Camp Stool", "Headlamp", "Firestarter Kit", "Camp Cookset"],
                45,
            ),
        ],
    ),
    (
        "stationery",
        "Stationery",
        "Paper goods for planners and doodlers.",
        [
            (
                "notebooks",
                "Notebooks",
                [
                    "Notebook",
                    "Dot Grid Journal",
                    "Sketchbook",
                    "Pocket Notebook",
                    "Planner",
                    "Field Notes Set",
                    "Index Cards",
                ],
                14,
            ),
            (
                "pens",
                "Pens & Pencils",
                [
                    "Fountain Pen",
                    "Gel Pen Set",
                    "Pencil Set",
                    "Brush Pen",
                    "Ballpoint",
                    "Fineliner Set",
                    "Highlighters",
                ],
                9,
            ),
            (
                "prints",
                "Art Prints",
                ["Poster", "Art Print", "Map Print", "Botanical Print", "Postcard Set", "Calendar"],
                30,
            ),
        ],
    ),
    (
        "kitchen",
        "Kitchen",
        "Tools and tableware for everyday cooking.",
        [
            (
                "cookware",
                "Cookware",
                ["Skillet", "Dutch Oven", "Saucepan", "Wok", "Griddle", "Sheet Pan", "Stockpot"],
                64,
            ),
            (
                "tableware",
                "Tableware",
                [
                    "Plate Set",
                    "Bowl Set",
                    "Serving Board",
                    "Salad Bowl",
                    "Cutlery Set",
                    "Linen Napkins",
                    "Tablecloth",
                ],
                34,
            ),
            (
                "coffee",
                "Coffee & Tea",
                [
                    "Pour-over Set",
                    "French Press",
                    "Tea Tin",
                    "Coffee Grinder",
                    "Kettle",
                    "Cold Brew Jar",
                    "Matcha Set",
                ],
                38,
            ),
        ],
    ),
]
ADJECTIVES = [
    "Everyday",
    "Classic",
    "Heritage",
    "Alpine",
    "Coastal",
    "Midnight",
    "Sunrise",
    "Harbor",
    "Meadow",
    "Canyon",
    "Nordic",
    "Urban",
    "Prairie",
    "Cedar",
    "Juniper",
    "Granite",
    "Willow",
    "Summit",
    "Driftwood",
    "Marigold",
]
MATERIALS = [
    "Organic Cotton",
    "Merino",
    "Stoneware",
    "Recycled",
    "Linen",
    "Enamel",
    "Oak",
    "Cast Iron",
    "Canvas",
    "Bamboo",
    "Copper",
    "Waxed Cotton",
]
COLOURS = ["Black", "Navy", "Sand", "Forest", "Rust", "Stone"]
SIZES = ["S", "M", "L", "XL"]
SIZED = {"t-shirts", "hoodies", "socks"}
COLOURED = {"t-shirts", "hoodies", "mugs", "bottles", "backpacks", "blankets"}
PALETTE = [
    "#e76f51",
    "#2a9d8f",
    "#264653",
    "#e9c46a",
    "#f4a261",
    "#6d597a",
    "#457b9d",
    "#8ab17d",
    "#b56576",
    "#3d405b",
    "#81b29a",
    "#f2cc8f",
    "#118ab2",
    "#ef476f",
    "#073b4c",
]


def _priced(amount: Decimal) -> Decimal:
    """A demo price (written as dollars: 24.99) in the shop's currency: the same figure in a
    currency with cents, a hundred times it in whole units in a zero-decimal one (¥2,499)."""
    currency = current_app.config["CURRENCY"]
    return quantize(amount * 100, currency) if unit(currency) == WHOLE else amount


def is_empty() -> bool:
    return not db.session.execute(select(func.count(Product.id))).scalar_one()


def demo() -> str:
    """The demo catalogue: ~100 products in a two-level tree, variants, images, stock, and the
    WELCOME10 coupon. Running it again adds nothing that is already there."""
    rng = random.Random(20261121)
    created_products = 0
    with write_transaction():
        now = utcnow()
        for top_pos, (slug, name, desc, children) in enumerate(TREE):
            top = _category(slug, name, desc, None, top_pos)
            for child_pos, (cslug, cname, nouns, base) in enumerate(children):
                child = _category(
                    cslug, cname, f"{cname} from our {name.lower()} range.", top.id, child_pos
                )
                for i, noun in enumerate(nouns):
                    adjective = ADJECTIVES[(child_pos * 7 + i * 3 + top_pos) % len(ADJECTIVES)]
                    material = MATERIALS[(i + top_pos * 2 + child_pos) % len(MATERIALS)]
                    pname = f"{adjective} {material} {noun}"
                    pslug = _slugify(pname)
                    if db.session.execute(select(Product.id).where(Product.slug == pslug)).first():
                        continue
                    created_products += 1
                    product = Product(
                        slug=pslug,
                        name=pname,
                        category_id=child.id,
                        active=True,
                        created_at=now - timedelta(hours=created_products * 7),
                        description=_description(pname, noun, material, cname, rng),
                    )
                    db.session.add(product)
                    db.session.flush()
                    db.session.add(
                        ProductImage(
                            product_id=product.id,
                            path=f"img/products/{cslug}.svg",
                            alt=f"{pname}, illustration",
                            position=0,
                        )
                    )
                    price = (
                        Decimal(base) + Decimal(rng.choice([0, 2, 4, 6, 10, 15])) - Decimal("0.01")
                    )
                    on_sale = rng.random() < 0.2
                    for v_pos, options in enumerate(_variant_options(cslug, i, rng)):
                        stock = _stock(created_products, v_pos, rng)
                        sku = f"{cslug[:4].upper()}-{product.id:04d}-{v_pos + 1:02d}"
                        bump = Decimal(4) if options.get("size") == "XL" else Decimal(0)
                        # From the variant's own price: a compare-at price is higher than the
                        # price (an XL's $15.99 had the "was" $14.99 of the other sizes).
                        compare = (
                            ((price + bump) * Decimal("1.25")).quantize(Decimal("1"))
                            - Decimal("0.01")
                            if on_sale
                            else None
                        )
                        variant = Variant(
                            product_id=product.id,
                            sku=sku,
                            options=options,
                            price=_priced(price + bump),
                            compare_at_price=_priced(compare) if compare else None,
                            stock_quantity=stock,
                            low_stock_threshold=5,
                            position=v_pos,
                        )
                        db.session.add(variant)
                        db.session.flush()
                        db.session.add(
                            StockAdjustment(
                                variant_id=variant.id, delta=stock, reason="initial stock"
                            )
                        )
        db.session.flush()
        refresh_product_prices()
        if db.session.execute(select(Coupon.id).where(Coupon.code == "WELCOME10")).first() is None:
            db.session.add(
                Coupon(code="WELCOME10", kind="percent", value=Decimal("10"), active=True)
            )
    cache.catalog_changed()
    total = db.session.execute(select(func.count(Product.id))).scalar_one()
    return f"{created_products} products added, {total} in the catalogue; coupon WELCOME10."


def _category(slug: str, name: str, desc: str, parent_id: int | None, position: int) -> Category:
    category = db.session.execute(
        select(Category).where(Category.slug == slug)
    ).scalar_one_or_none()
    if category is None:
        category = Category(
            slug=slug, name=name, description=desc, parent_id=parent_id, position=position
        )
        db.session.add(category)
        db.session.flush()
    return category


def _slugify(text: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def _description(name: str, noun: str, material: str, category: str, rng: random.Random) -> str:
    traits = rng.sample(
        [
            "built to last",
            "easy to care for",
            "made in small batches",
            "designed in our studio",
            "a customer favourite",
            "gift-ready",
            "ethically sourced",
            "light and durable",
        ],
        3,
    )
    return (
        f"The {name} is our take on the {noun.lower()}: {material.lower()}, "
        f"{traits[0]} and {traits[1]}.\n\n"
        f"Part of our {category.lower()} collection, it is {traits[2]}. "
        f"Free returns within 30 days."
    )


def _variant_options(category_slug: str, index: int, rng: random.Random) -> list[dict]:
    if category_slug in SIZED:
        colours = rng.sample(COLOURS, 2) if index % 2 == 0 else [rng.choice(COLOURS)]
        return [{"size": s, "colour": c} for c in colours for s in SIZES]
    if category_slug in COLOURED and index % 2 == 1:
        return [{"colour": c} for c in rng.sample(COLOURS, 3)]
    return [{}]


def _stock(product_number: int, variant_position: int, rng: random.Random) -> int:
    if product_number % 17 == 0:
        return 0  # a few sold-out products
    if product_number % 11 == 0 and variant_position == 0:
        return rng.randint(1, 4)  # a few running low
    if variant_position == 3 and product_number % 5 == 0:
        return 0  # a sold-out size
    return rng.randint(8, 120)


def bulk_products(count: int, batch: int = 5000) -> int:
    """Add `count` generated products (one variant and one image each) quickly, for benchmarks."""
    rng = random.Random(count)
    with write_transaction():
        leaves = list(
            db.session.execute(
                select(Category.id, Category.slug).where(Category.parent_id.is_not(None))
            ).all()
        )
    if not leaves:
        demo()
        with write_transaction():
            leaves = list(
                db.session.execute(
                    select(Category.id, Category.slug).where(Category.parent_id.is_not(None))
                ).all()
            )
    nouns = [noun for _, _, _, children in TREE for _, _, ns, _ in children for noun in ns]
    start_id = (db.session.execute(select(func.max(Product.id))).scalar() or 0) + 1
    start_variant = (db.session.execute(select(func.max(Variant.id))).scalar() or 0) + 1
    now = utcnow()
    done = 0
    while done < count:
        size = min(batch, count - done)
        products, variants, images, ledger = [], [], [], []
        for k in range(size):
            n = done + k
            pid, vid = start_id + n, start_variant + n
            leaf = leaves[n % len(leaves)]
            name = f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {rng.choice(nouns)} {pid}"
            price = _priced(Decimal(rng.randint(3, 400)) + Decimal("0.99"))
            stock = 0 if n % 13 == 0 else rng.randint(1, 200)
            products.append(
                {
                    "id": pid,
                    "slug": f"item-{pid}",
                    "name": name,
                    "description": f"{name}: {rng.choice(MATERIALS).lower()} "
                    f"{rng.choice(nouns).lower()}, {rng.choice(ADJECTIVES).lower()} "
                    f"style.",
                    "category_id": leaf.id,
                    "active": True,
                    "price": price,
                    "rating_count": 0,
                    "created_at": now - timedelta(minutes=n),
                    # The one image below is the card's, and the name's sort key
                    # (catalog_state keeps them for the ORM's writes; these Core inserts
                    # write them themselves).
                    "card_image_path": f"img/products/{leaf.slug}.svg",
                    "card_image_alt": name,
                    "name_key": catalog_state.name_key(name),
                }
            )
            variants.append(
                {
                    "id": vid,
                    "product_id": pid,
                    "sku": f"GEN-{pid}",
                    "options": {},
                    "price": price,
                    "stock_quantity": stock,
                    "low_stock_threshold": 5,
                    "position": 0,
                }
            )
            images.append(
                {
                    "product_id": pid,
                    "path": f"img/products/{leaf.slug}.svg",
                    "alt": name,
                    "position": 0,
                }
            )
            ledger.append(
                {"variant_id": vid, "delta": stock, "reason": "initial stock", "created_at": now}
            )
        with write_transaction():
            db.session.execute(insert(Product), products)
            db.session.execute(insert(Variant), variants)
            db.session.execute(insert(ProductImage), images)
            db.session.execute(insert(StockAdjustment), ledger)
            search.add_products(db.session.connection(),
                                ((p["id"], p["name"], p["description"]) for p in products))
        done += size
    with write_transaction():
        catalog_state.recount_products(db.session.connection())
    cache.catalog_changed()
    return done
