"""A multi-process worker group (`router worker --processes 2`): children run, crashed ones are restarted,
SIGTERM stops the whole group cleanly and its tasks are all processed by the children."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    Recorder,
    build_registry,
    chaos_env,
    raw_client,
    sk,
    start_worker,
    wait_for,
    workers,
    write_registry_yaml,
)

import router

pytestmark = pytest.mark.chaos


def _live_pids(r: object, registry: router.Registry) -> set[int]:
    keys = sk(registry, "chaos")
    ids = r.zrange(keys.workers, 0, -1)  # type: ignore[attr-defined]
    docs = [r.get(keys.worker(i.decode())) for i in ids]  # type: ignore[attr-defined]
    return {json.loads(d)["pid"] for d in docs if d}


def test_process_group_restarts_a_crashed_child_and_stops_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    r = raw_client(redis_url)
    registry = build_registry(redis_url, CHAOS_SERVICES)
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    ns = "rec-supervisor"
    rec = Recorder(r, ns)
    with workers() as started:
        group = start_worker(path, "chaos", redis_url, processes=2, extra_env=chaos_env(redis_url, ns))
        started.append(group)
        first = wait_for(lambda: (p if len(p := _live_pids(r, registry)) == 2 else None), 20, "two live children")
        assert group.pid not in first, "the parent supervises; only children run workers"

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # The heartbeat index keeps the dead child until its TTL; look for a third, new pid instead.
        wait_for(lambda: _live_pids(r, registry) - first, 20, "a restarted child with a new pid")
        assert any(e.get("exitcode") == -signal.SIGKILL for e in group.find("worker_process_died")), group.log_tail()

        with router.Client(registry, url=redis_url) as client:
            client.enqueue_many([("chaos.work", {}) for _ in range(40)])
        wait_for(lambda: rec.count("done") == 40, 20, "40 tasks done by the group")
        doers = {pid for _, pid, _ in rec.entries("done")}
        assert group.pid not in doers and doers <= _live_pids(r, registry) | first

        group.signal(signal.SIGTERM)
        assert group.wait(15) == 0, group.log_tail()
    r.close()
