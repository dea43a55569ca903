"""What both router modes share: the registry, the service and task type, the producer and the worker runner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import router
from benchmarks.peers.base import CONCURRENCY, Payload, redis_url

REGISTRY_PATH = Path(__file__).resolve().parents[1] / "bench_services.yaml"
SERVICE = "bench"
TASK_TYPE = "bench.task"


class RouterProducer:
    """One round trip per ``enqueue``; one per batch for ``enqueue_many``."""

    def __init__(self, url: str) -> None:
        self._client = router.Client(router.load(REGISTRY_PATH), url=url)

    def enqueue(self, payload: Payload) -> None:
        self._client.enqueue(TASK_TYPE, payload)

    def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        self._client.enqueue_many([(TASK_TYPE, payload) for payload in payloads])

    def close(self) -> None:
        self._client.close()


def make_producer(url: str) -> RouterProducer:
    """The producer factory (shared by both router modes: only the handler differs)."""
    return RouterProducer(url)


def run_worker(service: router.Service, concurrency: int = CONCURRENCY, metrics: bool = False) -> None:
    """Serve ``service`` until SIGTERM/SIGINT (with ``metrics``, exporting Prometheus metrics as
    ``router worker --metrics-port`` does)."""
    registry = router.load(REGISTRY_PATH)
    observer = None
    if metrics:
        from prometheus_client import CollectorRegistry  # noqa: PLC0415 - only for this mode

        from router.worker.metrics import WorkerMetrics, serve  # noqa: PLC0415

        served = CollectorRegistry()
        observer = WorkerMetrics(SERVICE, served)
        serve(0, "127.0.0.1", served)
    worker = router.Worker(registry, service, service=SERVICE, url=redis_url(), concurrency=concurrency,
                           metrics=observer)
    worker.run()
