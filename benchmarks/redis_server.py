"""The benchmark's own Redis: router's throwaway ``RedisServer`` (the one ``router demo`` runs on).

A free loopback port, ``--save "" --appendonly no``, stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from router.ops.localredis import RedisServer


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway Redis and yield its URL."""
    with RedisServer() as server:
        yield server.url
