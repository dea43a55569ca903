"""RQ: ``Queue.enqueue`` / ``enqueue_many``; worker ``worker-pool -n 10`` of ``SimpleWorker`` (no fork per job)."""

from __future__ import annotations

from collections.abc import Sequence

import redis
from rq import Queue

from benchmarks.peers.base import QUEUE, Payload, record


def bench_task(payload: Payload) -> None:
    """The shared handler body (RQ imports it by dotted path in the worker)."""
    record(payload)


class RqProducer:
    """``enqueue`` is one pipeline per job; ``enqueue_many`` one pipeline for the whole batch."""

    def __init__(self, url: str) -> None:
        self._conn = redis.Redis.from_url(url)
        self._queue = Queue(QUEUE, connection=self._conn)

    def enqueue(self, payload: Payload) -> None:
        self._queue.enqueue(bench_task, payload)

    def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        self._queue.enqueue_many([Queue.prepare_data(bench_task, args=(p,)) for p in payloads])

    def close(self) -> None:
        self._conn.close()


def make_producer(url: str) -> RqProducer:
    """The producer factory."""
    return RqProducer(url)
