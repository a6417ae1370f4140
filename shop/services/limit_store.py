"""Rate-limit counts in a SQLite file, for a shop without Redis on one host.

Without REDIS_URL, Flask-Limiter kept its counts in each process's memory: with gunicorn's
four workers a guesser got about four times the limit (SPEC 9: 10 failed logins a minute per
account and per address). The embedded setup is one host by definition (its database is a
SQLite file), so its workers share the counts through a small SQLite file of their own beside
the database instead: `shopsqlite:///path/to/shop.db.ratelimits` as the limiter's storage URI.
Fixed windows (Flask-Limiter's default strategy): a key's count and the time its window ends;
moving windows (RATELIMIT_STRATEGY=moving-window): a row per hit. Several hosts need Redis
(docs/DEPLOY.md).

`give_back` returns a hit to a fixed window, in whichever storage counts it (this one, Redis,
or a process's memory): a limit that counts an action before it is done, and not when it did
not happen (an order not placed, blueprints/limits.py).
"""
from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time

from limits import RateLimitItem
from limits.storage import MovingWindowSupport, Storage
from limits.strategies import FixedWindowRateLimiter, RateLimiter
from sqlalchemy.engine import URL

SCHEME = "shopsqlite"
_log = logging.getLogger("shop.ratelimit")


class SQLiteLimitStorage(Storage, MovingWindowSupport):
    """A `limits` storage on a SQLite file shared by the processes of one host."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = (uri or "").split("://", 1)[-1]
        self._local = threading.local()

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (one per process and thread; never shared across fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS limits (key TEXT PRIMARY KEY, "
                         "count INTEGER NOT NULL, window_ends REAL NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, at REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS hits_by_key ON hits (key, at)")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        conn = self._db()
        # One statement: a window that has ended starts again with this hit.
        count = conn.execute(
            "INSERT INTO limits (key, count, window_ends) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN window_ends <= ? THEN excluded.count ELSE count + excluded.count "
            "END, window_ends = CASE WHEN window_ends <= ? THEN excluded.window_ends "
            "ELSE window_ends END RETURNING count",
            (key, amount, now + expiry, now, now)).fetchone()[0]
        if random.random() < 0.01:  # now and then, forget windows long over
            conn.execute("DELETE FROM limits WHERE window_ends < ?", (now - 60,))
        return int(count)

    def get(self, key: str) -> int:
        row = self._db().execute("SELECT count FROM limits WHERE key = ? AND window_ends > ?",
                                 (key, time.time())).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        row = self._db().execute("SELECT window_ends FROM limits WHERE key = ? AND "
                                 "window_ends > ?", (key, now)).fetchone()
        return float(row[0]) if row else now

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")  # counted and written by one process at a time
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM hits WHERE key = ? AND at >= ?",
                                    (key, now - expiry)).fetchone()
            allowed = count + amount <= limit
            if allowed:
                conn.executemany("INSERT INTO hits (key, at) VALUES (?, ?)",
                                 [(key, now)] * amount)
            if random.random() < 0.01:  # now and then, forget hits older than any window
                conn.execute("DELETE FROM hits WHERE at < ?", (now - 2 * 86400,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return allowed

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        oldest, count = self._db().execute(
            "SELECT MIN(at), COUNT(*) FROM hits WHERE key = ? AND at >= ?",
            (key, now - expiry)).fetchone()
        return (float(oldest), int(count)) if count else (now, 0)

    def check(self) -> bool:
        try:
            self._db().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        conn = self._db()
        return conn.execute("DELETE FROM limits").rowcount + \
            conn.execute("DELETE FROM hits").rowcount

    def clear(self, key: str) -> None:
        conn = self._db()
        conn.execute("DELETE FROM limits WHERE key = ?", (key,))
        conn.execute("DELETE FROM hits WHERE key = ?", (key,))


def storage_uri(url: URL) -> str | None:
    """The limiter's storage beside the database `url` when it is a SQLite file; None for any
    other database (an in-memory SQLite one included): those keep the limits in each
    process's memory."""
    path = url.database if url.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return f"{SCHEME}://{os.path.abspath(path)}.ratelimits"


def give_back(strategy: RateLimiter, item: RateLimitItem, *identifiers: str) -> None:
    """Return one hit that `strategy` counted for `item` (Flask-Limiter's hit with these
    identifiers): the window's count less one, as if the hit had not been made. Only a fixed
    window (the shop's strategy) keeps a count that can be lowered; a moving window keeps the
    time of each hit and no way to take one back, so there the hit stays counted."""
    if not isinstance(strategy, FixedWindowRateLimiter):
        _log.warning("a rate-limit hit cannot be given back with %s: it stays counted",
                     type(strategy).__name__)
        return
    key, expiry = item.key_for(*identifiers), item.get_expiry()
    if strategy.storage.incr(key, expiry, amount=-1) < 0:
        # The hit's window ended meanwhile and this began a new one below zero, which would
        # allow one more than the limit: back to nothing counted.
        strategy.storage.incr(key, expiry, amount=1)
