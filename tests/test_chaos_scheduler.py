"""Chaos: three ``router scheduler`` processes on a one-second entry; two of them are killed (SIGKILL, sometimes
mid-tick) and restarted over and over during 60 fires. Every fire is enqueued once: no duplicate, no miss."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from enginekit import WorkerProcess, qk, sk, wait_for
from schedkit import cron_registry, queue_ids, start_scheduler, write_cron_yaml

FIRES = 60
EVERY_SECOND = {"name": "every-second", "task": "svc.tick", "spec": "* * * * * *", "payload": {"n": 1}}


@pytest.mark.chaos
def test_two_of_three_schedulers_killed_and_restarted_during_60_fires_enqueue_each_once(
        redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [EVERY_SECOND])
    registry = cron_registry(redis_url)
    q, index = qk(registry, "svc"), sk(registry, "svc").schedulers
    procs: list[WorkerProcess] = [start_scheduler(path, redis_url, "--heartbeat-s", "1") for _ in range(3)]
    everyone = list(procs)
    rng = random.Random(10)
    kills = 0
    try:
        wait_for(lambda: redis_client.zcard(index) == 3, 20, "three schedulers up")
        first = int(time.time()) + 1
        last = first + FIRES - 1
        next_kill = first + rng.uniform(0.5, 1.5)
        while next_kill < last:
            # Pacing the chaos, not waiting for work: kill at the chosen moment, often just after a second begins,
            # while the survivors are inside their tick.
            time.sleep(max(0.0, next_kill - time.time()))
            victim = rng.randrange(2)  # procs[2] is never killed
            procs[victim].proc.send_signal(signal.SIGKILL)
            procs[victim].wait(10)
            kills += 1
            procs[victim] = start_scheduler(path, redis_url, "--heartbeat-s", "1")
            everyone.append(procs[victim])
            next_kill = int(time.time()) + rng.randint(1, 3) + rng.choice([0.0005, 0.002, 0.005, 0.3, 0.7])
        claimed = lambda: int(redis_client.get(q.cron("every-second")) or 0) // 1000  # noqa: E731
        wait_for(lambda: claimed() >= last, 10, f"the fire of second {last}")
        for p in procs:
            p.signal(signal.SIGTERM)
        codes = [p.wait(20) for p in procs]
    finally:
        for p in everyone:
            p.kill()
    counts: Counter[int] = Counter()
    for task_id, n in queue_ids(redis_client, q).items():
        counts[int(task_id.split(":")[-1]) // 1000] += n
    window = range(first, last + 1)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    misses = [s for s in window if counts[s] == 0]
    started = sum(1 for p in everyone if p.find("scheduler_started"))
    print(f"\n[scheduler chaos] {FIRES} fires, {kills} SIGKILLs, {started} scheduler starts: "
          f"{sum(counts[s] for s in window)} enqueued, {duplicates} duplicates, {len(misses)} misses")
    assert codes == [0, 0, 0]
    assert kills >= 15
    assert duplicates == 0, {s: n for s, n in counts.items() if n > 1}
    assert misses == []
    assert int(redis_client.hget(q.stats, "enqueued")) == len(counts)  # the counter agrees: nothing enqueued twice
    assert any(p.find("cron_fired") for p in everyone[3:])  # restarted replicas won slots in the race too
