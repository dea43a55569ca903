"""What signals do to a `router worker` process (docs/cli.md, README "Worker signals"): SIGINT waits for running
tasks, a second SIGINT requeues them and exits at once, SIGTSTP stops fetching while running tasks finish, and at
SIGTERM tasks leased ahead (``--prefetch``) go straight back to pending while the running one finishes."""

from __future__ import annotations

import json
import signal
import time
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
    sk,
    start_worker,
    wait_for,
    workers,
    write_registry_yaml,
)
from enginekit import stats as qstats

import router

pytestmark = pytest.mark.chaos

HEARTBEAT_S = 0.2


@pytest.fixture
def chaos(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    r = raw_client(redis_url)
    request.addfinalizer(r.close)
    ns = f"rec-{request.node.name}"
    reg = build_registry(redis_url, CHAOS_SERVICES)
    return {
        "url": redis_url,
        "reg": reg,
        "q": qk(reg, "chaos"),
        "path": write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL),
        "r": r,
        "rec": Recorder(r, ns),
        "env": chaos_env(redis_url, ns),
    }


def spawn(chaos: dict[str, Any], concurrency: int, *extra: str, shutdown_timeout_s: float = 30.0) -> WorkerProcess:
    return start_worker(chaos["path"], "chaos", chaos["url"], concurrency=concurrency, heartbeat_s=HEARTBEAT_S,
                        shutdown_timeout_s=shutdown_timeout_s, extra_env=chaos["env"], extra_args=extra)


def enqueue(chaos: dict[str, Any], *payloads: dict[str, Any]) -> list[str]:
    with router.Client(chaos["reg"], url=chaos["url"]) as c:
        return [info.id for info in c.enqueue_many([("chaos.work", p) for p in payloads])]


def pending(chaos: dict[str, Any]) -> list[str]:
    return [x.decode() for x in reversed(chaos["r"].lrange(chaos["q"].pending, 0, -1))]  # oldest first


def signals_logged(w: WorkerProcess) -> list[tuple[str, str]]:
    return [(e["signal"], e["action"]) for e in w.find("signal_received")]


def test_sigint_stops_fetching_and_waits_for_the_running_task(chaos: dict[str, Any]) -> None:
    r, q, rec = chaos["r"], chaos["q"], chaos["rec"]
    [running] = enqueue(chaos, {"gate": "g"})
    with workers() as procs:
        w = spawn(chaos, 2)
        procs.append(w)
        wait_for(lambda: rec.count("started") == 1, 30, f"the task to start\n{w.log_tail()}")
        w.signal(signal.SIGINT)
        wait_for(lambda: w.has_event("signal_received"), 10, f"the SIGINT to be logged\n{w.log_tail()}")
        [late] = enqueue(chaos, {})  # a free slot, but the worker no longer fetches
        assert w.proc.poll() is None, "the worker waits for its running task"
        rec.open_gate("g")
        sent = time.monotonic()
        assert w.wait(15) == 0, w.log_tail()
        assert time.monotonic() - sent < 10, "it exits once the task finished, long before --shutdown-timeout-s"
    assert signals_logged(w) == [("SIGINT", "stop fetching; wait for running tasks")]
    assert [t for t, _, _ in rec.entries("done")] == [running]
    assert pending(chaos) == [late] and r.zcard(q.active) == 0
    assert qstats(r, q)["processed"] == 1


def test_a_second_sigint_requeues_the_running_task_and_exits_at_once(chaos: dict[str, Any]) -> None:
    r, q, rec = chaos["r"], chaos["q"], chaos["rec"]
    [stuck] = enqueue(chaos, {"gate": "never"})
    with workers() as procs:
        w = spawn(chaos, 1, shutdown_timeout_s=60.0)
        procs.append(w)
        wait_for(lambda: rec.count("started") == 1, 30, f"the task to start\n{w.log_tail()}")
        w.signal(signal.SIGINT)
        wait_for(lambda: w.has_event("signal_received"), 10, f"the first SIGINT to be logged\n{w.log_tail()}")
        w.signal(signal.SIGINT)
        sent = time.monotonic()
        assert w.wait(15) == 0, w.log_tail()
        exit_s = time.monotonic() - sent
    # Well before the 60 s shutdown timeout, and before the gated handler's own 5 s read timeout could end it.
    assert exit_s < 3, f"a second SIGINT must exit at once (took {exit_s:.1f} s)"
    assert signals_logged(w) == [("SIGINT", "stop fetching; wait for running tasks"),
                                 ("SIGINT", "exit now; requeue running tasks")]
    assert [e["count"] for e in w.find("tasks_requeued_at_shutdown")] == [1]
    assert pending(chaos) == [stuck] and r.zcard(q.active) == 0
    assert rec.count("done") == 0
    assert qstats(r, q)["requeued"] == 1


def _heartbeat_at_ms(chaos: dict[str, Any]) -> int:
    r = chaos["r"]
    keys = sk(chaos["reg"], "chaos")
    docs = [r.get(keys.worker(i.decode())) for i in r.zrange(keys.workers, 0, -1)]
    return max((json.loads(d)["at_ms"] for d in docs if d), default=0)


def test_sigtstp_stops_fetching_and_lets_the_running_task_finish(chaos: dict[str, Any]) -> None:
    r, q, rec = chaos["r"], chaos["q"], chaos["rec"]
    running, leased_ahead = enqueue(chaos, {"gate": "g"}, {})
    with workers() as procs:
        w = spawn(chaos, 1)  # prefetch defaults to the concurrency: the second task is leased behind the first
        procs.append(w)
        wait_for(lambda: rec.count("started") == 1 and r.zcard(q.active) == 2, 30,
                 f"one task running and one leased ahead\n{w.log_tail()}")
        w.signal(signal.SIGTSTP)
        # The task leased ahead goes back at once; the running one is left alone.
        wait_for(lambda: pending(chaos) == [leased_ahead] and r.zcard(q.active) == 1, 10,
                 f"the unstarted task handed back\n{w.log_tail()}")
        assert signals_logged(w) == [("SIGTSTP", "stop fetching; running tasks continue")]
        rec.open_gate("g")
        wait_for(lambda: qstats(r, q).get("processed") == 1, 10, f"the running task to finish\n{w.log_tail()}")
        # The worker lives on (its heartbeat advances by several periods) without fetching again.
        finished_ms = int(time.time() * 1000)
        wait_for(lambda: _heartbeat_at_ms(chaos) > finished_ms + 3 * HEARTBEAT_S * 1000, 10,
                 "three more heartbeats after the task finished")
        assert pending(chaos) == [leased_ahead] and rec.count("started") == 1
        assert w.proc.poll() is None
        w.signal(signal.SIGTERM)
        assert w.wait(15) == 0, w.log_tail()
    assert [t for t, _, _ in rec.entries("done")] == [running]
    assert pending(chaos) == [leased_ahead]


def test_sigterm_hands_prefetched_tasks_back_while_the_running_one_finishes(chaos: dict[str, Any]) -> None:
    r, q, rec = chaos["r"], chaos["q"], chaos["rec"]
    ids = enqueue(chaos, *({"gate": "g", "i": i} for i in range(4)))
    with workers() as procs:
        w = spawn(chaos, 1, "--prefetch", "2")
        procs.append(w)
        wait_for(lambda: rec.count("started") == 1 and r.zcard(q.active) == 3 and len(pending(chaos)) == 1, 30,
                 f"one task running and two leased ahead (--prefetch 2)\n{w.log_tail()}")
        w.signal(signal.SIGTERM)
        wait_for(lambda: len(pending(chaos)) == 3 and r.zcard(q.active) == 1, 10,
                 f"the two prefetched tasks handed back at once\n{w.log_tail()}")
        assert rec.count("done") == 0 and w.proc.poll() is None, "the running task is still running"
        rec.open_gate("g")
        assert w.wait(15) == 0, w.log_tail()
    [first] = [t for t, _, _ in rec.entries("done")]
    assert first == ids[0] and rec.count("started") == 1, "a handed-back task never started"
    assert sorted(pending(chaos)) == sorted(ids[1:]) and r.zcard(q.active) == 0
    assert [e["count"] for e in w.find("tasks_requeued_at_shutdown")] == [2]
    s = qstats(r, q)
    assert (s["processed"], s["requeued"]) == (1, 2)
