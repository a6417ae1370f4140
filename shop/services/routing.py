"""Read-replica routing: catalog reads may go to the replica, everything else to the primary.

The HTTP layer allows the replica for a request (catalog GETs from a client that has not just
written); any write path calls `mark_write()`, after which the request only uses the primary.
"""
from __future__ import annotations

from flask import current_app, g, has_app_context
from flask_sqlalchemy.session import Session
from sqlalchemy import Delete, Insert, Update, create_engine
from sqlalchemy.engine import Engine

REPLICA_KEY = "shop_replica_engine"


class RoutingSession(Session):
    """A Flask-SQLAlchemy session that sends allowed reads to the replica engine."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and has_app_context() and replica_allowed() and not self._flushing \
                and not isinstance(clause, (Insert, Update, Delete)):
            engine = current_app.extensions.get(REPLICA_KEY)
            if engine is not None:
                g.replica_used = True
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def install_replica(app, url: str, options: dict) -> Engine:
    """Create the replica engine for this app."""
    engine = create_engine(url, **options)
    app.extensions[REPLICA_KEY] = engine
    return engine


def allow_replica() -> None:
    """This request's reads may use the replica (until a write path says otherwise)."""
    g.replica_ok = True


def replica_allowed() -> bool:
    return bool(g.get("replica_ok")) and not g.get("wrote")


def mark_write() -> None:
    """From now on this request reads and writes the primary; the client is marked as a writer."""
    if has_app_context():
        g.wrote = True
