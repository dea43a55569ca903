"""Aggregation under kill -9: workers killed at random moments while groups flush lose no member and aggregate none
twice. A flush is one script (the group's head swapped for one task), so a kill lands before or after it; the
aggregate task it created may run again after a kill (at least once), so batches are counted by task id."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from enginekit import (
    build_registry,
    chaos_env,
    qk,
    raw_client,
    start_worker,
    stats,
    task,
    wait_for,
    workers,
    write_registry_yaml,
)

import router
from router.registry.model import AggregateSpec

pytestmark = pytest.mark.chaos

MEMBERS, GROUPS = 600, 20


def test_kill_9_while_groups_flush_loses_and_duplicates_no_member(redis_url: str, tmp_path: Path) -> None:
    member = task(aggregate=AggregateSpec("agg.batch", grace_s=0.1, max_delay_s=0.5, max_size=7))
    services: dict[str, Any] = {"agg": {"app": "agg_app:app", "tasks": {"agg.item": member, "agg.batch": task()}}}
    reg = build_registry(redis_url, services)
    path = write_registry_yaml(tmp_path / "services.yaml", services, "redis://127.0.0.1:1/0")
    ns = "agg-chaos"
    env = chaos_env(redis_url, ns)
    r = raw_client(redis_url)
    rng = random.Random(7)
    kills = 0
    t0 = time.monotonic()
    with router.Client(reg, url=redis_url) as c:
        c.enqueue_many([("agg.item", {"n": i}, {"group": f"g{i % GROUPS}"}) for i in range(MEMBERS)])
    with workers() as procs:
        for _ in range(5):
            proc = start_worker(path, "agg", redis_url, maintenance_s=0.05, extra_env=env)
            procs.append(proc)
            wait_for(lambda floor=kills * 10: r.llen(f"{ns}:batches") > floor, 20,
                     f"flushes before kill {kills + 1}\n{proc.log_tail()}")
            time.sleep(rng.uniform(0.0, 0.3))  # the fault's timing: a random moment among the flushes
            proc.signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
        procs.append(start_worker(path, "agg", redis_url, maintenance_s=0.05, extra_env=env))
        wait_for(lambda: _aggregated(r, ns) >= MEMBERS, 60, "every member in a batch")
    batches = _batches(r, ns)
    seen = Counter(item["n"] for items in batches.values() for item in items)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    lost = MEMBERS - len(seen)
    print(f"\naggregation kill -9 x{kills}: lost {lost}, duplicated {duplicated}, batches {len(batches)}, "
          f"{time.monotonic() - t0:.1f} s")
    assert lost == 0 and duplicated == 0
    assert all(len(items) <= 7 for items in batches.values())
    q = qk(reg, "agg")
    assert r.zcard(q.groups) == 0 and stats(r, q).get("aggregating", 0) == 0
    r.close()


def _batches(r: Any, ns: str) -> dict[str, list[dict[str, int]]]:
    out: dict[str, list[dict[str, int]]] = {}
    for raw in r.lrange(f"{ns}:batches", 0, -1):
        task_id, items = raw.decode().split(" ", 1)
        out[task_id] = json.loads(items)  # a batch run twice (a kill after it ran) is one batch
    return out


def _aggregated(r: Any, ns: str) -> int:
    return sum(len(items) for items in _batches(r, ns).values())
