"""Test-only helpers shipped for users' own test suites: a Redis Cluster and a Sentinel trio on free ports.

The runtime never imports this package (a test checks that); the single throwaway server lives in
:mod:`router.ops.localredis` because ``router demo`` runs on it.
"""

from __future__ import annotations

from router.ops.localredis import RedisServer, find_redis_server, reap_orphans, wait_until
from router.testing.cluster import RedisClusterServer
from router.testing.sentinel import RedisSentinelServer

__all__ = ["RedisClusterServer", "RedisSentinelServer", "RedisServer", "find_redis_server", "reap_orphans",
           "wait_until"]
