"""The Alembic history upgrades an empty database, matches the models, and downgrades."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from shop.extensions import db

# Search structures the models cannot describe on every dialect (see migration 0001).
SEARCH_OBJECTS = {"product_fts", "product_fts_data", "product_fts_idx", "product_fts_content",
                  "product_fts_docsize", "product_fts_config"}


def _include(obj, name, type_, reflected, compare_to) -> bool:
    return name not in SEARCH_OBJECTS


def _diff(connection):
    context = MigrationContext.configure(connection, opts={
        "compare_type": True, "include_object": _include})
    return compare_metadata(context, db.metadata)


def test_models_match_migrations(app):
    """The session database was built by `flask db upgrade`; the models must agree with it."""
    with db.engine.connect() as connection:
        assert _diff(connection) == []


def test_search_index_exists(app):
    with db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            names = {r[0] for r in connection.execute(text(
                "SELECT name FROM sqlite_master WHERE name LIKE 'product_fts%'"))}
            assert "product_fts" in names
        else:
            # MySQL searches the shop's own terms (migration 0003), not a FULLTEXT index.
            indexes = {i["name"] for i in inspect(connection).get_indexes("search_terms")}
            assert {"ix_search_terms_rank", "ix_search_terms_product_id"} <= indexes
            assert "ft_products_name_description" not in {
                i["name"] for i in inspect(connection).get_indexes("products")}


def test_upgrade_from_empty_and_downgrade(tmp_path):
    """A brand-new database (its own SQLite file, or a fresh MySQL database) migrates up and
    all the way down again."""
    import os

    from tests.conftest import MYSQL_URL, _mysql_database_url

    if MYSQL_URL:
        url = _mysql_database_url(MYSQL_URL, f"shop_mig_{os.environ.get('SHOP_TEST_DB_TAG', '')}"
                                  f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    from shop import create_app

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
