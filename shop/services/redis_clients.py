"""The shop's Redis clients: every connection a web process makes to Redis (cache, page cache,
catalogue version, rate limits, jobs, read-your-writes) has short connect and read timeouts.

A Redis that accepts connections but does not answer (hung, or behind a firewall that drops
packets) must cost a request a fraction of a second, then the same as a Redis that is down
(pages served uncached, jobs run inline), not redis-py's 5 s per command. The RQ worker's own
connection is the exception (`worker_options`): it waits on BLPOP for minutes by design."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_TIMEOUT = 0.25  # seconds; config.py reads REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT


def client_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """redis-py keyword arguments for a connection used while serving a request."""
    return {"socket_connect_timeout": config.get("REDIS_CONNECT_TIMEOUT", DEFAULT_TIMEOUT),
            "socket_timeout": config.get("REDIS_SOCKET_TIMEOUT", DEFAULT_TIMEOUT)}


def worker_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """redis-py keyword arguments for the RQ worker's connection: a short connect timeout, no
    read timeout of ours (RQ sets one longer than its blocking dequeue)."""
    return {"socket_connect_timeout":
            max(config.get("REDIS_CONNECT_TIMEOUT", DEFAULT_TIMEOUT), 5.0)}


def client(url: str, config: Mapping[str, Any], **extra: Any):
    """A client on `url` with the request timeouts (`extra` passed on, e.g. protocol=3)."""
    from redis import Redis

    return Redis.from_url(url, **(client_options(config) | extra))
