"""router: ``Client.enqueue`` / ``enqueue_many`` and a ``Worker`` with ``concurrency=10`` (sync handler, threads).

Run a worker with ``python -m benchmarks.peers.router_app [--async] [--metrics]``; ``--async`` serves the same task
type with the ``async def`` handler of :mod:`benchmarks.peers.router_async_app` instead; ``--metrics`` turns on the
worker's Prometheus metrics (served on a free loopback port), to measure what they cost.
"""

from __future__ import annotations

import argparse

import router
from benchmarks.peers import router_async_app
from benchmarks.peers.base import CONCURRENCY, record
from benchmarks.peers.router_common import SERVICE, TASK_TYPE, make_producer, run_worker

__all__ = ["app", "make_producer"]

app = router.Service(SERVICE)


@app.handler(TASK_TYPE)
def handle(task: router.Task) -> None:
    """The shared handler body."""
    record(task.payload)


def main() -> None:
    """Worker entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--async", dest="use_async", action="store_true", help="use the asyncio handler")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--metrics", action="store_true", help="Prometheus metrics on")
    args = parser.parse_args()
    run_worker(router_async_app.app if args.use_async else app, args.concurrency, metrics=args.metrics)


if __name__ == "__main__":
    main()
