"""Worker processes killed, frozen and stopped mid-work (subprocess workers through the CLI, lease 2 s)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    Recorder,
    WorkerProcess,
    build_registry,
    chaos_env,
    qk,
    raw_client,
    start_worker,
    wait_for,
    workers,
    write_registry_yaml,
)
from enginekit import stats as qstats

import router

pytestmark = pytest.mark.chaos

LEASE_S = 2.0
MAINTENANCE_S = 0.5
GRACE_S = 0.2


@pytest.fixture
def chaos(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    r = raw_client(redis_url)
    request.addfinalizer(r.close)
    ns = f"rec-{request.node.name}"
    return {
        "url": redis_url,
        "reg": build_registry(redis_url, CHAOS_SERVICES),
        "path": write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL),
        "r": r,
        "rec": Recorder(r, ns),
        "env": chaos_env(redis_url, ns),
    }


def spawn(chaos: dict[str, Any], concurrency: int, **settings: Any) -> WorkerProcess:
    return start_worker(chaos["path"], "chaos", chaos["url"], concurrency=concurrency, lease_s=LEASE_S,
                        maintenance_s=MAINTENANCE_S, recovery_grace_s=GRACE_S, extra_env=chaos["env"], **settings)


def test_kill_9_with_50_in_flight_recovers_all(chaos: dict[str, Any]) -> None:
    url, reg, r, rec = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"]
    q = qk(reg, "chaos")
    with router.Client(reg, url=url) as c:
        ids = {i.id for i in c.enqueue_many([("chaos.work", {"gate": "g", "i": i}) for i in range(50)])}
    with workers() as procs:
        first = spawn(chaos, 50)
        procs.append(first)
        wait_for(lambda: rec.count("started") == 50, 30,
                 f"50 handlers running in the first worker\n{first.log_tail()}")  # fmt: skip
        assert r.zcard(q.active) == 50
        first.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert first.wait(10) == -signal.SIGKILL
        rec.open_gate("g")
        second = spawn(chaos, 50)
        procs.append(second)
        budget = LEASE_S + MAINTENANCE_S + GRACE_S + 6.0  # + process start-up and margin
        wait_for(lambda: rec.count("done") >= 50, budget, f"all 50 tasks completed again\n{second.log_tail()}")
        recovery_s = time.monotonic() - killed_at
        wait_for(lambda: qstats(r, q).get("processed") == 50, 10, "the second worker's acks")
        second.signal(signal.SIGTERM)
        assert second.wait(15) == 0
    started, done = rec.per_task("started"), rec.per_task("done")
    duplicate_deliveries = sum(1 for n in started.values() if n > 1)
    duplicate_completions = sum(1 for n in done.values() if n > 1)
    print(f"\n[kill -9] 50 in flight: recovery {recovery_s:.2f} s after SIGKILL (lease {LEASE_S} s), "
          f"tasks delivered more than once: {duplicate_deliveries}, completed more than once: {duplicate_completions}")
    assert set(done) == ids, f"lost: {sorted(ids - set(done))}"
    assert duplicate_completions == 0
    assert Counter(started.values()) == {2: 50}  # each one delivery in the killed worker, one after recovery
    assert {a for _, pid, a in rec.entries("done")} == {2}  # the lost lease counts as an attempt
    assert {pid for _, pid, _ in rec.entries("done")} == {second.pid}
    assert sum(e["count"] for e in second.find("leases_recovered")) == 50
    s = qstats(r, q)
    assert (s["enqueued"], s["processed"], s["recovered"], s.get("stale", 0)) == (50, 50, 50, 0)
    assert r.llen(q.pending) == r.zcard(q.active) == r.hlen(q.lost) == r.hlen(q.messages) == 0
    assert recovery_s < budget


def test_sigstop_past_lease_then_sigcont_completion_is_refused(chaos: dict[str, Any]) -> None:
    url, reg, r, rec = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"]
    q = qk(reg, "chaos")
    with router.Client(reg, url=url) as c:
        tid = c.enqueue("chaos.work", {"gate": "g"}).id
    with workers() as procs:
        first = spawn(chaos, 1)
        procs.append(first)
        wait_for(lambda: rec.count("started") == 1, 30, f"the first worker to start the task\n{first.log_tail()}")
        first.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        second = spawn(chaos, 1)
        procs.append(second)
        wait_for(lambda: rec.count("started") == 2, LEASE_S + 10,
                 f"the second worker to take over\n{second.log_tail()}")  # fmt: skip
        takeover_s = time.monotonic() - stopped_at
        rec.open_gate("g", tokens=2)  # the frozen worker's BLPOP is first in line for one of them
        wait_for(lambda: qstats(r, q).get("processed") == 1, 10, "the second worker's completion")
        first.signal(signal.SIGCONT)
        wait_for(lambda: first.has_event("stale_completion_refused"), 15,
                 f"the first worker's completion to be refused\n{first.log_tail()}")  # fmt: skip
        for wp in (first, second):
            wp.signal(signal.SIGTERM)
            assert wp.wait(15) == 0
    print(f"\n[SIGSTOP] takeover {takeover_s:.2f} s after SIGSTOP; first worker events: "
          f"lease_lost={len(first.find('lease_lost'))} stale_completion_refused="
          f"{len(first.find('stale_completion_refused'))}")
    assert [(t, pid) for t, pid, _ in rec.entries("started")] == [(tid, first.pid), (tid, second.pid)]
    # Both handler calls ran to the end (a side effect twice: at-least-once), but the task completed once.
    assert sorted(pid for _, pid, _ in rec.entries("done")) == sorted([first.pid, second.pid])
    s = qstats(r, q)
    assert (s["processed"], s["stale"], s["recovered"]) == (1, 1, 1)
    assert r.llen(q.pending) == r.zcard(q.active) == r.zcard(q.retry) == r.zcard(q.archived) == 0
    assert takeover_s >= LEASE_S  # never taken over while the lease was valid


def test_sigterm_finishes_short_tasks_and_requeues_long_ones(chaos: dict[str, Any]) -> None:
    url, reg, r, rec = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"]
    q = qk(reg, "chaos")
    shutdown_timeout_s = 2.0
    with router.Client(reg, url=url) as c:
        short = {c.enqueue("chaos.work", {"gate": "short", "i": i}).id for i in range(3)}
        long = {c.enqueue("chaos.work", {"gate": "long", "i": i}).id for i in range(3)}
    with workers() as procs:
        w = spawn(chaos, 6, shutdown_timeout_s=shutdown_timeout_s)
        procs.append(w)
        wait_for(lambda: rec.count("started") == 6, 30, f"six handlers running\n{w.log_tail()}")
        w.signal(signal.SIGTERM)
        sent_at = time.monotonic()
        rec.open_gate("short")
        code = w.wait(shutdown_timeout_s + 10)
        exit_s = time.monotonic() - sent_at
        pending = {x.decode() for x in r.lrange(q.pending, 0, -1)}  # right after exit, before anything else
    print(f"\n[SIGTERM] exit {exit_s:.2f} s after SIGTERM (shutdown_timeout_s {shutdown_timeout_s}), "
          f"requeued {len(pending)} long task(s)")
    assert code == 0
    assert exit_s <= shutdown_timeout_s + 2.0
    assert {t for t, _, _ in rec.entries("done")} == short and rec.count("done") == 3
    assert pending == long
    assert r.zcard(q.active) == 0
    s = qstats(r, q)
    assert (s["processed"], s["requeued"], s.get("failed", 0)) == (3, 3, 0)
    names = w.event_names()
    assert "signal_received" in names and "worker_stopped" in names
    assert [e["count"] for e in w.find("tasks_requeued_at_shutdown")] == [3]
