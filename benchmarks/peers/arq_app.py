"""arq: ``ArqRedis.enqueue_job``; worker ``max_jobs=10`` with arq's default 0.5 s poll of its sorted set.

Run a worker with ``python -m benchmarks.peers.arq_app``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from arq import create_pool, run_worker
from arq.connections import ArqRedis, RedisSettings

from benchmarks.peers.base import CONCURRENCY, Payload, record_async, redis_url


async def bench_task(ctx: dict[str, Any], payload: Payload) -> None:
    """The shared handler body."""
    await record_async(payload)


class WorkerSettings:
    """Read by ``arq benchmarks.peers.arq_app.WorkerSettings``."""

    functions = [bench_task]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = CONCURRENCY


class ArqProducer:
    """arq has no bulk enqueue; ``enqueue_job`` is one MULTI/EXEC pipeline after a WATCH."""

    def __init__(self, pool: ArqRedis) -> None:
        self._pool = pool

    async def enqueue(self, payload: Payload) -> None:
        await self._pool.enqueue_job("bench_task", payload)

    async def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        raise NotImplementedError("arq has no bulk enqueue")

    async def close(self) -> None:
        await self._pool.aclose()


async def make_producer(url: str) -> ArqProducer:
    """The producer factory."""
    return ArqProducer(await create_pool(RedisSettings.from_dsn(url)))


def main() -> None:
    """Worker entry: arq's ``run_worker`` with logging at WARNING (arq's CLI logs every job at INFO)."""
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
