"""The breaker in front of every Redis connection a web process makes (services.redis_clients):
after a failure Redis is left alone for REDIS_RETRY_AFTER, then one caller tries again; each
change is logged once. Without a server: the clock is the test's, the failures are made up."""
from __future__ import annotations

import logging

import pytest
from redis import Redis
from redis.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import TimeoutError as RedisTimeoutError

from shop.services import redis_clients
from shop.services.redis_clients import Breaker, RedisSkipped


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_a_failure_redis_is_left_alone_then_one_caller_tries_again(caplog):
    clock = Clock()
    breaker = Breaker(5, clock=clock)
    assert breaker.allow() and breaker.allow()
    with caplog.at_level(logging.INFO, logger="shop.redis"):
        breaker.failed(RedisTimeoutError("Timeout reading from socket"))
        breaker.failed(RedisTimeoutError("Timeout reading from socket"))  # already open
        assert [breaker.allow() for _ in range(3)] == [False] * 3
        clock.now += 5
        assert [breaker.allow() for _ in range(3)] == [True, False, False]  # one trial
        breaker.failed(RedisTimeoutError("Timeout connecting to server"))  # it failed
        clock.now += 4.9
        assert not breaker.allow()
        clock.now += 0.1
        assert breaker.allow()
        breaker.succeeded()  # it answered
        breaker.succeeded()
        assert [breaker.allow() for _ in range(3)] == [True] * 3
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "shop.redis"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert lines[0][1].startswith("redis unavailable (TimeoutError: Timeout reading from socket)")
    assert lines[1][1] == "redis reachable again: used again"


def test_an_open_breaker_fails_a_command_at_once_without_connecting():
    breaker = Breaker(60)
    breaker.failed(RedisTimeoutError("Timeout reading from socket"))
    # Nothing listens on port 1; a connection attempt would be refused, not skipped.
    conn = redis_clients.client("redis://127.0.0.1:1/0", {}, breaker)
    with pytest.raises(RedisSkipped):
        conn.get("anything")
    assert conn.connection_pool._created_connections == 1  # made, never connected
    assert all(c._sock is None for c in conn.connection_pool._available_connections)


@pytest.mark.parametrize(("url", "kind"), [
    ("redis://10.0.0.20:6379/0", redis_clients.GuardedConnection),
    ("rediss://10.0.0.20:6380/0", SSLConnection),
    ("unix:///run/redis/redis.sock?db=0", UnixDomainSocketConnection)])
def test_every_kind_of_redis_url_keeps_its_connection_and_gets_the_breaker(url, kind):
    breaker = Breaker()
    pool = Redis.from_url(url, **redis_clients.client_options({}, url, breaker)).connection_pool
    assert issubclass(pool.connection_class, kind)
    assert pool.make_connection().breaker is breaker
