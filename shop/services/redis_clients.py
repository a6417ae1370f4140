"""The shop's Redis clients: every connection a web process makes to Redis (cache, page cache,
catalogue version, rate limits, jobs, read-your-writes) has short connect and read timeouts,
and goes through the process's breaker.

A Redis that accepts connections but does not answer (hung, or behind a firewall that drops
packets) must cost a request a fraction of a second, then the same as a Redis that is down
(pages served uncached, jobs run inline), not redis-py's 5 s per command. The RQ worker's own
connection is the exception (`worker_options`): it waits on BLPOP for minutes by design.

Even a fraction of a second on every request makes the shop several times slower for the
whole outage, so the first failure (a timeout or a lost connection) opens a breaker: for
REDIS_RETRY_AFTER seconds this process does not ask Redis at all, and every Redis command
fails at once with `RedisSkipped` (a ConnectionError, so each caller does what it already does
while Redis is down). Then one command tries Redis again: an answer closes the breaker, a
failure keeps it open for another interval. Per process, and only an optimisation: nothing is
kept in it. It opens and closes with one log line each (shop.redis)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .breaker import Breaker as _Breaker

DEFAULT_TIMEOUT = 0.25  # seconds; config.py reads REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT
DEFAULT_RETRY_AFTER = 5.0  # seconds; config.py reads REDIS_RETRY_AFTER
BREAKER_KEY = "shop.redis_breaker"
log = logging.getLogger("shop.redis")


class RedisSkipped(RedisConnectionError):
    """Raised instead of asking Redis while the breaker is open."""


class Breaker(_Breaker):
    """Whether this process asks Redis now (see the module docstring and services.breaker)."""

    def __init__(self, retry_after: float = DEFAULT_RETRY_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(
            retry_after, clock, log=log,
            opened="redis unavailable (%s: %s): not asked for %g s at a time until it answers "
                   "(pages uncached, limits in memory, jobs inline)",
            closed="redis reachable again: used again")


class _Guarded:
    """A redis-py connection that asks the breaker before it is used and tells it how Redis
    answered. `connect()` runs before every command taken from a pool (a no-op when already
    connected), so a pooled connection is skipped too."""

    def __init__(self, *args: Any, breaker: Breaker | None = None, **kwargs: Any) -> None:
        self.breaker = breaker
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise RedisSkipped("Redis skipped: it did not answer lately")
        try:
            super().connect()  # type: ignore[misc]
        except RedisSkipped:
            raise
        except (RedisConnectionError, RedisTimeoutError) as error:
            if breaker is not None:
                breaker.failed(error)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_packed_command(*args, **kwargs)  # type: ignore[misc]
        except (RedisConnectionError, RedisTimeoutError) as error:
            if self.breaker is not None:
                self.breaker.failed(error)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except (RedisConnectionError, RedisTimeoutError) as error:
            if self.breaker is not None:
                self.breaker.failed(error)
            raise
        if self.breaker is not None and self.breaker.is_open:
            self.breaker.succeeded()
        return response


class GuardedConnection(_Guarded, Connection):
    """redis:// through the breaker."""


class GuardedSSLConnection(_Guarded, SSLConnection):
    """rediss:// through the breaker."""


class GuardedUnixConnection(_Guarded, UnixDomainSocketConnection):
    """unix:// through the breaker."""


_GUARDED = {"redis": GuardedConnection, "rediss": GuardedSSLConnection,
            "unix": GuardedUnixConnection, "redis+unix": GuardedUnixConnection}


def breaker(app: Flask) -> Breaker:
    """The app's breaker (one app per worker process: the process's)."""
    found = app.extensions.get(BREAKER_KEY)
    if found is None:
        found = app.extensions[BREAKER_KEY] = Breaker(
            float(app.config.get("REDIS_RETRY_AFTER", DEFAULT_RETRY_AFTER)))
    return found


def skipped(error: BaseException) -> bool:
    """The error is the breaker's (logged once when it opened), not a new failure."""
    return isinstance(error, RedisSkipped)


def no_maintenance_notifications() -> dict[str, Any]:
    """redis-py 8 asks every new connection for Redis Enterprise's maintenance notifications
    (CLIENT MAINT_NOTIFICATIONS), which other servers refuse, as Redis 7 does. The refusal is
    expected and passed over, except on a connection another thread is reading: after a
    Redis blip the RQ worker's command channel (a pubsub read by its own thread) reconnected
    while the worker stopped, the thread read the refusal meant for the other, died, and the
    worker waited for that answer forever, never exiting after SIGTERM. The shop asks for no
    such notifications (one round trip less on each new connection, too)."""
    from redis.maint_notifications import MaintNotificationsConfig

    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def client_options(config: Mapping[str, Any], url: str | None = None,
                   guard: Breaker | None = None) -> dict[str, Any]:
    """redis-py keyword arguments for a connection to `url` used while serving a request,
    through the breaker `guard` when one is given."""
    options: dict[str, Any] = {
        "socket_connect_timeout": config.get("REDIS_CONNECT_TIMEOUT", DEFAULT_TIMEOUT),
        "socket_timeout": config.get("REDIS_SOCKET_TIMEOUT", DEFAULT_TIMEOUT),
        **no_maintenance_notifications()}
    connection_class = _GUARDED.get(urlsplit(url or "").scheme)
    if guard is not None and connection_class is not None:
        options |= {"connection_class": connection_class, "breaker": guard}
    return options


# The RQ worker's TTL in Redis, which also sets how long it blocks waiting for a job (15 s
# less) and the read timeout RQ gives its connection (10 s more than that). RQ's default of
# 420 s let a connection that had silently stopped answering (a failover, a lost host, a
# dropped route) hold the worker, alive and quiet, for 7 minutes while jobs waited.
WORKER_TTL = 60


def worker_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """redis-py keyword arguments for the RQ worker's connection: a short connect timeout, no
    read timeout of ours (RQ sets one longer than its blocking dequeue, see WORKER_TTL), and
    TCP keepalive so a peer that has gone away is noticed on an idle connection too."""
    return {"socket_connect_timeout":
            max(config.get("REDIS_CONNECT_TIMEOUT", DEFAULT_TIMEOUT), 5.0),
            "socket_keepalive": True,
            **no_maintenance_notifications()}


def client(url: str, config: Mapping[str, Any], guard: Breaker | None = None, **extra: Any):
    """A client on `url` with the request timeouts, through the breaker `guard` when one is
    given (`extra` passed on, e.g. protocol=3)."""
    from redis import Redis

    return Redis.from_url(url, **(client_options(config, url, guard) | extra))
