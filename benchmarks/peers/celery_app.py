"""Celery with the Redis broker, no result backend; worker ``-P threads -c 10`` without gossip/mingle/heartbeat."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from benchmarks.peers.base import QUEUE, Payload, record, redis_url

app = Celery("bench", broker=redis_url())
app.conf.update(task_default_queue=QUEUE, task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task(name="bench_task")  # type: ignore[untyped-decorator]
def bench_task(payload: Payload) -> None:
    """The shared handler body."""
    record(payload)


class CeleryProducer:
    """Celery has no bulk publish for plain tasks; ``group`` publishes one message per task."""

    def enqueue(self, payload: Payload) -> None:
        bench_task.delay(payload)

    def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        raise NotImplementedError("celery has no bulk enqueue")

    def close(self) -> None:
        app.close()


def make_producer(url: str) -> CeleryProducer:
    """The producer factory (the app is bound to the URL at import)."""
    return CeleryProducer()
