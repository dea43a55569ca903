"""Dramatiq: ``RedisBroker`` with its default middleware, run as ``--processes 1 --threads 10``."""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.peers.base import QUEUE, Payload, record, redis_url

broker = RedisBroker(url=redis_url())  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def bench_task(payload: Payload) -> None:
    """The shared handler body."""
    record(payload)


class DramatiqProducer:
    """Dramatiq has no bulk enqueue (``group`` sends one message at a time)."""

    def enqueue(self, payload: Payload) -> None:
        bench_task.send(payload)

    def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        raise NotImplementedError("dramatiq has no bulk enqueue")

    def close(self) -> None:
        broker.close()


def make_producer(url: str) -> DramatiqProducer:
    """The producer factory (the broker is bound to the URL at import)."""
    return DramatiqProducer()
