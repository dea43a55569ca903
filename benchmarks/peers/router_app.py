"""router: ``Client.enqueue`` / ``enqueue_many`` and a ``Worker`` with ``concurrency=10`` (sync handler, threads).

Run a worker with ``python -m benchmarks.peers.router_app [--async]``; ``--async`` serves the same task type
with the ``async def`` handler of :mod:`benchmarks.peers.router_async_app` instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import router
from benchmarks.peers.base import CONCURRENCY, Payload, record, redis_url

REGISTRY_PATH = Path(__file__).resolve().parents[1] / "bench_services.yaml"
SERVICE = "bench"
TASK_TYPE = "bench.task"

app = router.Service(SERVICE)


@app.handler(TASK_TYPE)
def handle(task: router.Task) -> None:
    """The shared handler body."""
    record(task.payload)


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


def run_worker(service: router.Service, concurrency: int = CONCURRENCY) -> None:
    """Serve ``service`` until SIGTERM/SIGINT."""
    registry = router.load(REGISTRY_PATH)
    worker = router.Worker(registry, service, service=SERVICE, url=redis_url(), concurrency=concurrency)
    worker.run()


def main() -> None:
    """Worker entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--async", dest="use_async", action="store_true", help="use the asyncio handler")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    if args.use_async:
        from benchmarks.peers.router_async_app import app as async_app  # noqa: PLC0415

        run_worker(async_app, args.concurrency)
    else:
        run_worker(app, args.concurrency)


if __name__ == "__main__":
    main()
