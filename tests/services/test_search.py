"""Product search (shop.services.search behind catalog.list_products), on SQLite (FTS5) and on
MySQL (FULLTEXT): every word must match, as a prefix; name matches rank first; the index
follows product changes; whatever a shopper types is a query, never SQL or search syntax; and
the database is driven by the search index, not by a scan of the catalogue."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from shop.extensions import db
from shop.models import Product
from shop.services import catalog, search
from shop.services.database import write_transaction
from tests import factories as f


def find(q: str, **args: str) -> catalog.ProductPage:
    filters, errors = catalog.parse_filters({"q": q, **args})
    assert not errors
    return catalog.list_products(filters)


def names(page: catalog.ProductPage) -> list[str]:
    return [card.name for card in page.items]


@pytest.fixture
def goods(app):
    home = f.category("Home", slug="home")
    clothing = f.category("Clothing", slug="clothing")
    return {
        "shirt": f.product("Linen Shirt", price="30.00", category=clothing, slug="linen-shirt",
                           description="A breathable shirt for summer."),
        "napkins": f.product("Table Napkins", price="12.00", category=home, slug="napkins",
                             description="Washed linen napkins, set of four."),
        "mug": f.product("Stoneware Mug", price="14.00", stock=0, category=home, slug="mug",
                         description="Holds a large coffee."),
        "tee": f.product("Cotton Tee", price="20.00", category=clothing, slug="tee",
                         description="Organic cotton, boxy fit."),
        "hidden": f.product("Linen Apron", price="25.00", category=home, slug="apron",
                            active=False),
    }


def test_name_matches_rank_above_description_matches(goods):
    page = find("linen")
    assert names(page) == ["Linen Shirt", "Table Napkins"]
    assert page.total == 2  # the inactive apron is neither listed nor counted


def test_every_word_must_match_as_a_prefix(goods):
    assert names(find("shir")) == ["Linen Shirt"]
    assert names(find("linen shirt")) == ["Linen Shirt"]
    assert names(find("lin nap")) == ["Table Napkins"]
    assert find("linen mug").total == 0
    assert names(find("STONEWARE")) == ["Stoneware Mug"]


def test_search_combines_with_filters_and_sorting(goods):
    assert names(find("linen", category="clothing")) == ["Linen Shirt"]
    assert names(find("linen", max_price="20")) == ["Table Napkins"]
    assert names(find("mug", in_stock="true")) == []
    assert names(find("linen", sort="-price")) == ["Linen Shirt", "Table Napkins"]
    assert names(find("linen", sort="price")) == ["Table Napkins", "Linen Shirt"]


def test_pages_of_results_cover_every_match_once(app):
    for i in range(11):
        f.product(f"Canvas Tote {i}", slug=f"tote-{i}", description="Sturdy canvas.")
    f.product("Paper Bag", slug="bag")
    seen = []
    for number in (1, 2, 3):
        page = find("canvas", per_page="4", page=str(number))
        assert page.total == 11 and page.pages == 3
        seen += names(page)
    assert sorted(seen) == sorted(f"Canvas Tote {i}" for i in range(11))
    beyond = find("canvas", per_page="4", page="4")
    assert beyond.items == [] and beyond.total == 11


def test_inactive_matches_ranking_first_leave_no_gap_in_pages(app):
    for i in range(5):  # the best matches, but not for sale
        f.product(f"Canvas Canvas Canvas {i}", slug=f"old-{i}", active=False)
    for i in range(6):
        f.product(f"Canvas Bag {i}", slug=f"bag-{i}", description="Plain bag.")
    first, second = find("canvas", per_page="4"), find("canvas", per_page="4", page="2")
    assert first.total == second.total == 6
    assert len(first.items) == 4 and len(second.items) == 2
    assert sorted(names(first) + names(second)) == sorted(f"Canvas Bag {i}" for i in range(6))


def test_the_index_follows_changes_to_products(goods):
    with write_transaction():
        product = db.session.get(Product, goods["mug"].id)
        product.name = "Porcelain Cup"
        product.description = "Fine porcelain."
    assert names(find("porcelain")) == ["Porcelain Cup"]
    assert find("stoneware").total == 0
    with write_transaction():
        db.session.delete(db.session.get(Product, goods["tee"].id))
    assert find("cotton").total == 0


@pytest.mark.parametrize("query", ['"', "AND OR NOT", "*", "linen)", "-(", "%_", "NEAR(a b)",
                                   "+linen -shirt", "linen*", "@2", "'; DROP TABLE products;--",
                                   "~linen <shirt", "\\", "名前", "a" * 300])
def test_any_text_is_a_query_never_syntax(goods, query):
    page = find(query[:200])
    assert page.total >= 0
    assert db.session.execute(select(Product.id).where(Product.slug == "mug")).scalar_one()


def test_operators_typed_by_a_shopper_are_plain_words(goods):
    assert names(find("+linen -shirt")) == ["Linen Shirt"]
    assert names(find('"linen" OR mug')) == []  # "or" is a word to find, not an operator


def test_words_are_tokens_without_syntax():
    assert search.tokens('Linen "shirt" -(blue)* NEAR') == ["linen", "shirt", "blue", "near"]
    assert search.tokens("a b c d e f g h i j") == list("abcdefgh")
    assert search.tokens("  ") == []


def test_the_search_index_drives_the_query(goods):
    """The matches are looked up in products by id: the catalogue is never scanned once per
    match (a plan that did took minutes on 100,000 products)."""
    captured = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "product_fts" in statement or "AGAINST" in statement:
            captured.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        find("linen")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    statement, parameters = captured[0]
    conn = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                        parameters)]
        fts = next(i for i, step in enumerate(plan) if "product_fts VIRTUAL TABLE" in step)
        products = next(i for i, step in enumerate(plan)
                        if step.startswith("SEARCH p USING INTEGER PRIMARY KEY"))
        assert fts < products, plan
        assert not any(step == "SCAN p" or step.startswith("SCAN p ") for step in plan), plan
    else:
        plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
        assert any(row["type"] == "fulltext" for row in plan), plan


def test_search_finds_words_of_the_seeded_catalogue(app):
    from shop.services import seed

    seed.bulk_products(300)
    page = find("mug", per_page="100")
    assert page.total > 0 and len(page.items) == min(page.total, 100)
    rows = db.session.execute(select(Product.name, Product.description).where(
        Product.id.in_([card.id for card in page.items]))).all()
    for name, description in rows:
        words = search.TOKEN.findall(f"{name} {description}".lower())
        assert any(word.startswith("mug") for word in words), name
