"""Three scheduler replicas as separate processes, each with its own connections, racing on the same 200 slots
(single server and cluster): every slot is enqueued exactly once, whoever wins it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from enginekit import FIXTURES, PLACEHOLDER_URL, REPO, qk, subprocess_env
from schedkit import cron_registry, entry, queue_ids, write_cron_yaml

from router.scheduler.entries import cron_task_id

START = 1_717_243_200
SLOTS = 200
REPLICAS = 3


def test_three_replicas_racing_on_200_slots_enqueue_each_slot_once(target: tuple[str, Any], tmp_path: Path) -> None:
    url, client = target
    path = write_cron_yaml(tmp_path / "services.yaml", PLACEHOLDER_URL,  # the replicas get the URL as an argument
                           [{"name": "race", "task": "svc.tick", "spec": "* * * * * *", "payload": {"n": 1}}])
    procs = [subprocess.Popen([sys.executable, str(FIXTURES / "race_scheduler.py"), url, str(path), str(START),
                               str(SLOTS)], cwd=REPO, env=subprocess_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
             for _ in range(REPLICAS)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go = time.time() + 0.3  # one shared start time: the replicas reach each slot together
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{go}\n")
            p.stdin.flush()
        outcomes = []
        for p in procs:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0
            outcomes.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    slots = set(range(START + 1, START + SLOTS + 1))
    fired = Counter(s for o in outcomes for s in o["fired"])
    wins = [len(o["fired"]) for o in outcomes]
    print(f"\n[3 replicas, {SLOTS} slots] enqueued by each replica: {wins}; "
          f"duplicates {sum(n - 1 for n in fired.values())}, misses {len(slots - set(fired))}")
    assert set(fired) == slots and set(fired.values()) == {1}, wins
    assert sum(1 for w in wins if w) >= 2, f"no race happened: {wins}"
    for o in outcomes:  # each replica tried every slot: it fired it or found it claimed
        assert sorted(o["fired"] + o["claimed_elsewhere"]) == sorted(slots)
    registry = cron_registry(url, entry("race", "* * * * * *"))
    q = qk(registry, "svc")
    assert queue_ids(client, q) == {cron_task_id("race", s): 1 for s in slots}
    assert int(client.hget(q.stats, "enqueued")) == SLOTS
