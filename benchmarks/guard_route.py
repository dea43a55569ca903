"""Microbenchmark of the enqueue guard (no Redis): microseconds per ``Guard.route`` for the benchmark task type,
with the fast schema check and with jsonschema alone, plus one round trip's worth for scale.

Run: ``python benchmarks/guard_route.py`` (prints medians of 5 runs of 50,000 calls each).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import router
from router.producer.guard import Guard

REGISTRY = Path(__file__).resolve().parent / "bench_services.yaml"
CALLS = 50_000


def _per_call_us(guard: Guard, payload: dict[str, float]) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        guard.route("bench.task", payload)
    return (time.perf_counter() - start) / CALLS * 1e6


def main() -> None:
    registry = router.load(REGISTRY)
    payload = {"i": 1, "ts": time.time()}
    fast = Guard(registry)
    slow = Guard(registry)
    slow.route("bench.task", payload)
    # The same guard with its fast check removed: what every enqueue paid before the fast path existed.
    compiled = slow._compiled["bench.task"]
    slow._compiled["bench.task"] = type(compiled)(compiled.spec, compiled.validator, None, compiled.keys)
    with_fast = statistics.median(_per_call_us(fast, payload) for _ in range(5))
    jsonschema_only = statistics.median(_per_call_us(slow, payload) for _ in range(5))
    print(f"Guard.route: {with_fast:.1f} us with the fast check, {jsonschema_only:.1f} us with jsonschema alone "
          f"({CALLS:,} calls, median of 5)")


if __name__ == "__main__":
    main()
