"""Transactions and engine settings: one place that knows SQLite from MySQL."""
from __future__ import annotations

import logging
import math
import os
import select
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import current_app, g, has_request_context
from sqlalchemy import String, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..extensions import db

T = TypeVar("T")

log = logging.getLogger("shop.database")

# MySQL/MariaDB: deadlock found, lock wait timeout. Both roll back and are safe to retry.
RETRYABLE_MYSQL_ERRORS = {1213, 1205}
# SQLite: SQLITE_BUSY ("database is locked": another connection held the write lock past the
# busy timeout) and SQLITE_LOCKED (a table locked within the same database file).
SQLITE_LOCK_ERRORS = {5, 6}


# A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def mysql_connect_args(config: Mapping[str, Any]) -> dict[str, Any]:
    """PyMySQL's timeouts for the shop's connections (primary, replica, plain reads).

    A database that stops answering (host frozen, packets dropped, a statement stuck) then
    costs a request DATABASE_READ_TIMEOUT, and one that cannot be reached
    DATABASE_CONNECT_TIMEOUT, before the driver gives up: the request answers 503
    (http.dependency_unavailable) and the pool discards the connection (SQLAlchemy invalidates
    it on the driver's "lost connection"), instead of the worker waiting until gunicorn kills
    it. A row lock is waited for at most the read timeout less 2 s (innodb_lock_wait_timeout,
    never raised above the server's): a checkout queued behind another then ends with MySQL's own
    lock-wait error, which leaves the connection sound and is retried (`retrying`), rather than
    with the socket timing out. Outside a request the read timeout is lifted
    (`_bound_reads_to_requests`)."""
    read = config["DATABASE_READ_TIMEOUT"]
    lock_wait = lock_wait_seconds(config)
    return {"connect_timeout": config["DATABASE_CONNECT_TIMEOUT"], "read_timeout": read,
            "write_timeout": read,
            "init_command": "SET SESSION innodb_lock_wait_timeout = "
                            f"LEAST(@@innodb_lock_wait_timeout, {lock_wait})"}


def lock_wait_seconds(config: Mapping[str, Any]) -> int:
    """The longest a connection waits for a row lock: the read timeout less 2 s, at least 1 s
    (the server's own innodb_lock_wait_timeout may make it shorter)."""
    return max(1, math.ceil(config["DATABASE_READ_TIMEOUT"]) - 2)


def configure_engine(engine: Engine, *, autocommit: bool = False) -> None:
    """SQLite: foreign keys, WAL, a busy timeout and BEGIN IMMEDIATE for write transactions
    (no BEGIN at all on an `autocommit` engine). A server database: reads bounded while
    serving a request, and connections that sat idle are checked before use.

    SQLite's busy timeout, the longest a write waits for another connection's write lock, is
    DATABASE_RETRY_BUDGET (which gunicorn.conf.py keeps below GUNICORN_TIMEOUT): a write still
    queued then ends with "database is locked", answered with the shop's busy 503
    (http.dependency_unavailable), before gunicorn kills the worker (a bare 502)."""
    if engine.dialect.name != "sqlite":
        _bound_reads_to_requests(engine)
        _ping_idle_connections(engine)
        return
    busy_ms = max(1, round(float(current_app.config.get("DATABASE_RETRY_BUDGET", 25)) * 1000))
    from .catalog_state import name_key

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # We issue BEGIN ourselves (below), so pysqlite's own transaction handling is off.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        # 32 MB of pages per connection instead of 2 MB: a search reads a word's terms and
        # looks up its matches' other words all over search_terms (about 30 MB at 100,000
        # products); with 2 MB those pages were read from the OS again on every search.
        cursor.execute("PRAGMA cache_size=-32768")
        # name_sort_key's fold, which SQLite (comparing bytes) has no collation for.
        dbapi_connection.create_function("shop_name_key", 1, name_key, deterministic=True)
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if autocommit:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # A write transaction takes the write lock up front: two checkouts that both read and
        # then write would otherwise fail with "database is locked" instead of waiting.
        # Straight to the driver: BEGIN is transaction control, not a statement that needs
        # SQLAlchemy's result handling (which cost as much as a page's whole query).
        statement = "BEGIN IMMEDIATE" if connection.get_execution_options().get("write") \
            else "BEGIN"
        dbapi = engine.dialect.loaded_dbapi
        try:
            connection.connection.driver_connection.execute(statement)
        except dbapi.Error as exc:
            # Raised as SQLAlchemy raises a statement's error: sqlite3's own OperationalError
            # (the write lock not had within the busy timeout) reached no error handler and
            # was a 500.
            raise DBAPIError.instance(statement, None, exc, dbapi.Error, hide_parameters=True,
                                      dialect=engine.dialect) from exc


class name_sort_key(FunctionElement):  # noqa: N801 (used as a SQL function)
    """A name column as a list sorted by name orders it: case and accents aside ("anna",
    "Bea", "Éva", "zoe"). MySQL's collation (utf8mb4_unicode_ci) does so with the column
    itself; SQLite compares bytes (every capital before every small letter, "É" after "z"), so
    there the column is folded as product names are for their sort (catalog_state.name_key,
    registered on each connection as shop_name_key). For a sort no index serves (a back
    office list); the shop's own name sorts read products.name_key."""

    type = String()
    inherit_cache = True


@compiles(name_sort_key)
def _name_sort_key(element, compiler, **kw) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(name_sort_key, "sqlite")
def _name_sort_key_sqlite(element, compiler, **kw) -> str:
    return f"shop_name_key({compiler.process(element.clauses, **kw)})"


def _bound_reads_to_requests(engine: Engine) -> None:
    """A connection's read timeout (mysql_connect_args) holds while it serves a request, and
    is lifted when it is checked out anywhere else: a request is cut off by gunicorn's timeout
    anyway, so a statement longer than the read timeout was already lost there, but the CLI,
    migrations and the worker run statements that may take minutes (an ALTER TABLE on a big
    table, `refresh-catalog`, `seed --products`), and a migration stopped half-way leaves a
    schema no code matches. The handshake of a new connection is always bounded. Drivers other
    than PyMySQL keep their own settings."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record) -> None:
        if hasattr(dbapi_connection, "_read_timeout"):
            record.info["read_timeout"] = dbapi_connection._read_timeout

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        if "read_timeout" in record.info:
            # PyMySQL applies _read_timeout to the socket before each read.
            dbapi_connection._read_timeout = \
                record.info["read_timeout"] if has_request_context() else None


def _ping_idle_connections(engine: Engine) -> None:
    """pool_pre_ping pings on every checkout: a round trip per request. Instead, a connection
    is pinged when it sat idle for PING_AFTER_IDLE_SECONDS, or when its socket has something
    to read before we asked anything: what a server sends a connection it closes (a KILL, a
    restart, wait_timeout), seen by a poll that costs no round trip (the Go MySQL driver
    checks liveness the same way). A dead one is replaced before the request sees it: the
    pool retries a checkout refused with DisconnectionError. Without a socket to poll (another
    driver), every checkout is pinged, as pool_pre_ping would."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        since = record.info.get("idle_since")
        if since is None:
            return  # just connected
        sock = getattr(dbapi_connection, "_sock", None)
        suspect = sock is None or time.monotonic() - since > PING_AFTER_IDLE_SECONDS
        if not suspect:
            try:
                suspect = bool(select.select([sock], [], [], 0)[0])
            except (OSError, ValueError):
                suspect = True
        if suspect:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                raise DisconnectionError("stale connection") from exc


@contextmanager
def write_transaction() -> Iterator[None]:
    """Run the block as one transaction on the primary: commit on success, roll back on error.

    A service that performs one user action owns its transaction through this; the helpers it
    calls only flush.
    """
    session = db.session
    # Whatever the request read so far ends here, so the write sees the newest committed rows.
    session.rollback()
    from . import routing

    routing.mark_write()
    session.connection(execution_options={"write": True})
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def is_lock_timeout(error: BaseException) -> bool:
    """A write given up because other writes held the locks it needed, the database itself
    answering: MySQL's lock wait timeout or deadlock (once `retrying` stopped trying), or
    SQLite's write lock held by another connection past the busy timeout. Nothing was
    written; the same request may succeed in a moment."""
    if not isinstance(error, OperationalError) or error.orig is None:
        return False
    code = getattr(error.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_LOCK_ERRORS  # extended codes: SQLITE_BUSY_SNAPSHOT, ...
    args = error.orig.args
    return bool(args) and args[0] in RETRYABLE_MYSQL_ERRORS


def retrying(action: Callable[[], T], attempts: int = 5, *,
             clock: Callable[[], float] = time.perf_counter) -> T:
    """Run a write action again when MySQL rolled it back for a deadlock or lock timeout.

    Each attempt may wait a full row-lock wait (lock_wait_seconds), so one is tried again
    only while that wait still fits in DATABASE_RETRY_BUDGET, counted from the start of the
    request (of this call outside one): a checkout queued behind a long write then answers the
    shop's 503 before gunicorn's timeout kills the worker (a bare 502 from the proxy). A
    deadlock fails at once and is retried as long as the budget allows the same. `clock` is
    the request's (http.start_request reads time.perf_counter); tests pass a fake one."""
    started = g.get("started", clock()) if has_request_context() else clock()
    config = current_app.config
    budget, lock_wait = config["DATABASE_RETRY_BUDGET"], lock_wait_seconds(config)
    for attempt in range(attempts):
        try:
            return action()
        except OperationalError as exc:
            code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
            if code not in RETRYABLE_MYSQL_ERRORS or attempt == attempts - 1:
                raise
            delay = 0.01 * (2 ** attempt)
            spent = clock() - started
            if spent + delay + lock_wait > budget:
                log.warning("write given up after %d attempts (MySQL error %s) in %.1f s: "
                            "another lock wait of %d s would pass DATABASE_RETRY_BUDGET (%g s)",
                            attempt + 1, code, spent, lock_wait, budget)
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


READERS_KEY = "shop_reader_engines"
SERVER_STATUS_IN_TRANS = 0x0001  # MySQL protocol: the server has a transaction open


def plain_reader(engine: Engine) -> Engine | None:
    """An engine on the same database as `engine` whose connections are in autocommit mode,
    for the catalogue's plain reads made before the request has begun a transaction (None for
    an in-memory SQLite database, which another engine would not see).

    A single SELECT needs no transaction of its own, and a connection on which no transaction
    is open goes back to the pool without a ROLLBACK: on MySQL that is one round trip of a
    catalogue page's two; on SQLite, no BEGIN and no ROLLBACK around the page's query. Reads
    made inside a transaction (a write path, a request that already read through the Session)
    stay on the Session's connection, so they see its writes. The engines are kept per app and
    process, with the same options and idle checks."""
    from flask import current_app

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    readers = app.extensions.setdefault(READERS_KEY, {})
    key = (id(engine), os.getpid())
    reader = readers.get(key)
    if reader is None:
        if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
            return None
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options["isolation_level"] = "AUTOCOMMIT"
        reader = create_engine(engine.url, **options)
        configure_engine(reader, autocommit=True)
        from . import routing

        if routing.is_replica(engine):
            routing.watch(reader)
        _rollback_only_open_transactions(reader)
        readers[key] = reader
    return reader


def fetch_rows(connection: Connection, statement: str, parameters: dict) -> list[Any]:
    """Run one read (driver SQL) on `connection` and return the rows as the driver gives them.

    What `Connection.exec_driver_sql(...).fetchall()` does, through SQLAlchemy's own cursor
    execution (`before/after_cursor_execute` listeners, echo, driver errors raised as
    SQLAlchemy's with the connection invalidated on a disconnect), without the execution
    context and result object around it: on a catalogue page those cost about half as much as
    SQLite running the query."""
    cursor = connection.connection.cursor()
    try:
        connection._cursor_execute(cursor, statement, parameters)
        return list(cursor.fetchall())
    finally:
        connection._safe_close_cursor(cursor)


def reader_engines(app) -> list[Engine]:
    """The plain-read engines this app made in this process (tests count their statements)."""
    return list(app.extensions.get(READERS_KEY, {}).values())


def _rollback_only_open_transactions(engine: Engine) -> None:
    """Skip the driver's ROLLBACK (a round trip on MySQL) when no transaction is open on the
    connection: MySQL's server says so with every answer, sqlite3 keeps `in_transaction`."""
    dialect = engine.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection) -> None:
        status = getattr(dbapi_connection, "server_status", None)
        if isinstance(status, int) and not status & SERVER_STATUS_IN_TRANS:
            return
        if getattr(dbapi_connection, "in_transaction", None) is False:
            return
        rollback(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def configure_replica(app, url: str) -> None:
    """Route allowed catalog reads to DATABASE_REPLICA_URL."""
    from .routing import install_replica

    options = {k: v for k, v in app.config["SQLALCHEMY_ENGINE_OPTIONS"].items()}
    engine = install_replica(app, url, options)
    configure_engine(engine)


def is_mysql() -> bool:
    return db.engine.dialect.name in ("mysql", "mariadb")


def is_sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"
