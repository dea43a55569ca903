"""taskiq with taskiq-redis ``RedisStreamBroker`` (XREADGROUP, ack on XACK), ``--max-async-tasks 10``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskiq_redis import RedisStreamBroker

from benchmarks.peers.base import QUEUE, Payload, record_async, redis_url

broker = RedisStreamBroker(url=redis_url(), queue_name=QUEUE)


@broker.task(task_name="bench_task")
async def bench_task(payload: dict[str, Any]) -> None:
    """The shared handler body."""
    await record_async(payload)


class TaskiqProducer:
    """taskiq has no bulk kick; each ``kiq`` is one XADD."""

    async def enqueue(self, payload: Payload) -> None:
        await bench_task.kiq(payload)

    async def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        raise NotImplementedError("taskiq has no bulk enqueue")

    async def close(self) -> None:
        await broker.shutdown()


async def make_producer(url: str) -> TaskiqProducer:
    """The producer factory; ``startup`` declares the consumer group, so tasks queued now are delivered."""
    await broker.startup()
    return TaskiqProducer()
