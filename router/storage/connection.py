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
from urllib.parse import unquote, urlsplit, urlunsplit

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


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return urlsplit(url).scheme.endswith("+cluster")


def is_sentinel_url(url: str) -> bool:
    """True for ``redis+sentinel://`` and ``rediss+sentinel://`` URLs."""
    return urlsplit(url).scheme.endswith("+sentinel")


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names: the Sentinels, the master's name, db and credentials."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    ssl: bool


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Split a Sentinel URL; raises ValueError saying what the URL should look like."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    path = [p for p in parts.path.split("/") if p]
    usage = "use redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]"
    if not hosts or not path:
        raise ValueError(f"invalid Sentinel URL {url!r}: {usage}")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):  # refused, never silently read as db 0
        raise ValueError(f"invalid master/db {'/'.join(path)!r} in Sentinel URL {url!r} (the db is a number): "
                         f"{usage}")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid Sentinel address {item!r} in {url!r}: {usage}")
        sentinels.append((host.strip("[]"), int(port)))
    db = int(path[1]) if len(path) == 2 else 0
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return SentinelTarget(tuple(sentinels), path[0], db, user, password, parts.scheme.startswith("rediss"))


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


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
