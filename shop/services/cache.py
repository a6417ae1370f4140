"""Catalogue cache invalidation: every write that changes what shoppers see of the catalogue
(product, variant, price, stock by staff or given back by a cancelled or refunded order,
category, image, review approval, a review author's new name) calls `catalog_changed()`,
which moves the catalogue version that cache keys include.

The version lives in the cache's own Redis (Flask-Caching's backend, under CACHE_KEY_PREFIX),
so every worker on every host sees a change at once: a cached page carries the version it was
rendered at and is served only while that is still the current version. Without Redis
(NullCache) nothing is cached and the version is always 0. Stock taken by orders does not
move the version (it would empty the cache on every checkout); CATALOG_CACHE_SECONDS bounds
how long a page may show stock from before an order.

Reading the version is on the path of every cached page, so a worker does not ask Redis for
it each time: `current_version()` keeps the value it read and a connection on which Redis
tracks the key (RESP3 client-side caching, CLIENT TRACKING in broadcast mode). When any
client changes the key, Redis pushes an invalidation on that connection in the same pass as
it answers the write, so by the time the staff member's save has returned, every worker's
connection has the message waiting; each request polls the socket (no round trip) and
reads the version again when a message is there. Without tracking (an old Redis, a lost
connection) the version is read with a GET every time, as before.
"""
from __future__ import annotations

import logging
import math
import os
import secrets
import select
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from ..extensions import cache
from .redis_clients import Breaker, breaker, client, skipped

log = logging.getLogger("shop.cache")
VERSION_KEY = "catalog:version"
# Present for READ_YOUR_WRITES_SECONDS (how far a replica may lag) after each catalogue change.
RECENT_CHANGE_KEY = "catalog:changed"


def changed_recently(store: Any) -> bool:
    """Whether the catalogue changed so lately that a replica may not have the change yet."""
    return store.get(RECENT_CHANGE_KEY) is not None


def backend(app: Flask | None = None) -> Any | None:
    """Flask-Caching's Redis backend for `app` (or the current app); None when caching is off."""
    app = app or current_app
    if not app.config.get("REDIS_URL") or app.config.get("CATALOG_CACHE_SECONDS", 0) <= 0:
        return None
    store = app.extensions.get("cache", {}).get(cache)
    return store if hasattr(store, "get_many") and hasattr(store, "inc") else None


def catalog_version() -> int:
    """The current catalogue version (0 without Redis; -1 when Redis does not answer)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    store = backend(app)
    if store is None:
        return 0
    try:
        return current_version(app, store)
    except Exception as error:  # a cache outage must not take pages down
        if not skipped(error):
            log.warning("redis unavailable: catalogue cache bypassed", exc_info=True)
        return -1


_WATCH_KEY = "shop.catalog_version_watch"
# Set in a process whose catalogue change could not move the version (Redis unavailable):
# "change"; or that met Redis unavailable, when another process may have saved a change:
# "outage". The pages cached before the change would otherwise be served until they expire
# once Redis is back. The process moves the version before it next reads it
# (`current_version`).
_OWED_KEY = "shop.catalog_invalidation_owed"


def current_version(app: Flask, store: Any) -> int:
    """The catalogue version as Redis has it now, from the worker's tracked copy when it has
    one (see the module docstring); raises when Redis does not answer. An invalidation this
    process owes (`catalog_changed` failed) is made first."""
    try:
        owed = app.extensions.get(_OWED_KEY)
        if owed:
            _move_version(app, store)
            app.extensions.pop(_OWED_KEY, None)
            log.info("catalogue cache invalidated: %s", "the change made while redis was "
                     "unavailable" if owed == "change" else "redis was unavailable here, and "
                     "another process may have saved a change meanwhile")
        watch = app.extensions.get(_WATCH_KEY)
        if watch is None or watch.pid != os.getpid():
            watch = app.extensions[_WATCH_KEY] = VersionWatch(
                app.config["REDIS_URL"], app.config.get("CACHE_KEY_PREFIX", "") + VERSION_KEY,
                app.config, breaker(app))
        value = watch.get()
        if value is None:  # not tracked: ask
            return int(store.get(VERSION_KEY) or 0)
        return value
    except Exception:
        # A change saved meanwhile by another process could not move the version either,
        # and that process owes it in its own memory: until it next served a catalogue page
        # (never, if it exited), this one served the pages cached before the change. So
        # this one moves the version too once Redis answers.
        app.extensions.setdefault(_OWED_KEY, "outage")
        raise


class VersionWatch:
    """One Redis key's value, kept until Redis says the key changed.

    A dedicated RESP3 connection with `CLIENT TRACKING ON BCAST PREFIX <key>`: Redis pushes
    an `invalidate` message on it whenever the key is written, expired, evicted or flushed.
    `get()` polls the socket without blocking; the value is read again (one GET) only when
    something arrived, after the connection was made, or after an error. Any failure closes
    the connection and `get()` answers None (the caller then asks Redis itself) until a new
    connection is made, at most once a second."""

    RETRY_SECONDS = 1.0

    def __init__(self, url: str, key: str, config: Mapping[str, Any] | None = None,
                 guard: Breaker | None = None) -> None:
        self.url = url
        self.key = key
        self.config: Mapping[str, Any] = config or {}
        self.guard = guard
        self.pid = os.getpid()
        self._conn: Any = None
        self._poll: Any = None
        self._value: int | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> int | None:
        # One connection per worker process: a thread that finds it busy (threaded workers)
        # asks Redis itself this time rather than wait.
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._get()
        finally:
            self._lock.release()

    def _get(self) -> int | None:
        conn = self._conn
        if conn is None:
            if time.monotonic() < self._retry_at or not self._connect():
                return None
            conn = self._conn
        try:
            value = self._value
            if value is not None and not self._poll.poll(0):
                return value
            self._drain()
            if self._value is None:
                conn.send_command("GET", self.key)
                raw = conn.read_response()  # invalidations read on the way reset _value
                self._value = int(raw or 0)
                self._drain()
            return self._value
        except Exception:
            log.warning("catalogue version tracking lost; asking Redis each time",
                        exc_info=True)
            self.close()
            self._retry_at = time.monotonic() + self.RETRY_SECONDS
            return None

    def _drain(self) -> None:
        """Read every message waiting on the connection (invalidations reset the value)."""
        conn = self._conn
        while conn.can_read(timeout=0):
            conn.read_response(push_request=True)

    def _invalidated(self, _message: Any) -> None:
        self._value = None

    def _connect(self) -> bool:
        try:
            pool = client(self.url, self.config, self.guard, protocol=3).connection_pool
            conn = pool.make_connection()
            conn.connect()
            conn._parser.set_invalidation_push_handler(self._invalidated)
            conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", self.key)
            if conn.read_response() not in (b"OK", "OK"):
                raise RuntimeError("CLIENT TRACKING refused")
            poll = select.poll()
            poll.register(conn._sock.fileno(), select.POLLIN | select.POLLPRI)
        except Exception as error:
            if skipped(error):  # Redis is being left alone for a while: try again soon
                self._retry_at = time.monotonic() + self.RETRY_SECONDS
                return False
            log.warning("catalogue version cannot be tracked; asking Redis each time",
                        exc_info=True)
            self._retry_at = time.monotonic() + 30 * self.RETRY_SECONDS
            return False
        self._conn, self._poll, self._value = conn, poll, None
        return True

    def close(self) -> None:
        conn, self._conn, self._poll, self._value = self._conn, None, None, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass


def catalog_changed() -> bool:
    """Invalidate every cached catalogue page and fragment at once (all workers, all hosts).
    False when Redis could not be reached: this process then owes the invalidation (made when
    it next reads the version), which a command about to exit never makes."""
    store = backend()
    if store is None:
        return True
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        # Asked even while this process leaves Redis alone after a timeout (redis_clients):
        # Redis may be back, and a skipped invalidation would keep the old prices cached.
        with breaker(app).forced():
            _move_version(app, store)
    except Exception:
        # Owed: made by this process before it next reads the version, when Redis is back.
        app.extensions[_OWED_KEY] = "change"
        log.error("could not invalidate the catalogue cache (done when redis is back)",
                  exc_info=True)
        current_app.logger.error("catalogue cache invalidation failed")
        return False
    return True


def _move_version(app: Flask, store: Any) -> None:
    """A new catalogue version: every page cached so far is old."""
    # Said before the version moves, so whoever sees the new version sees that it is new: a
    # replica may not have the change yet, and a page it rendered now would be kept as the new
    # version's (see page_cache: such misses read the primary).
    lag = app.config.get("READ_YOUR_WRITES_SECONDS", 5)
    store.set(RECENT_CHANGE_KEY, 1, timeout=max(1, math.ceil(lag)))
    # By a random step, not 1: after a Redis restart (the key gone, counting from 0 again) a
    # version must not come back that pages still kept in a worker's memory were cached at.
    store.inc(VERSION_KEY, secrets.randbelow(1 << 30) + 1)
