"""The contract every contender module follows, and the handler body they all share.

A contender module exposes ``make_producer(url)`` returning a :class:`SyncProducer` or (for asyncio libraries)
an awaitable of an :class:`AsyncProducer`. Its handler calls :func:`record` or :func:`record_async` first thing:
one ``RPUSH results "<ts> <start>"``, which is both the completion counter and the latency sample.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import redis
import redis.asyncio as aredis

URL_ENV = "BENCH_REDIS_URL"
RESULTS_KEY = "results"
QUEUE = "default"
#: Handler concurrency of one worker process, the same for every contender that has the notion.
CONCURRENCY = 10

Payload = dict[str, Any]
"""What every contender enqueues: ``{"i": n, "ts": time.time()}``."""


def redis_url() -> str:
    """The benchmark Redis URL; set by the harness in every subprocess it starts."""
    return os.environ.get(URL_ENV, "redis://127.0.0.1:6399/0")


class SyncProducer(Protocol):
    """Enqueues tasks from a plain thread; ``enqueue_many`` is only called when the contender has a bulk API."""

    def enqueue(self, payload: Payload) -> None: ...

    def enqueue_many(self, payloads: Sequence[Payload]) -> None: ...

    def close(self) -> None: ...


class AsyncProducer(Protocol):
    """The asyncio twin of :class:`SyncProducer`."""

    async def enqueue(self, payload: Payload) -> None: ...

    async def enqueue_many(self, payloads: Sequence[Payload]) -> None: ...

    async def close(self) -> None: ...


_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
_async_client: aredis.Redis | None = None


def _results_client() -> redis.Redis:
    global _sync_client  # noqa: PLW0603 - one pool per process, shared by the handler threads
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(redis_url())
    return _sync_client


def record(payload: Mapping[str, Any]) -> None:
    """The handler body of every sync contender: note the start time, then one RPUSH."""
    start = time.time()
    _results_client().rpush(RESULTS_KEY, f"{payload['ts']} {start}")


async def record_async(payload: Mapping[str, Any]) -> None:
    """The handler body of every asyncio contender (one client per worker process and event loop)."""
    global _async_client  # noqa: PLW0603 - one client per worker process
    start = time.time()
    if _async_client is None:
        _async_client = aredis.Redis.from_url(redis_url())
    await _async_client.rpush(RESULTS_KEY, f"{payload['ts']} {start}")
