"""Redis clients built from a URL with explicit timeouts and retry policy, never redis-py's defaults.

Schemes: ``redis://``, ``rediss://`` and ``unix://`` for one server; ``redis+cluster://host:port`` (or
``rediss+cluster://``) for Redis Cluster. Producers fail fast and router decides what to retry (an enqueue is
idempotent by task id); consumers back off in their own loop, so redis-py's built-in retry is off everywhere
(``../shared/reference/reliability.md`` 2.5: its defaults can block a command for a minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

SyncRedis = redis.Redis | redis.cluster.RedisCluster
AsyncRedis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class Role(str, Enum):
    """What a connection is for; decides its timeouts."""

    PRODUCER = "producer"
    CONSUMER = "consumer"
    BLOCKING = "blocking"


@dataclass(frozen=True)
class Timeouts:
    """Socket timeouts in seconds for one role."""

    connect_s: float
    read_s: float


BLOCK_S = 2.0
TIMEOUTS = {
    Role.PRODUCER: Timeouts(connect_s=2.0, read_s=2.0),
    Role.CONSUMER: Timeouts(connect_s=2.0, read_s=5.0),
    # A blocking pop waits up to BLOCK_S on the server; the socket must outlast it.
    Role.BLOCKING: Timeouts(connect_s=2.0, read_s=BLOCK_S + 3.0),
}


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return urlsplit(url).scheme.endswith("+cluster")


def _plain_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.replace("+cluster", "")))


def _options(role: Role) -> dict[str, Any]:
    t = TIMEOUTS[role]
    return {
        "socket_connect_timeout": t.connect_s,
        "socket_timeout": t.read_s,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 0),
    }


def connect(url: str, role: Role = Role.CONSUMER) -> SyncRedis:
    """A sync client for ``url`` with the timeouts of ``role``."""
    opts = _options(role)
    if is_cluster_url(url):
        opts.pop("health_check_interval")
        return redis.cluster.RedisCluster.from_url(_plain_url(url), **opts)
    return redis.Redis.from_url(url, **opts)


def connect_async(url: str, role: Role = Role.PRODUCER) -> AsyncRedis:
    """An asyncio client for ``url`` with the timeouts of ``role``."""
    opts = _options(role)
    if is_cluster_url(url):
        opts.pop("health_check_interval")
        return redis.asyncio.cluster.RedisCluster.from_url(_plain_url(url), **opts)
    return redis.asyncio.Redis.from_url(url, **opts)
