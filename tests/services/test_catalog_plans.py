"""How the database runs the catalogue's default listing: newest first, on an index it reads
forwards (a deep page walks a thousand index entries before its 24; MariaDB walks an
ascending index backwards at a third more cost an entry)."""
from __future__ import annotations

import re

from sqlalchemy import event
from sqlalchemy.engine import Engine

from shop.extensions import db
from shop.services import catalog, seed


def _cards_statement(filters: catalog.ProductFilters) -> tuple[str, dict]:
    captured: list[tuple[str, dict]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "card_image_path" in statement:
            captured.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        catalog.list_products(filters)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(captured) == 1, captured
    return captured[0]


def test_the_newest_first_listing_reads_its_index_forwards(app):
    seed.bulk_products(500)  # enough rows for MySQL's optimizer to plan as on a catalogue
    filters, errors = catalog.parse_filters({"page": "5"})
    assert not errors and filters.sort == "relevance"  # the listing's default: newest first
    statement, parameters = _cards_statement(filters)
    conn = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                        parameters)]
        assert any("USING COVERING INDEX ix_products_active_newest (active=?)" in step
                   for step in plan), plan
        assert not any(re.match(r"SCAN (p|products)( |$)", step) for step in plan), plan
    else:
        plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
        inner = next(row for row in plan if row["table"] == "p" and row["select_type"] in
                     ("DERIVED", "SUBQUERY", "MATERIALIZED") or row["key"] ==
                     "ix_products_active_newest")
        assert inner["key"] == "ix_products_active_newest", plan
        extra = inner["Extra"] or ""
        assert "Using index" in extra and "filesort" not in extra, plan
        assert "Backward" not in extra, plan  # MySQL 8 names a backward scan
