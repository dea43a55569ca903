"""saq: ``Queue.from_url`` (BLMOVE dequeue), worker ``concurrency=10`` on one event loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saq import Queue

from benchmarks.peers.base import CONCURRENCY, QUEUE, Payload, record_async, redis_url

queue = Queue.from_url(redis_url(), name=QUEUE)


async def bench_task(ctx: dict[str, Any], *, i: int, ts: float) -> None:
    """The shared handler body; saq passes the payload as keyword arguments."""
    await record_async({"i": i, "ts": ts})


settings = {"queue": queue, "functions": [bench_task], "concurrency": CONCURRENCY}


class SaqProducer:
    """saq has no bulk enqueue (``Queue.batch`` only groups error handling); one Lua call per job."""

    async def enqueue(self, payload: Payload) -> None:
        await queue.enqueue("bench_task", **payload)

    async def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        raise NotImplementedError("saq has no bulk enqueue")

    async def close(self) -> None:
        await queue.disconnect()


async def make_producer(url: str) -> SaqProducer:
    """The producer factory (the queue is bound to the URL at import)."""
    await queue.connect()
    return SaqProducer()
