"""The producer, run as its own process so that no two libraries share an interpreter.

``python -m benchmarks.produce MODULE --n N [--batch B | --rate R]`` imports ``MODULE`` (a contender module
from :mod:`benchmarks.peers`), enqueues ``N`` payloads ``{"i": n, "ts": time.time()}`` one call at a time,
in bulk batches of ``B``, or one call at a time paced at ``R`` per second, and prints one JSON line:
``{"n": N, "seconds": S}`` where ``S`` runs from the first call to the return of the last (set-up excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import time
from typing import Any

from benchmarks.peers.base import AsyncProducer, Payload, SyncProducer, redis_url


def _payload(i: int) -> Payload:
    return {"i": i, "ts": time.time()}


def _pause_until(due: float) -> float:
    """Seconds to sleep before ``due`` (a ``perf_counter`` instant); zero when late."""
    return max(0.0, due - time.perf_counter())


def run_sync(producer: SyncProducer, n: int, batch: int, rate: float) -> float:
    """Enqueue ``n`` tasks; return the elapsed seconds."""
    t0 = time.perf_counter()
    if batch > 1:
        for first in range(0, n, batch):
            producer.enqueue_many([_payload(i) for i in range(first, min(n, first + batch))])
    elif rate > 0:
        for i in range(n):
            time.sleep(_pause_until(t0 + i / rate))
            producer.enqueue(_payload(i))
    else:
        for i in range(n):
            producer.enqueue(_payload(i))
    return time.perf_counter() - t0


async def run_async(producer: AsyncProducer, n: int, batch: int, rate: float) -> float:
    """The asyncio twin of :func:`run_sync`."""
    t0 = time.perf_counter()
    if batch > 1:
        for first in range(0, n, batch):
            await producer.enqueue_many([_payload(i) for i in range(first, min(n, first + batch))])
    elif rate > 0:
        for i in range(n):
            await asyncio.sleep(_pause_until(t0 + i / rate))
            await producer.enqueue(_payload(i))
    else:
        for i in range(n):
            await producer.enqueue(_payload(i))
    return time.perf_counter() - t0


async def _produce_async(module: Any, n: int, batch: int, rate: float) -> float:
    producer: AsyncProducer = await module.make_producer(redis_url())
    try:
        return await run_async(producer, n, batch, rate)
    finally:
        await producer.close()


def produce(module_name: str, n: int, batch: int = 1, rate: float = 0.0) -> float:
    """Import the contender module and enqueue with its producer; return the elapsed seconds."""
    module = importlib.import_module(module_name)
    if inspect.iscoroutinefunction(module.make_producer):
        return asyncio.run(_produce_async(module, n, batch, rate))
    producer: SyncProducer = module.make_producer(redis_url())
    try:
        return run_sync(producer, n, batch, rate)
    finally:
        producer.close()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("module")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    seconds = produce(args.module, args.n, args.batch, args.rate)
    print(json.dumps({"n": args.n, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
