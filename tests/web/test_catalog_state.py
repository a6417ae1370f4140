"""The facts catalogue pages read instead of working out (services.catalog_state): the category
tree a worker remembers is replaced as soon as any category changes, and the listing's total
follows products added, deactivated and deleted; both whoever makes the change."""
from __future__ import annotations

import re
from functools import partial

from sqlalchemy import select, text

from shop.extensions import db
from shop.models import CatalogState, Category, Product
from shop.services import catalog_state
from shop.services.database import write_transaction
from tests import factories as f
from tests.concurrency import raised, run_concurrently

TOTAL = re.compile(r'id="results-heading"[^>]*>\s*(\d+) products?')


def _total(client, url: str = "/products") -> int:
    html = client.get(url).get_data(as_text=True)
    match = TOTAL.search(html)
    assert match, html[:500]
    return int(match.group(1))


def _state(name: str) -> int | None:
    row = db.session.get(CatalogState, name)
    db.session.rollback()
    return None if row is None else row.value


def test_a_renamed_category_shows_on_the_next_page(app, client):
    kitchen = f.category("Kitchen", slug="kitchen")
    f.product("Enamel Mug", category=kitchen, slug="enamel-mug")
    assert ">Kitchen</a>" in client.get("/products").get_data(as_text=True)
    before = _state(catalog_state.TREE)

    # As the back office does it: the ORM, in a transaction of its own.
    with write_transaction():
        db.session.get(Category, kitchen.id).name = "Cookware"
    assert _state(catalog_state.TREE) != before

    for url in ("/products", "/p/enamel-mug", "/", "/c/kitchen"):
        html = client.get(url).get_data(as_text=True)
        assert ">Cookware</a>" in html, url
        assert ">Kitchen</a>" not in html, url


def test_a_new_category_is_found_and_a_deleted_one_is_gone(app, client):
    f.category("Garden", slug="garden")
    assert client.get("/c/garden").status_code == 200
    assert client.get("/c/tools").status_code == 404  # the worker remembers a tree without it

    tools = f.category("Tools", slug="tools")
    page = client.get("/c/tools")
    assert page.status_code == 200 and ">Tools</a>" in page.get_data(as_text=True)
    assert client.get("/products?category=tools").status_code == 200

    with write_transaction():
        db.session.delete(db.session.get(Category, tools.id))
    assert client.get("/c/tools").status_code == 404
    assert "Tools" not in client.get("/products").get_data(as_text=True)


def test_the_listing_total_follows_active_products(app, client):
    items = [f.product(f"Item {i}", slug=f"item-{i}") for i in range(5)]
    assert _state(catalog_state.ACTIVE_PRODUCTS) == 5
    assert _total(client) == 5

    with write_transaction():
        db.session.get(Product, items[0].id).active = False
    assert _total(client) == 4
    with write_transaction():
        db.session.delete(db.session.get(Product, items[1].id))
    assert _total(client) == 3
    with write_transaction():
        db.session.get(Product, items[0].id).active = True
    assert _total(client) == 4
    f.product("Item 9", slug="item-9")
    assert _total(client) == 5
    # A rename is not a change of the count.
    with write_transaction():
        db.session.get(Product, items[2].id).name = "Renamed"
    assert _state(catalog_state.ACTIVE_PRODUCTS) == 5
    count = db.session.execute(select(db.func.count()).select_from(Product)
                               .where(Product.active.is_(True))).scalar_one()
    assert count == 5


def test_without_the_rows_pages_work_it_out(app, client):
    """An emptied catalog_state (a restored dump, a test) costs queries, never wrong pages."""
    kitchen = f.category("Kitchen", slug="kitchen")
    for i in range(3):
        f.product(f"Pan {i}", category=kitchen, slug=f"pan-{i}")
    with write_transaction():
        db.session.execute(text("DELETE FROM catalog_state"))
    assert _total(client) == 3
    assert ">Kitchen</a>" in client.get("/p/pan-1").get_data(as_text=True)
    with write_transaction():
        db.session.get(Category, kitchen.id).name = "Pans"
    assert ">Pans</a>" in client.get("/products").get_data(as_text=True)
    assert _state(catalog_state.TREE) is not None


def test_seeding_with_core_inserts_recounts(app, runner):
    result = runner.invoke(args=["seed", "--products", "40"])
    assert result.exit_code == 0, result.output
    active = db.session.execute(select(db.func.count()).select_from(Product)
                                .where(Product.active.is_(True))).scalar_one()
    assert _state(catalog_state.ACTIVE_PRODUCTS) == active


def test_writers_of_one_products_images_at_once_leave_its_first_image_on_the_card(app):
    """Several writers add images to one product at the same moment: each locks the product's
    row before working its card image out, so the last to commit reads everything the others
    committed and the card shows the first image by position (MySQL shows it with real row
    locks; SQLite has one writer at a time)."""
    from shop.models import ProductImage

    item = f.product("Scarf", slug="scarf", image="img/products/start.svg")
    db.session.commit()
    pid = item.id  # read here: the threads have sessions of their own
    writers, each = 6, 3

    def write(k: int) -> None:
        for i in range(each):
            with write_transaction():
                # Lower positions later: each writer's newest image goes first.
                db.session.add(ProductImage(product_id=pid, path=f"img/products/w{k}-{i}.svg",
                                            alt=f"w{k}-{i}", position=-(k * each + i)))

    assert raised(run_concurrently(app, [partial(write, k) for k in range(writers)])) == []
    row = db.session.execute(text("SELECT card_image_path, card_image_alt FROM products "
                                  "WHERE id = :id"), {"id": pid}).one()
    assert tuple(row) == (f"img/products/w{writers - 1}-{each - 1}.svg",
                          f"w{writers - 1}-{each - 1}")
