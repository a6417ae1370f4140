"""Read-replica routing: catalogue reads may go to the replica, everything else to the primary.

The HTTP layer opens each request with `begin_request(allow)`: a catalogue GET from a client
that has not just written may read the replica. Only plain SELECTs go there; writes, flushes,
`SELECT ... FOR UPDATE` and bare connections always use the primary, and once a write path
starts (`mark_write()`, called by `database.write_transaction`) the rest of the request reads
the primary too. Outside a request (CLI, jobs, tests' own setup) everything uses the primary.

A replica that fails (down, hung past the database timeouts, refusing connections) does not
take the catalogue down with it: the failed request is answered again from the primary
(`fell_back`, called by the HTTP layer), and a breaker keeps this process's catalogue reads on
the primary for DATABASE_REPLICA_RETRY_AFTER seconds before one request tries the replica
again, so an outage costs a timeout now and then, not one per page.
"""
from __future__ import annotations

import logging
import re

from flask import current_app, g, has_app_context
from flask_sqlalchemy.session import Session
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import SelectBase, TextualSelect

REPLICA_KEY = "shop_replica_engine"
BREAKER_KEY = "shop.replica_breaker"
DEFAULT_RETRY_AFTER = 30.0  # seconds; config.py reads DATABASE_REPLICA_RETRY_AFTER
log = logging.getLogger("shop.replica")
# Set in a request's WSGI environ by whoever must have it read the primary (the page cache,
# filling a shared page just after the catalogue changed, when the replica may still lag).
PRIMARY_ENVIRON = "shop.read_primary"


class RoutingSession(Session):
    """A Flask-SQLAlchemy session that sends allowed reads to the replica engine."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and not self._flushing:
            engine = replica_for(clause)
            if engine is not None:
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def replica_for(clause) -> Engine | None:
    """The replica when this request may read it and `clause` is a plain read; else None (the
    primary). What the Session's get_bind decides, for reads made without a Session."""
    if has_app_context() and replica_allowed() and _is_plain_read(clause):
        engine = replica_engine()
        if engine is not None:
            g.replica_used = True
            return engine
    return None


def _is_plain_read(clause) -> bool:
    """A SELECT that locks nothing (anything else, or not knowing, means the primary)."""
    if isinstance(clause, TextualSelect):  # text("SELECT ...").columns(...)
        return _is_plain_read_sql(clause.element.text)
    if isinstance(clause, SelectBase):
        return getattr(clause, "_for_update_arg", None) is None
    if isinstance(clause, TextClause):
        return _is_plain_read_sql(clause.text)
    return False


_WRITE_WORDS = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE|MERGE|CALL|SHARE|LOCK)\b", re.I)


def _is_plain_read_sql(sql: str) -> bool:
    """Hand-written SQL: a SELECT (or WITH ... SELECT) that neither writes nor locks."""
    head = sql.lstrip().lstrip("(").lstrip().upper()
    return head.startswith(("SELECT", "WITH")) and not _WRITE_WORDS.search(sql)


def install_replica(app, url: str, options: dict) -> Engine:
    """Create the replica engine for this app, and the process's breaker in front of it."""
    from .breaker import Breaker

    engine = create_engine(url, **options)
    watch(engine)
    app.extensions[REPLICA_KEY] = engine
    app.extensions[BREAKER_KEY] = Breaker(
        float(app.config.get("DATABASE_REPLICA_RETRY_AFTER", DEFAULT_RETRY_AFTER)), log=log,
        opened="replica unavailable (%s: %s): catalogue reads go to the primary, the replica "
               "is tried again every %g s",
        closed="replica answered again: catalogue reads go to it again")
    return engine


def watch(engine: Engine) -> None:
    """Errors on `engine` (the replica, or a plain-read engine on it) that say the replica
    cannot serve (not reachable, lost, timed out: an OperationalError, connect errors
    included) mark the request's replica reads as failed and open the breaker."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context) -> None:
        if not (context.is_disconnect
                or isinstance(context.sqlalchemy_exception, OperationalError)):
            return
        if has_app_context():
            g.replica_failed = True
            breaker = current_app.extensions.get(BREAKER_KEY)
            if breaker is not None:
                breaker.failed(context.original_exception)


def is_replica(engine: Engine) -> bool:
    return has_app_context() and engine is current_app.extensions.get(REPLICA_KEY)


def replica_engine() -> Engine | None:
    """This app's replica engine (None without DATABASE_REPLICA_URL)."""
    return current_app.extensions.get(REPLICA_KEY) if has_app_context() else None


def begin_request(allow: bool) -> None:
    """A request starts: it may read the replica or not (not while the breaker keeps it on
    the primary); nothing is written yet."""
    if allow:
        breaker = current_app.extensions.get(BREAKER_KEY)
        allow = breaker is None or breaker.allow()
    g.replica_ok = allow
    g.wrote = False
    g.replica_used = False
    g.replica_failed = False


def end_request() -> None:
    """The request is over: whatever runs next in this context reads the primary again."""
    for key in ("replica_ok", "wrote", "replica_used", "replica_failed"):
        g.pop(key, None)


def fell_back() -> bool:
    """After the request's handler failed: True when the replica failed it (its reads go to
    the primary from now on, and the caller answers the request again), False when anything
    else did. Nothing was written: a request that writes reads the primary only."""
    if not (g.get("replica_used") and g.get("replica_failed")) or g.get("wrote"):
        return False
    g.replica_ok = False
    g.replica_used = False
    g.replica_failed = False
    return True


def answered() -> None:
    """The request's handler finished: a replica that served it closes the breaker (the
    interval's trial succeeded)."""
    if g.get("replica_used") and not g.get("replica_failed"):
        breaker = current_app.extensions.get(BREAKER_KEY)
        if breaker is not None and breaker.is_open:
            breaker.succeeded()


def use_primary() -> None:
    """The rest of this request reads the primary, without counting as a write (e.g. filling
    a shared cache just after the catalogue changed, when the replica may still lag)."""
    if has_app_context():
        g.replica_ok = False


def replica_allowed() -> bool:
    return bool(g.get("replica_ok")) and not g.get("wrote")


def mark_write() -> None:
    """From now on this request reads and writes the primary; the client is marked as a writer."""
    if has_app_context():
        g.wrote = True


def wrote() -> bool:
    """Whether a write path ran in this request (so the client gets read-your-writes)."""
    return bool(g.get("wrote")) if has_app_context() else False
