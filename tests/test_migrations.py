"""The Alembic history upgrades an empty database, matches the models, and downgrades."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from shop.extensions import db


def _diff(connection):
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, db.metadata)


def _fresh_database_url(tmp_path) -> str:
    """An empty database of this run's kind: a fresh MySQL database (dropped and made again)
    with TEST_DATABASE_URL, else a SQLite file."""
    import os

    from tests.conftest import MYSQL_URL, _mysql_database_url

    if MYSQL_URL:
        return _mysql_database_url(MYSQL_URL, f"shop_mig_{os.environ.get('SHOP_TEST_DB_TAG', '')}"
                                   f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
    return f"sqlite:///{tmp_path / 'fresh.db'}"


def test_models_match_migrations(app):
    """The session database was built by `flask db upgrade`; the models must agree with it."""
    with db.engine.connect() as connection:
        assert _diff(connection) == []


def test_search_index_exists(app):
    """Both databases search the shop's own terms (migrations 0003, 0004): no FULLTEXT index,
    no FTS5 table; on SQLite the terms are stored in key order (WITHOUT ROWID)."""
    with db.engine.connect() as connection:
        indexes = {i["name"] for i in inspect(connection).get_indexes("search_terms")}
        assert {"ix_search_terms_rank", "ix_search_terms_product_id"} <= indexes
        if connection.dialect.name == "sqlite":
            names = {r[0] for r in connection.execute(text(
                "SELECT name FROM sqlite_master WHERE name LIKE '%fts%'"))}
            assert names == set()
            table_sql = connection.execute(text(
                "SELECT sql FROM sqlite_master WHERE name = 'search_terms'")).scalar_one()
            assert "WITHOUT ROWID" in table_sql
        else:
            assert "ft_products_name_description" not in {
                i["name"] for i in inspect(connection).get_indexes("products")}


def test_sqlite_products_get_their_terms_on_upgrade(tmp_path):
    """Migration 0004 fills search_terms from the products a SQLite database already has (the
    active ones), and going back down restores FTS5 with those products in it."""
    from shop import create_app

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.db'}"},
                       env="testing")
    with fresh.app_context():
        upgrade(revision="0003")
        with db.engine.begin() as connection:
            for pid, name, active in ((1, "Linen Shirt", 1), (2, "Café Mug", 1),
                                      (3, "Linen Apron", 0)):
                connection.execute(text(
                    "INSERT INTO products (id, slug, name, description, active, price, "
                    "rating_count, created_at) VALUES (:id, :slug, :name, 'Soft linen.', "
                    ":active, 10, 0, '2026-01-01')"),
                    {"id": pid, "slug": f"p{pid}", "name": name, "active": active})
        upgrade()
        with db.engine.connect() as connection:
            rows = set(connection.execute(text(
                "SELECT term, product_id, weight FROM search_terms")).all())
        assert rows == {("linen", 1, 11), ("shirt", 1, 10), ("soft", 1, 1), ("cafe", 2, 10),
                        ("mug", 2, 10), ("soft", 2, 1), ("linen", 2, 1)}
        downgrade(revision="0003")
        with db.engine.connect() as connection:
            found = connection.execute(text(
                "SELECT rowid FROM product_fts WHERE product_fts MATCH 'linen' "
                "ORDER BY rowid")).scalars().all()
        assert found == [1, 2, 3]
        db.engine.dispose()


def test_two_letter_terms_on_upgrade(tmp_path):
    """Migration 0005 adds the two-letter terms of the active products that have such words
    (their other terms unchanged), and going back down takes them out again."""
    from shop import create_app

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.db'}"},
                       env="testing")
    with fresh.app_context():
        upgrade(revision="0003")
        with db.engine.begin() as connection:
            for pid, name, description, active in (
                    (1, "Tall Vase", "Set of two.", 1), (2, "Café Mug", "Soft linen.", 1),
                    (3, "Go Kart", "Of oak.", 0)):
                connection.execute(text(
                    "INSERT INTO products (id, slug, name, description, active, price, "
                    "rating_count, created_at) VALUES (:id, :slug, :name, :description, "
                    ":active, 10, 0, '2026-01-01')"),
                    {"id": pid, "slug": f"p{pid}", "name": name, "description": description,
                     "active": active})
        upgrade(revision="0004")
        before = {("tall", 1, 10), ("vase", 1, 10), ("set", 1, 1), ("two", 1, 1),
                  ("cafe", 2, 10), ("mug", 2, 10), ("soft", 2, 1), ("linen", 2, 1)}

        def stored() -> set:
            with db.engine.connect() as connection:
                return set(connection.execute(text(
                    "SELECT term, product_id, weight FROM search_terms")).all())

        assert stored() == before
        upgrade(revision="0005")
        assert stored() == before | {("of", 1, 1)}
        downgrade(revision="0004")
        assert stored() == before
        db.engine.dispose()


def test_card_images_are_filled_on_upgrade(tmp_path):
    """Migration 0007 puts each product's first image (by position, then id) on its row."""
    from shop import create_app

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.db'}"},
                       env="testing")
    with fresh.app_context():
        upgrade(revision="0006")
        with db.engine.begin() as connection:
            for pid in (1, 2):
                connection.execute(text(
                    "INSERT INTO products (id, slug, name, description, active, price, "
                    "rating_count, created_at) VALUES (:id, :slug, 'P', '', 1, 10, 0, "
                    "'2026-01-01')"), {"id": pid, "slug": f"p{pid}"})
            for iid, path, position in ((1, "b.svg", 1), (2, "a.svg", 0), (3, "c.svg", 0)):
                connection.execute(text(
                    "INSERT INTO product_images (id, product_id, path, alt, position) "
                    "VALUES (:id, 1, :path, :alt, :position)"),
                    {"id": iid, "path": path, "alt": path.upper(), "position": position})
        upgrade()
        with db.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT id, card_image_path, card_image_alt FROM products ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "a.svg", "A.SVG"), (2, None, None)]
        downgrade(revision="0006")
        db.engine.dispose()


def test_emails_are_composed_on_upgrade(tmp_path):
    """Migration 0010 puts stored emails in NFC (the form normalise_email now gives), except
    one whose composed form another account already has."""
    import unicodedata

    from shop import create_app

    nfd = unicodedata.normalize("NFD", "josé@example.com")
    nfc = unicodedata.normalize("NFC", "josé@example.com")
    twin = unicodedata.normalize("NFD", "zoë@example.com")
    fresh = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.db'}"},
                       env="testing")
    with fresh.app_context():
        upgrade(revision="0009")
        with db.engine.begin() as connection:
            for uid, email in ((1, nfd), (2, twin), (3, unicodedata.normalize("NFC", twin)),
                               (4, "ada@example.com")):
                connection.execute(text(
                    "INSERT INTO users (id, email, password_hash, name, role, active, "
                    "created_at) VALUES (:id, :email, 'x', '', 'customer', 1, '2026-01-01')"),
                    {"id": uid, "email": email})
        upgrade()
        with db.engine.connect() as connection:
            rows = dict(connection.execute(text("SELECT id, email FROM users")).all())
        assert rows == {1: nfc, 2: twin, 3: unicodedata.normalize("NFC", twin),
                        4: "ada@example.com"}
        downgrade(revision="0009")
        db.engine.dispose()


def test_upgrade_from_empty_and_downgrade(tmp_path):
    """A brand-new database (its own SQLite file, or a fresh MySQL database) migrates up and
    all the way down again."""
    from shop import create_app

    url = _fresh_database_url(tmp_path)

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": url}, env="testing")
    with fresh.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {"products", "variants", "orders", "coupons", "coupon_uses", "users"} <= tables
        with db.engine.connect() as connection:
            assert _diff(connection) == []
        downgrade(revision="base")
        left = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert left == set()
        db.engine.dispose()


def test_joined_word_terms_on_upgrade(tmp_path):
    """Migration 0011 writes the terms of the active products with joined words again, now
    with the words joined ("T-Shirt": tshirt beside shirt), and the postings of the terms that
    changed (a weight too: "tshirt" in the description already), on SQLite and MySQL; the
    other products' terms stay as they were. Going back down takes the joined terms out of
    both tables."""
    import os

    from pyroaring import BitMap

    from shop import create_app
    from shop.services import search
    from tests.conftest import MYSQL_URL, _mysql_database_url

    if MYSQL_URL:
        url = _mysql_database_url(MYSQL_URL, f"shop_mig11_{os.environ.get('SHOP_TEST_DB_TAG', '')}"
                                  f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    products = ((1, "Organic T-Shirt", "Soft cotton, a tshirt for summer.", 1),
                (2, "Men's Socks", "Wool.", 1), (3, "Linen Shirt", "Breathable.", 1),
                (4, "X-Ray Poster", "Hidden.", 0))

    def stored() -> set:
        with db.engine.connect() as connection:
            return {tuple(r) for r in connection.execute(text(
                "SELECT term, product_id, weight FROM search_terms"))}

    def postings() -> dict:
        with db.engine.connect() as connection:
            return {term: tuple(sorted(BitMap.deserialize(blob)) for blob in blobs)
                    for term, *blobs in connection.execute(text(
                        "SELECT term, in_both, in_name, in_description FROM search_postings"))}

    def postings_of(rows: set) -> dict:
        found: dict = {}
        for term, pid, weight in rows:
            found.setdefault(term, ([], [], []))[{11: 0, 10: 1, 1: 2}[weight]].append(pid)
        return {term: tuple(sorted(ids) for ids in tiers) for term, tiers in found.items()}

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": url}, env="testing")
    with fresh.app_context():
        upgrade(revision="0002")
        with db.engine.begin() as connection:
            for pid, name, description, active in products:
                connection.execute(text(
                    "INSERT INTO products (id, slug, name, description, active, price, "
                    "rating_count, created_at) VALUES (:id, :slug, :name, :description, "
                    ":active, 10, 0, '2026-01-01')"),
                    {"id": pid, "slug": f"p{pid}", "name": name, "description": description,
                     "active": active})
        upgrade(revision="0010")
        before = stored()
        assert ("tshirt", 1, 1) in before and ("mens", 2, 10) not in before
        assert postings() == postings_of(before)
        upgrade()
        now = {(term, pid, weight) for pid, name, description, active in products if active
               for term, weight in search.terms(name, description).items()}
        assert stored() == now
        assert now - before == {("tshirt", 1, 11), ("mens", 2, 10)}
        assert before - now == {("tshirt", 1, 1)}
        assert postings() == postings_of(now)
        assert postings()["tshirt"] == ([1], [], [])
        downgrade(revision="0010")
        assert stored() == before
        assert postings() == postings_of(before) and "mens" not in postings()
        downgrade(revision="base")
        db.engine.dispose()


def test_a_payment_is_found_by_its_payment_intent_through_an_index(app):
    """charge.refunded names the PaymentIntent: the lookup uses an index, not a table scan."""
    from sqlalchemy import inspect

    indexes = inspect(db.engine).get_indexes("payments")
    assert any(ix["column_names"][:2] == ["provider", "provider_payment_id"] for ix in indexes)


def test_orders_get_their_ship_to_name_on_upgrade(tmp_path):
    """Migration 0019 copies the shipping address's name of the orders placed before into
    orders.ship_to_name (the back office searches it), on SQLite and on MySQL."""
    import json

    from shop import create_app

    url = _fresh_database_url(tmp_path)
    fresh = create_app({"SQLALCHEMY_DATABASE_URI": url}, env="testing")
    with fresh.app_context():
        upgrade(revision="0018")
        with db.engine.begin() as connection:
            for number, address in (("SH-1", {"name": "Zoë Ångström", "city": "Oslo"}),
                                    ("SH-2", {"name": "x" * 150}), ("SH-3", {"city": "Nowhere"})):
                connection.execute(text(
                    "INSERT INTO orders (number, email, status, currency, subtotal, discount, "
                    "shipping, tax, total, shipping_method, payment_method, shipping_address, "
                    "billing_address, stock_released, created_at, updated_at) VALUES (:n, "
                    "'a@example.com', 'pending', 'USD', 1, 0, 0, 0, 1, 'standard', 'card', :a, "
                    ":a, 0, '2026-01-01', '2026-01-01')"), {"n": number, "a": json.dumps(address)})
        upgrade()
        with db.engine.connect() as connection:
            names = dict(connection.execute(text("SELECT number, ship_to_name FROM orders")).all())
        assert names == {"SH-1": "Zoë Ångström", "SH-2": "x" * 120, "SH-3": ""}
        downgrade(revision="base")
        db.engine.dispose()


def test_folded_letter_terms_on_upgrade(tmp_path):
    """Migration 0024 writes again the terms of exactly the active products whose terms the
    new fold changes ("Straße": strasse, not straße; "foo_bar": foo and bar), found by the
    database among those with ß, Æ, Ø... or "_" in their name or description, and the
    postings of the terms that changed, on SQLite and MySQL; the search page then finds them.
    Other products are not touched: not one with only accents (Crème), nor one whose "_"
    made no term. Going back down leaves the terms folded."""
    import re

    from pyroaring import BitMap
    from sqlalchemy import event

    from shop import create_app
    from shop.services import search

    products = ((1, "Straße Sign", "Enamel.", 1), (2, "Æble Cider", "Crème of apples.", 1),
                (3, "Cable Tidy", "Model foo_bar.", 1), (4, "Café Crème Mug", "Plain.", 1),
                (5, "Linen Shirt", "Breathable.", 1), (6, "Hidden Øl", "Dark.", 0),
                (7, "Poster a_b", "Paper.", 1), (8, "Tea Mug", "Hot _ or cold.", 1),
                (9, "Kraków Map", "Łódź and Gdańsk, ØRESUND.", 1))

    def stored() -> set:
        with db.engine.connect() as connection:
            return {tuple(r) for r in connection.execute(text(
                "SELECT term, product_id, weight FROM search_terms"))}

    def postings() -> dict:
        with db.engine.connect() as connection:
            return {term: tuple(sorted(BitMap.deserialize(blob)) for blob in blobs)
                    for term, *blobs in connection.execute(text(
                        "SELECT term, in_both, in_name, in_description FROM search_postings"))}

    def postings_of(rows: set) -> dict:
        found: dict = {}
        for term, pid, weight in rows:
            found.setdefault(term, ([], [], []))[{11: 0, 10: 1, 1: 2}[weight]].append(pid)
        return {term: tuple(sorted(ids) for ids in tiers) for term, tiers in found.items()}

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": _fresh_database_url(tmp_path)},
                       env="testing")
    with fresh.app_context():
        upgrade(revision="0002")
        with db.engine.begin() as connection:
            for pid, name, description, active in products:
                connection.execute(text(
                    "INSERT INTO products (id, slug, name, description, active, price, "
                    "rating_count, created_at) VALUES (:id, :slug, :name, :description, "
                    ":active, 10, 0, '2026-01-01')"),
                    {"id": pid, "slug": f"p{pid}", "name": name, "description": description,
                     "active": active})
        upgrade(revision="0023")
        before = stored()
        assert {("straße", 1, 10), ("æble", 2, 10), ("foo_bar", 3, 1), ("a_b", 7, 10),
                ("øresund", 9, 1)} <= before
        assert postings() == postings_of(before)
        deleted: list[str] = []

        def watch(_conn, _cursor, statement, *_args) -> None:
            if statement.startswith("DELETE FROM search_terms"):
                deleted.append(statement)

        event.listen(db.engine, "before_cursor_execute", watch)
        try:
            upgrade()
        finally:
            event.remove(db.engine, "before_cursor_execute", watch)
        rewritten = {int(i) for statement in deleted
                     for i in re.findall(r"\d+", statement.split(" IN ", 1)[1])}
        assert rewritten == {1, 2, 3, 7, 9}
        now = {(term, pid, weight) for pid, name, description, active in products if active
               for term, weight in search.terms(name, description).items()}
        assert stored() == now
        assert {pid for _term, pid, _weight in now ^ before} == {1, 2, 3, 7, 9}
        assert {("strasse", 1, 10), ("aeble", 2, 10), ("foo", 3, 1), ("bar", 3, 1),
                ("lodz", 9, 1), ("oresund", 9, 1)} <= now
        assert postings() == postings_of(now)
        page = fresh.test_client().get("/products", query_string={"q": "strasse"})
        assert re.findall(r'<h3 class="card-title"><a href="/p/[^"]+">([^<]+)</a>',
                          page.get_data(as_text=True)) == ["Straße Sign"]
        downgrade(revision="0023")
        assert stored() == now and postings() == postings_of(now)
        downgrade(revision="base")
        db.engine.dispose()


def test_the_characters_0024_looks_for_are_those_whose_fold_changed():
    """Migration 0024 writes again the terms of the products with one of its CHANGED
    characters: they must be every character of a word that shop.services.search folds
    otherwise than before (0011's fold, the one before), over the whole of Unicode, and "_"
    that now separates words; and its copy of the terms must be the service's."""
    import importlib.util
    import re
    from pathlib import Path

    from shop.services import search

    def load(name: str):
        path = next(Path(__file__).parent.parent.glob(f"migrations/versions/{name}_*.py"))
        spec = importlib.util.spec_from_file_location(f"migration_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    before, now = load("0011"), load("0024")
    letter = re.compile(r"\w")
    changed = {c for c in map(chr, range(0x110000))
               if letter.match(c) and c != "_" and not "\ud800" <= c <= "\udfff"
               and before._fold(c.lower()) != search.fold(c.lower())}
    assert set(now.CHANGED) == changed | {"_"}
    texts = ["Straße STRAẞE", "Æble ǽ ᴭ Œuvre", "Øl Ǿ Łódź Đ ð Þórður Ħ ŧ ıi", "foo_bar a_b",
             "o\ufb03ce \ufb01ne T-Shirt men's", "Crème brûlée", "x" * 60 + "ß"]
    for text_ in texts:
        assert now._terms(text_, text_[::-1]) == search.terms(text_, text_[::-1]), text_


def test_rating_averages_on_a_turning_point_are_kept_below_it_on_upgrade(tmp_path):
    """Migration 0025: 17 in 11 ratings (1.545...) was kept 1.55, which the pages wrote "1.6";
    it is kept 1.54 ("1.5"), on SQLite and MySQL. An average off no such point is left as it
    was, and pending reviews count for nothing."""
    from decimal import Decimal

    from shop import create_app

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": _fresh_database_url(tmp_path)},
                       env="testing")
    with fresh.app_context():
        upgrade(revision="0024")
        with db.engine.begin() as connection:
            for pid, average, count in ((1, "1.55", 11), (2, "4.50", 2)):
                connection.execute(text(
                    "INSERT INTO products (id, slug, name, description, active, price, "
                    "rating_average, rating_count, created_at) VALUES (:id, :slug, :name, '', "
                    "1, 10, :average, :count, '2026-01-01')"),
                    {"id": pid, "slug": f"p{pid}", "name": f"Product {pid}", "average": average,
                     "count": count})
            for uid in range(1, 12):
                connection.execute(text(
                    "INSERT INTO users (id, email, password_hash, name, role, active, "
                    "created_at) VALUES (:id, :email, 'x', '', 'customer', 1, '2026-01-01')"),
                    {"id": uid, "email": f"r{uid}@example.com"})
            reviews = [(1, uid, 1 if uid <= 5 else 2, "approved") for uid in range(1, 12)]
            reviews += [(2, 1, 5, "approved"), (2, 2, 4, "approved"), (2, 3, 1, "pending")]
            for pid, uid, rating, status in reviews:
                connection.execute(text(
                    "INSERT INTO reviews (product_id, user_id, rating, title, body, status, "
                    "created_at) VALUES (:p, :u, :r, 'T', '', :s, '2026-01-01')"),
                    {"p": pid, "u": uid, "r": rating, "s": status})
        upgrade()
        with db.engine.connect() as connection:
            kept = {pid: Decimal(str(average)).quantize(Decimal("0.01")) for pid, average in
                    connection.execute(text("SELECT id, rating_average FROM products"))}
        assert kept == {1: Decimal("1.54"), 2: Decimal("4.50")}
        downgrade(revision="0024")
        db.engine.dispose()


def test_name_keys_are_filled_on_upgrade(tmp_path):
    """Migration 0026 gives every product already there its name's sort key (the service's
    name_key, which its frozen copy matches), on SQLite and MySQL, batch after batch; the listing
    then sorts "Name: A to Z" by it, case and accents aside. Going back down drops the key
    and keeps the products' variants and search terms (a copy of the table would have
    deleted them on SQLite, ON DELETE CASCADE)."""
    import importlib.util
    import re
    from pathlib import Path

    from shop import create_app
    from shop.services.catalog_state import name_key

    path = next(Path(__file__).parent.parent.glob("migrations/versions/0026_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0026", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    for text_ in ("Éclair Tin", "STRAẞE ǽ Œuvre", "Øl  Łódź\tÞórður", "ﬁne Ϲ ΣΑΣ",
                  "x" * 158 + "ßß", "  Zebra\x00mug  ", ""):
        assert migration._name_key(text_) == name_key(text_), text_

    names = ["Zebra Mug", "apple corer", "Éclair Tin", "Banana Stand", "Straße Sign",
             "Øresund Print", "eclair pan"]
    fresh = create_app({"SQLALCHEMY_DATABASE_URI": _fresh_database_url(tmp_path)},
                       env="testing")
    with fresh.app_context():
        upgrade(revision="0025")
        with db.engine.begin() as connection:
            for pid, name in enumerate(names, start=1):
                connection.execute(text(
                    "INSERT INTO products (id, slug, name, description, active, price, "
                    "rating_count, created_at) VALUES (:id, :slug, :name, '', 1, 10, 0, "
                    "'2026-01-01')"), {"id": pid, "slug": f"p{pid}", "name": name})
                connection.execute(text(
                    "INSERT INTO variants (product_id, sku, options, price, stock_quantity, "
                    "low_stock_threshold, position) VALUES (:id, :sku, '{}', 10, 1, 5, 0)"),
                    {"id": pid, "sku": f"SKU-{pid}"})
                connection.execute(text(
                    "INSERT INTO search_terms (term, product_id, weight) VALUES ('word', :id, "
                    "10)"), {"id": pid})
            # More products than one batch of the migration's (inactive: not listed).
            connection.execute(text(
                "INSERT INTO products (id, slug, name, description, active, price, "
                "rating_count, created_at) VALUES (:id, :slug, :name, '', 0, 10, 0, "
                "'2026-01-01')"), [{"id": n, "slug": f"f{n}", "name": f"FILLER Ñ {n}"}
                                   for n in range(100, 100 + migration.BATCH + 100)])
        upgrade()
        with db.engine.connect() as connection:
            keys = dict(connection.execute(text("SELECT name, name_key FROM products")).all())
            indexes = {i["name"]: i["column_names"]
                       for i in inspect(connection).get_indexes("products")}
        assert keys == {name: name_key(name) for name in keys}
        assert set(names) < set(keys) and keys["FILLER Ñ 699"] == "filler n 699"
        assert keys["Éclair Tin"] == "eclair tin" and keys["Straße Sign"] == "strasse sign"
        assert indexes["ix_products_active_name_key"] == ["active", "name_key"]
        assert "ix_products_active_name" not in indexes
        page = fresh.test_client().get("/products", query_string={"sort": "name"})
        assert re.findall(r'<h3 class="card-title"><a href="/p/[^"]+">([^<]+)</a>',
                          page.get_data(as_text=True)) == [
            "apple corer", "Banana Stand", "eclair pan", "Éclair Tin", "Øresund Print",
            "Straße Sign", "Zebra Mug"]
        downgrade(revision="0025")
        with db.engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("products")}
            indexes = {i["name"]: i["column_names"]
                       for i in inspect(connection).get_indexes("products")}
            kept = [connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("products", "variants", "search_terms")]
        assert "name_key" not in columns
        assert indexes["ix_products_active_name"] == ["active", "name"]
        assert kept == [len(keys), len(names), len(names)]
        downgrade(revision="base")
        db.engine.dispose()


def test_reviews_page_index_on_upgrade(tmp_path):
    """Migration 0027 replaces the reviews' (product_id, status) index by (product_id, status,
    created_at, id), the product page's order, on SQLite and MySQL, keeping the reviews and
    the foreign key on product_id (MySQL keeps it on the unique (product_id, user_id)); going
    back down puts the old index back."""
    from shop import create_app

    fresh = create_app({"SQLALCHEMY_DATABASE_URI": _fresh_database_url(tmp_path)},
                       env="testing")

    def state() -> tuple[dict, int, list]:
        with db.engine.connect() as connection:
            inspector = inspect(connection)
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("reviews")}
            count = connection.execute(text("SELECT count(*) FROM reviews")).scalar_one()
            keys = sorted(tuple(k["constrained_columns"])
                          for k in inspector.get_foreign_keys("reviews"))
        return indexes, count, keys

    with fresh.app_context():
        upgrade(revision="0026")
        with db.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO products (id, slug, name, name_key, description, active, price, "
                "rating_count, created_at) VALUES (1, 'p1', 'Mug', 'mug', '', 1, 10, 0, "
                "'2026-01-01')"))
            connection.execute(text(
                "INSERT INTO users (id, email, password_hash, name, role, active, "
                "session_epoch, created_at) VALUES (1, 'ada@example.com', 'x', 'Ada', "
                "'customer', 1, 0, '2026-01-01')"))
            connection.execute(text(
                "INSERT INTO reviews (product_id, user_id, rating, title, body, status, "
                "created_at) VALUES (1, 1, 5, 'Good', '', 'approved', '2026-02-01')"))
        upgrade()
        indexes, count, keys = state()
        assert indexes["ix_reviews_product_status_created"] == ["product_id", "status",
                                                                 "created_at", "id"]
        assert "ix_reviews_product_status" not in indexes
        assert count == 1 and keys == [("product_id",), ("user_id",)]
        downgrade(revision="0026")
        indexes, count, keys = state()
        assert indexes["ix_reviews_product_status"] == ["product_id", "status"]
        assert "ix_reviews_product_status_created" not in indexes
        assert count == 1 and keys == [("product_id",), ("user_id",)]
        downgrade(revision="base")
        db.engine.dispose()
