"""Read-replica routing: catalogue reads may go to the replica, everything else to the primary.

The HTTP layer opens each request with `begin_request(allow)`: a catalogue GET from a client
that has not just written may read the replica. Only plain SELECTs go there; writes, flushes,
`SELECT ... FOR UPDATE` and bare connections always use the primary, and once a write path
starts (`mark_write()`, called by `database.write_transaction`) the rest of the request reads
the primary too. Outside a request (CLI, jobs, tests' own setup) everything uses the primary.
"""
from __future__ import annotations

import re

from flask import current_app, g, has_app_context
from flask_sqlalchemy.session import Session
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import SelectBase, TextualSelect

REPLICA_KEY = "shop_replica_engine"
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
    """Create the replica engine for this app."""
    engine = create_engine(url, **options)
    app.extensions[REPLICA_KEY] = engine
    return engine


def replica_engine() -> Engine | None:
    """This app's replica engine (None without DATABASE_REPLICA_URL)."""
    return current_app.extensions.get(REPLICA_KEY) if has_app_context() else None


def begin_request(allow: bool) -> None:
    """A request starts: it may read the replica or not; nothing is written yet."""
    g.replica_ok = allow
    g.wrote = False
    g.replica_used = False


def end_request() -> None:
    """The request is over: whatever runs next in this context reads the primary again."""
    for key in ("replica_ok", "wrote", "replica_used"):
        g.pop(key, None)


def allow_replica() -> None:
    """This request's reads may use the replica (until a write path says otherwise)."""
    g.replica_ok = True


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
