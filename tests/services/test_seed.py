"""The demo seed is idempotent and complete; the bulk seed is fast and searchable."""
from __future__ import annotations

import time

from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Category, Coupon, Product, ProductImage, StockAdjustment, Variant
from shop.services import catalog


def counts():
    return tuple(db.session.execute(select(func.count()).select_from(model)).scalar_one()
                 for model in (Category, Product, Variant, ProductImage, Coupon, StockAdjustment))


def test_demo_seed_is_idempotent_and_complete(app, runner):
    result = runner.invoke(args=["seed"])
    assert result.exit_code == 0, result.output
    first = counts()
    assert 95 <= first[1] <= 110  # about 100 products
    assert runner.invoke(args=["seed"]).exit_code == 0
    assert counts() == first
    # a two-level tree, variants with options, low and zero stock, local images, the coupon
    roots = db.session.execute(select(func.count()).where(Category.parent_id.is_(None))).scalar()
    assert 3 <= roots < first[0]
    assert db.session.execute(select(func.count()).where(Variant.stock_quantity == 0)).scalar() > 0
    assert db.session.execute(select(func.count()).where(
        Variant.stock_quantity.between(1, 4))).scalar() > 0
    assert db.session.execute(select(func.count()).where(
        func.length(Variant.sku) > 0, Variant.position > 0)).scalar() > 0
    assert not db.session.execute(select(ProductImage).where(
        ProductImage.path.like("http%"))).first()
    welcome = db.session.execute(select(Coupon).where(Coupon.code == "WELCOME10")).scalar_one()
    assert (welcome.kind, welcome.value, welcome.usage_limit, welcome.min_subtotal) == (
        "percent", 10, None, None)
    # every product's listed price is its lowest variant price
    for product in db.session.execute(select(Product)).scalars():
        assert product.price == min(v.price for v in product.variants)
    # a compare-at ("was") price is above the price (a sock's XL was $15.99, "was" $14.99)
    compared = db.session.execute(select(Variant.sku, Variant.price, Variant.compare_at_price)
                                  .where(Variant.compare_at_price.is_not(None))).all()
    assert compared and [row for row in compared if row[2] <= row[1]] == []
    assert_card_images_are_first_images()
    assert_name_keys_are_the_names()
    assert_api_examples_name_demo_records()


def assert_api_examples_name_demo_records() -> None:
    """docs/API.md's examples run against `make run`'s demo data: the product slugs, SKUs,
    variant ids, categories and coupon they name exist there (they named a "linen-shirt" and
    a "SHIRT-M" that did not)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "API.md").read_text()
    slugs = set(re.findall(r"/api/v1/products/([a-z0-9-]+)", doc))
    skus = set(re.findall(r'"sku": "([^"]+)"', doc))
    variant_ids = {int(v) for v in re.findall(r'"variant_id": (\d+)', doc)}
    categories = set(re.findall(r"/api/v1/products\?category=([a-z0-9-]+)", doc))
    codes = set(re.findall(r'"code": "([A-Z0-9]+)"', doc))
    assert slugs and skus and variant_ids and categories and codes
    assert set(db.session.execute(select(Product.slug).where(Product.slug.in_(slugs)))
               .scalars()) == slugs
    # SKUs and variant ids follow the rows' ids, which start at 1 in a new database such as
    # `make run`'s (not in a MySQL test database whose counters earlier tests moved on).
    if db.session.execute(select(func.min(Product.id))).scalar_one() == 1:
        assert set(db.session.execute(select(Variant.sku).where(Variant.sku.in_(skus)))
                   .scalars()) == skus
        assert set(db.session.execute(select(Variant.id).where(Variant.id.in_(variant_ids)))
                   .scalars()) == variant_ids
    assert set(db.session.execute(select(Category.slug).where(Category.slug.in_(categories)))
               .scalars()) == categories
    assert set(db.session.execute(select(Coupon.code).where(Coupon.code.in_(codes)))
               .scalars()) == codes


def assert_card_images_are_first_images() -> None:
    """Each product's card image is its first image by position (or none without images)."""
    for product in db.session.execute(select(Product)).scalars():
        images = sorted(product.images, key=lambda i: (i.position, i.id))
        expected = (images[0].path, images[0].alt) if images else (None, None)
        assert (product.card_image_path, product.card_image_alt) == expected, product.slug


def assert_name_keys_are_the_names() -> None:
    """Each product's name sort key is its name's (catalog_state.name_key), none empty."""
    from shop.services.catalog_state import name_key

    rows = db.session.execute(select(Product.name, Product.name_key)).all()
    assert rows and [(name, key) for name, key in rows if not key or key != name_key(name)] == []


def test_seed_if_empty_leaves_an_existing_shop_alone(app, runner):
    runner.invoke(args=["seed"])
    before = counts()
    result = runner.invoke(args=["seed-if-empty"])
    assert "not seeding" in result.output and counts() == before


def test_bulk_seed_adds_searchable_products(app, runner):
    started = time.perf_counter()
    result = runner.invoke(args=["seed", "--products", "2000"])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert db.session.execute(select(func.count(Product.id))).scalar_one() >= 2000
    assert elapsed < 30
    filters, errors = catalog.parse_filters({"q": "mug"})
    assert not errors
    page = catalog.list_products(filters)
    assert page.total > 0 and all("mug" in card.name.lower() for card in page.items)
    # the bulk seed writes each product's card image with the product (Core inserts)
    assert all(card.image_path and card.image_path.startswith("img/products/")
               for card in page.items)
    db.session.expire_all()
    assert_card_images_are_first_images()
    # and each product's name sort key: the name sorts list the generated products
    assert_name_keys_are_the_names()
    filters, _errors = catalog.parse_filters({"sort": "name", "per_page": "100"})
    listed = [card.name for card in catalog.list_products(filters).items]
    assert listed == sorted(listed, key=str.lower)


def test_a_yen_shop_is_seeded_in_whole_yen(make_app):
    """A shop in JPY was seeded with ¥24.99 prices: amounts a yen shop cannot show or
    charge. Its demo and bulk prices are whole yen, a hundred times the dollar figures."""
    app = make_app(CURRENCY="JPY")
    with app.app_context():
        runner = app.test_cli_runner()
        assert runner.invoke(args=["seed"]).exit_code == 0
        assert runner.invoke(args=["seed", "--products", "50"]).exit_code == 0
        prices = [price for row in db.session.execute(
            select(Variant.price, Variant.compare_at_price)) for price in row if price is not None]
        assert len(prices) > 150
        assert all(price == price.to_integral_value() for price in prices)
        assert min(prices) >= 300  # not 3.99
