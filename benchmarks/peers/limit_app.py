"""The "limit" baselines: bare redis-py, no library. One LPUSH per task; the worker LMOVEs and RPUSHes.

``--batch 1`` moves and records one task per round trip; ``--batch 100`` pipelines up to 100 LMOVEs and then
the matching RPUSHes, blocking with BLMOVE only when the queue is empty. ``--batch 100 --threads 10`` moves
tasks the same way but hands each to one of 10 threads that runs the shared handler body (one RPUSH of its own):
the ceiling of any thread-based worker with this handler, since its broker costs next to nothing.
There is no ack, retry or lease.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType

import redis

from benchmarks.peers.base import RESULTS_KEY, Payload, record, redis_url

QUEUE_KEY = "limit:queue"
PROCESSING_KEY = "limit:processing"
BLOCK_S = 1


class LimitProducer:
    """LPUSH one JSON payload per call; ``enqueue_many`` sends one pipeline of LPUSHes."""

    def __init__(self, url: str) -> None:
        self._r = redis.Redis.from_url(url)

    def enqueue(self, payload: Payload) -> None:
        self._r.lpush(QUEUE_KEY, json.dumps(payload))

    def enqueue_many(self, payloads: Sequence[Payload]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for payload in payloads:
            pipe.lpush(QUEUE_KEY, json.dumps(payload))
        pipe.execute()

    def close(self) -> None:
        self._r.close()


def make_producer(url: str) -> LimitProducer:
    """The producer factory every contender module exposes."""
    return LimitProducer(url)


def _record_raw(r: redis.Redis, raw: bytes | str) -> None:
    start = time.time()
    r.rpush(RESULTS_KEY, f"{json.loads(raw)['ts']} {start}")


def work_one_at_a_time(r: redis.Redis) -> None:
    """BLMOVE one task, RPUSH its result: two round trips per task."""
    while True:
        raw = r.blmove(QUEUE_KEY, PROCESSING_KEY, BLOCK_S, "RIGHT", "LEFT")
        if raw is not None:
            _record_raw(r, raw)


def _lmove_many(r: redis.Redis, count: int) -> list[bytes | str]:
    pipe = r.pipeline(transaction=False)
    for _ in range(count):
        pipe.lmove(QUEUE_KEY, PROCESSING_KEY, "RIGHT", "LEFT")
    return [raw for raw in pipe.execute() if raw is not None]


def _batches(r: redis.Redis, batch: int) -> Iterator[list[bytes | str]]:
    """Forever: block for one task, then yield it with up to ``batch`` - 1 more, and further batches of up to
    ``batch`` (one round trip each) until the queue is empty again; an idle worker sends one BLMOVE per second."""
    while True:
        first = r.blmove(QUEUE_KEY, PROCESSING_KEY, BLOCK_S, "RIGHT", "LEFT")
        if first is None:
            continue
        raws = [first, *_lmove_many(r, batch - 1)]
        while raws:
            yield raws
            raws = _lmove_many(r, batch)


def work_pipelined(r: redis.Redis, batch: int) -> None:
    """Move tasks in batches and RPUSH each batch's results in one more round trip."""
    for raws in _batches(r, batch):
        out = r.pipeline(transaction=False)
        for raw in raws:
            out.rpush(RESULTS_KEY, f"{json.loads(raw)['ts']} {time.time()}")
        out.execute()


def work_threaded(r: redis.Redis, batch: int, threads: int) -> None:
    """Move tasks in batches into a bounded local queue that ``threads`` handler threads drain, each calling
    the shared handler body."""
    jobs: queue.Queue[bytes | str] = queue.Queue(maxsize=2 * batch)

    def handler() -> None:
        while True:
            record(json.loads(jobs.get()))

    for _ in range(threads):
        threading.Thread(target=handler, daemon=True).start()
    for raws in _batches(r, batch):
        for raw in raws:
            jobs.put(raw)


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    """Worker entry: ``python -m benchmarks.peers.limit_app --batch N``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="handler threads (0: record inline)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit)
    r = redis.Redis.from_url(redis_url())
    if args.threads > 0:
        work_threaded(r, max(1, args.batch), args.threads)
    elif args.batch <= 1:
        work_one_at_a_time(r)
    else:
        work_pipelined(r, args.batch)


if __name__ == "__main__":
    main()
