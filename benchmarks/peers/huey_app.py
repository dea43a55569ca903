"""huey: ``RedisHuey`` (blocking BRPOP dequeue, results off), consumer run as ``-k thread -w 10``."""

from __future__ import annotations

from collections.abc import Sequence

from huey import RedisHuey

from benchmarks.peers.base import QUEUE, Payload, record, redis_url

huey = RedisHuey(QUEUE, url=redis_url(), results=False)


@huey.task()  # type: ignore[untyped-decorator]
def bench_task(payload: Payload) -> None:
    """The shared handler body."""
    record(payload)


class HueyProducer:
    """huey has no bulk enqueue; each call is one LPUSH of a pickled message."""

    def enqueue(self, payload: Payload) -> None:
        bench_task(payload)

    def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        raise NotImplementedError("huey has no bulk enqueue")

    def close(self) -> None:
        huey.storage.conn.close()


def make_producer(url: str) -> HueyProducer:
    """The producer factory (the URL comes from the environment at import, like the consumer's)."""
    return HueyProducer()
