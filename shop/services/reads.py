"""Hand-written reads for the hot pages (the catalogue, a product's reviews): plain SELECTs run
straight on the driver.

A statement written with :name parameters runs through the request's session, so an allowed
read goes to the replica and a read inside a write path sees its writes, but with
exec_driver_sql's cost instead of the ORM's: no statement compilation and no result
processing per request, which on a catalogue page cost more than the SQL itself. Rows come
back as the driver gives them; the caller converts them (SQLite gives floats for prices, text
for times and JSON).
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from ..extensions import db
from . import database, routing
from .money import quantize

_STATEMENTS: dict[tuple[str, str], tuple[TextClause, str]] = {}
_MAX_STATEMENTS = 2000
_NAMED_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def rows(sql: str, params: dict[str, Any]) -> list[Any]:
    """Run a read written with :name parameters; rows as the driver returns them."""
    engine = db.engine
    dialect = engine.dialect
    key = (dialect.name, sql)
    cached = _STATEMENTS.get(key)
    if cached is None:
        # sqlite3 takes :name parameters as they are; MySQL drivers take %(name)s.
        driver_sql = sql if dialect.name == "sqlite" else \
            _NAMED_PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
        cached = (text(sql), driver_sql)
        if len(_STATEMENTS) >= _MAX_STATEMENTS:
            _STATEMENTS.clear()
        _STATEMENTS[key] = cached
    clause, driver_sql = cached
    if dialect.name == "sqlite":
        params = {k: (str(v) if isinstance(v, Decimal) else int(v) if isinstance(v, bool) else v)
                  for k, v in params.items()}
    registry = db.session.registry
    session = registry() if registry.has() else None
    if session is None or not _on_a_connection(session):
        # Nothing begun yet in this request on a connection (a Session may have begun with
        # no SQL sent: the logged-in user put in it by accounts.session_user): an autocommit
        # connection reads the same committed rows without a transaction to end
        # (database.plain_reader). Without a
        # Session yet (an anonymous catalogue page has none), none is made for it: the
        # replica or the primary, as the Session would choose (services.routing).
        bind = session.get_bind(clause=clause) if session is not None else (
            routing.replica_for(clause) or engine)
        reader = database.plain_reader(bind)
        if reader is not None:
            with reader.connect() as connection:
                return database.fetch_rows(connection, driver_sql, params)
    connection = (session or registry()).connection(bind_arguments={"clause": clause})
    return database.fetch_rows(connection, driver_sql, params)


def _on_a_connection(session) -> bool:
    """Whether the Session's transaction holds a connection: reads then stay on it, where
    they see what it wrote."""
    transaction = session.get_transaction()
    return transaction is not None and bool(transaction._connections)


# money's answers for SQLite's floats (a shop has far fewer distinct prices than the prices its
# pages read). Pure function, bounded.
_MONEY: dict[float, Decimal] = {}
_MAX_MONEY = 20_000


def money(value: Any) -> Decimal | None:
    """A price as the driver gives it (Decimal, or a float on SQLite) as Decimal cents."""
    if value is None or isinstance(value, Decimal):
        return value
    amount = _MONEY.get(value)
    if amount is None:
        amount = quantize(Decimal(str(value)))
        if len(_MONEY) >= _MAX_MONEY:
            _MONEY.clear()
        _MONEY[value] = amount
    return amount


def json_object(value: Any) -> dict:
    """A JSON column's object as the driver gives it (text, or already decoded); {} if none."""
    if isinstance(value, (bytes, str)):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}
