"""Redis clients built from a URL with explicit timeouts and retry policy, never redis-py's defaults.

Schemes: ``redis://``, ``rediss://`` and ``unix://`` for one server; ``redis+cluster://host:port`` (or
``rediss+cluster://``) for Redis Cluster; ``redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]``
for a master found through Sentinel (the client asks the Sentinels again after a failover). Producers fail fast
and router decides what to retry (an enqueue is idempotent by task id); consumers back off in their own loop, so
redis-py's built-in retry is off everywhere: its defaults retry a timed-out command with backoff, which can block a
caller for about a minute on an unresponsive server.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from router.errors import BrokerError
from router.redisurl import SentinelTarget, is_cluster_url, is_sentinel_url, parse_sentinel_url

SyncRedis = redis.Redis | redis.cluster.RedisCluster
AsyncRedis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class FailoverRefusal(redis.exceptions.ResponseError):
    """A write refused for a reason a failover heals: the server is a replica now (``READONLY``, which redis-py
    only recognises outside scripts) or a master lacks the replicas its ``min-replicas-to-write`` asks for
    (``NOREPLICAS``: a failover is under way, or its replica is down). Nothing was written. Transient: the broker
    drops its connections, so the next call reconnects (a Sentinel client asks the Sentinels again)."""


_FAILOVER_CODES = ("READONLY", "NOREPLICAS")


def failover_refusal(exc: redis.exceptions.ResponseError) -> FailoverRefusal | None:
    """``exc`` as a :class:`FailoverRefusal`, or None when it is another refusal."""
    text = str(exc)
    # A plain command's reply starts with the code; a script's quotes its call's error as "...: -NOREPLICAS ...".
    if any(text.startswith(code) or f"-{code} " in text for code in _FAILOVER_CODES):
        return FailoverRefusal(text)
    return None


#: Errors that heal by themselves (a restart, a failover, a cluster resharding): producers retry them with the same
#: task id, workers wait them out with backoff. Anything else is a configuration error and fails loudly.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    FailoverRefusal,
)


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


#: Longest blocking pop of an idle worker. Each one ends with a dequeue pipelined behind it, so an idle worker sends
#: about four commands (scripts' inner ones counted) per BLOCK_S per queue; stopping cuts a pop short.
BLOCK_S = 5.0
TIMEOUTS = {
    Role.PRODUCER: Timeouts(connect_s=2.0, read_s=2.0),
    Role.CONSUMER: Timeouts(connect_s=2.0, read_s=5.0),
    # A blocking pop waits up to BLOCK_S on the server; the socket must outlast it.
    Role.BLOCKING: Timeouts(connect_s=2.0, read_s=BLOCK_S + 3.0),
}


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
    if is_sentinel_url(url):
        t = parse_sentinel_url(url)
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(t.sentinels), sentinel_kwargs=_sentinel_options(t), **_sentinel_options(t)
        )
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            t.master, db=t.db, username=t.username, password=t.password, ssl=t.ssl, **opts
        )
        return cast(redis.Redis, master)
    if is_cluster_url(url):
        opts.pop("health_check_interval")
        try:
            return redis.cluster.RedisCluster.from_url(_plain_url(url), **opts)
        except redis.exceptions.RedisClusterException as exc:  # not a RedisError: give it our type and a fix
            raise BrokerError(f"cannot reach Redis Cluster at {url!r}: {exc}; check the URL and that the "
                              "cluster is up") from exc
    return redis.Redis.from_url(url, **opts)


def _sentinel_options(t: SentinelTarget) -> dict[str, Any]:
    # The Sentinels themselves: short timeouts so a dead one is skipped quickly.
    return {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "ssl": t.ssl}


def connect_async(url: str, role: Role = Role.PRODUCER) -> AsyncRedis:
    """An asyncio client for ``url`` with the timeouts of ``role``."""
    opts = _options(role)
    if is_sentinel_url(url):
        t = parse_sentinel_url(url)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(t.sentinels), sentinel_kwargs=_sentinel_options(t), **_sentinel_options(t)
        )
        master = sentinel.master_for(t.master, db=t.db, username=t.username, password=t.password, ssl=t.ssl, **opts)
        return cast(redis.asyncio.Redis, master)
    if is_cluster_url(url):
        opts.pop("health_check_interval")
        return redis.asyncio.cluster.RedisCluster.from_url(_plain_url(url), **opts)
    return redis.asyncio.Redis.from_url(url, **opts)
