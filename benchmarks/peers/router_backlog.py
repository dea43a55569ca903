"""router under a backlog (issue #4): fill the bench queue through router's own paths, then let W2 run on it.

``python -m benchmarks.peers.router_backlog archive --n N`` enqueues ``N`` tasks and drains them with a burst
worker whose handler raises :class:`router.SkipRetry`, so they reach the dead letter (``Q:archived`` and their
envelopes in ``Q:msg``) exactly as failed tasks do. ``... pending --n N [--batch B]`` enqueues ``N`` tasks with
``Client.enqueue_many`` in batches of ``B``, printing a progress line every 100,000. Each prints one JSON line
last: ``{"n": N, "seconds": S, "archived": A, "pending": P}`` with the queue's sizes when it is done.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import redis

import router
from benchmarks.peers.base import CONCURRENCY, QUEUE, Payload, redis_url
from benchmarks.peers.router_common import REGISTRY_PATH, SERVICE, TASK_TYPE, RouterProducer
from router.ops.logs import configure
from router.storage.keys import queue_keys

PROGRESS_EVERY = 100_000
DEFAULT_BATCH = 1_000

archiver = router.Service(SERVICE)


@archiver.handler(TASK_TYPE)
def reject(task: router.Task) -> None:
    """Send every task straight to the archive."""
    raise router.SkipRetry("archived by the backlog preload")


def _payload(i: int) -> Payload:
    return {"i": i, "ts": time.time()}


def enqueue(producer: RouterProducer, n: int, batch: int, on_progress: Callable[[int, float], None]) -> float:
    """Enqueue ``n`` tasks in batches; call ``on_progress(done, seconds)`` every :data:`PROGRESS_EVERY`."""
    t0 = time.perf_counter()
    next_report = PROGRESS_EVERY
    for first in range(0, n, batch):
        last = min(n, first + batch)
        producer.enqueue_many([_payload(i) for i in range(first, last)])
        if last >= next_report:
            on_progress(last, time.perf_counter() - t0)
            next_report += PROGRESS_EVERY
    return time.perf_counter() - t0


def _print_progress(total: int) -> Callable[[int, float], None]:
    def report(done: int, seconds: float) -> None:
        print(f"preload {done:,}/{total:,} pending in {seconds:.1f} s ({done / seconds:,.0f} tasks/s)", flush=True)

    return report


def archive(url: str, n: int, batch: int) -> float:
    """Enqueue ``n`` tasks, then archive them all with a burst worker; return the elapsed seconds."""
    configure("json", "ERROR")  # one WARNING line per archived task would dominate the cost
    t0 = time.perf_counter()
    producer = RouterProducer(url)
    try:
        enqueue(producer, n, batch, lambda done, seconds: None)
    finally:
        producer.close()
    settings = router.WorkerSettings(concurrency=CONCURRENCY, archive_max_size=max(n, 1))
    worker = router.Worker(router.load(REGISTRY_PATH), archiver, service=SERVICE, url=url, settings=settings)
    worker.run(burst=True)
    return time.perf_counter() - t0


def queue_sizes(url: str) -> dict[str, int]:
    """The bench queue's archived and pending counts."""
    spec = router.load(REGISTRY_PATH).service(SERVICE)
    qk = queue_keys(spec, QUEUE)
    client = redis.Redis.from_url(url)
    try:
        return {"archived": int(client.zcard(qk.archived)), "pending": int(client.llen(qk.pending))}
    finally:
        client.close()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("phase", choices=("archive", "pending"))
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    args = parser.parse_args()
    url = redis_url()
    if args.phase == "archive":
        seconds = archive(url, args.n, args.batch)
    else:
        producer = RouterProducer(url)
        try:
            seconds = enqueue(producer, args.n, args.batch, _print_progress(args.n))
        finally:
            producer.close()
    print(json.dumps({"n": args.n, "seconds": seconds, **queue_sizes(url)}), flush=True)


if __name__ == "__main__":
    main()
