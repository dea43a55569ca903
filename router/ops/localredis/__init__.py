"""Throwaway local Redis servers: what ``router demo`` runs on (and the test fixtures build on)."""

from __future__ import annotations

from router.ops.localredis.binary import ENV_BINARY, find_redis_server
from router.ops.localredis.process import reap_orphans, wait_until
from router.ops.localredis.server import RedisServer

__all__ = ["ENV_BINARY", "RedisServer", "find_redis_server", "reap_orphans", "wait_until"]
