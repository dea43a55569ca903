"""Redis itself restarted (append-only, so acknowledged writes survive) while producers and workers run."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import structlog
from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    build_registry,
    fast_settings,
    qk,
    raw_client,
    start_worker,
    task,
    wait_for,
    workers,
    write_registry_yaml,
)
from enginekit import stats as qstats
from ledger import Ledger, Producer, wait_all_settled

import router
from router.service import Service
from router.storage.connection import TIMEOUTS, Role

pytestmark = pytest.mark.chaos
LEASE_S = 2.0


def test_redis_restart_under_load_loses_no_acknowledged_task(
    fresh_redis_server: Any, tmp_path: Path, ledger: Ledger
) -> None:
    """Matrix #7: Redis restarted (AOF replayed) under a producer and a worker. The producer repeats every
    ``EnqueueOutcomeUnknown`` with the same task id, as the README says: no task may be created twice."""
    server = fresh_redis_server
    url = server.url
    reg = build_registry(url, CHAOS_SERVICES)
    q = qk(reg, "chaos")
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    r = raw_client(url)
    with workers() as procs:
        w = start_worker(path, "chaos", url, concurrency=4, lease_s=2.0, maintenance_s=0.5,
                         extra_env=ledger.env())  # fmt: skip  # executions recorded outside the Redis that restarts
        procs.append(w)
        wait_for(lambda: w.has_event("worker_started"), 30, f"the worker to start\n{w.log_tail()}")
        producer = Producer(reg, url, ledger, 600, rate_per_s=500, prefix="p")
        producer.start()
        wait_for(lambda: len(ledger.ids("ok")) >= 150 or producer.error, 30, "the producer to get going")
        # Restart with a gap: SIGTERM (the AOF is flushed), stay down until both the producer and the worker have
        # hit the outage, then start again on the same port and directory (the AOF is replayed).
        restart_at = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        wait_for(lambda: not server.is_running, 10, "redis-server to exit")
        wait_for(lambda: producer.unknown_outcomes >= 1 and w.has_event("redis_unavailable"), 20,
                 f"the producer and the worker to meet the outage\n{w.log_tail()}")  # fmt: skip
        server.start()
        restart_s = time.monotonic() - restart_at
        producer.join(60)
        assert not producer.is_alive() and producer.error is None, producer.error
        # A delivery whose dequeue reply was lost in the restart sits in active until its lease is recovered.
        wait_for(lambda: wait_all_settled(ledger, r, [q]), 30,
                 f"every acknowledged enqueue processed and the queue drained\n{w.log_tail()}")  # fmt: skip
        assert w.proc.poll() is None, f"the worker exited during the outage\n{w.log_tail()}"
        events = w.event_names()
        w.signal(signal.SIGTERM)
        crashes = int(w.wait(15) != 0)
    v = ledger.check(r, [q])
    down = events.index("redis_unavailable") if "redis_unavailable" in events else -1
    outage = w.find("redis_available")
    print(f"\n[redis restart] lost {len(v.lost)}, duplicated {v.duplicated}, crashes {crashes}, created twice "
          f"{v.created - v.acked}, {producer.unknown_outcomes} unknown outcomes repeated with their id "
          f"({producer.conflicts} had landed), Redis down {restart_s:.2f} s, worker outage "
          f"{outage[0]['outage_s'] if outage else '?'} s; {v.figures()}")
    try:
        assert v.acked == 600 and not v.unknown and v.lost == set() and crashes == 0
        assert producer.unknown_outcomes >= 1  # the restart did hit an enqueue
        assert v.created == 600, "a repeated enqueue created a task a second time"
        assert down >= 0, "the worker never logged redis_unavailable"
        assert "redis_available" in events[down:], "the worker never logged redis_available after the outage"
        assert r.llen(q.pending) == r.zcard(q.active) == 0
    finally:
        r.close()


def test_worker_survives_a_handler_failing_during_an_outage(fresh_redis_server: Any) -> None:
    server = fresh_redis_server
    url = server.url
    r = raw_client(url)
    r.config_set("appendfsync", "always")  # the enqueue below must survive the SIGKILL
    reg = build_registry(url, {"chaos": {"tasks": {"chaos.work": task(max_retry=3)}}})
    q = qk(reg, "chaos")
    started, release = threading.Event(), threading.Event()
    attempts: list[int] = []
    app = Service("chaos")

    def handle(t: router.Task) -> None:
        attempts.append(t.attempt)
        if t.attempt == 1:
            started.set()
            assert release.wait(30)
            raise ValueError("downstream failed too")

    app.add("chaos.work", handle)
    with router.Client(reg, url=url) as c:
        c.enqueue("chaos.work", {})
    w = router.Worker(reg, app, url=url, settings=fast_settings(concurrency=1))
    died: list[BaseException] = []

    def run() -> None:
        try:
            w.run()
        except BaseException as exc:
            died.append(exc)

    runner = threading.Thread(target=run)
    with structlog.testing.capture_logs() as logs:
        runner.start()
        try:
            assert started.wait(15)
            server.kill()
            release.set()  # the handler fails while Redis is down
            wait_for(lambda: any(e["event"] == "redis_unavailable" for e in logs) or died, 15,
                     "the worker to notice the outage")  # fmt: skip
            server.start()
            wait_for(lambda: attempts == [1, 2] or died, 20, "the task to run again after the restart")
            assert not died, "the worker died during the outage:\n" + "".join(traceback.format_exception(died[0]))
            wait_for(lambda: qstats(r, q).get("processed") == 1, 10, "the retried task's ack")
        finally:
            w.stop()
            runner.join(15)
            r.close()
    assert not died, f"the worker died during the outage: {died[0]!r}"


def test_redis_frozen_during_enqueue_and_consume(fresh_redis_server: Any, tmp_path: Path, ledger: Ledger) -> None:
    """Matrix #9: Redis frozen (SIGSTOP, not down: connections stay open, replies never come) for longer than the
    lease while a producer and a worker run. An enqueue fails within the producer's timeout with
    ``EnqueueOutcomeUnknown`` (not after a minute of redis-py retries); repeating it with the same id after the
    thaw creates no duplicate; the worker resumes after SIGCONT without a restart."""
    server = fresh_redis_server
    url = server.url
    reg = build_registry(url, CHAOS_SERVICES)
    q = qk(reg, "chaos")
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    r = raw_client(url)
    freeze_s = 3 * LEASE_S
    with workers() as procs:
        w = start_worker(path, "chaos", url, concurrency=4, lease_s=LEASE_S, maintenance_s=0.5,
                         extra_env=ledger.env())  # fmt: skip
        procs.append(w)
        wait_for(lambda: w.has_event("worker_started"), 30, f"the worker to start\n{w.log_tail()}")
        producer = Producer(reg, url, ledger, 400, rate_per_s=40, prefix="p", payload=lambda i: {"sleep_ms": 20})
        producer.start()
        wait_for(lambda: len(ledger.completed_ids()) >= 40, 30, "the flow to get going")
        server.pause()
        frozen_at = time.monotonic()
        try:
            with router.Client(reg, url=url) as client:
                began = time.monotonic()
                with pytest.raises(router.EnqueueOutcomeUnknown) as unknown:
                    client.enqueue("chaos.work", {"probe": True}, task_id="probe-1")
                unknown_after_s = time.monotonic() - began
                ledger.unknown("probe-1")
            pacer = threading.Event()
            pacer.wait(max(0.0, frozen_at + freeze_s - time.monotonic()))  # keep it frozen past the lease
        finally:
            server.resume()
        resumed_at = time.monotonic()
        with router.Client(reg, url=url) as client:  # the repeat the README tells users to make
            try:
                client.enqueue("chaos.work", {"probe": True}, task_id=unknown.value.task_id)
            except router.TaskIdConflict:
                pass  # the first attempt landed (once Redis thawed) and has already run
            ledger.ok("probe-1")
        wait_for(lambda: w.find("redis_available"), 20, f"the worker to resume\n{w.log_tail()}")
        resume_s = time.monotonic() - resumed_at
        producer.join(60)
        assert not producer.is_alive() and producer.error is None, producer.error
        wait_for(lambda: wait_all_settled(ledger, r, [q]), 30, f"every acknowledged task done\n{w.log_tail()}")
        w.signal(signal.SIGTERM)
        crashes = int(w.wait(15) != 0)
    v = ledger.check(r, [q])
    print(f"\n[Redis frozen {freeze_s:.0f} s] lost {len(v.lost)}, duplicated {v.duplicated}, crashes {crashes}, "
          f"enqueue gave EnqueueOutcomeUnknown after {unknown_after_s:.2f} s (producer thread: "
          f"{producer.unknown_outcomes} unknown, slowest {max(producer.unknown_after_s, default=0):.2f} s), "
          f"created twice {v.created - v.acked}, worker resumed {resume_s:.2f} s after SIGCONT; {v.figures()}")
    assert unknown_after_s <= TIMEOUTS[Role.PRODUCER].read_s + 1.0
    assert max(producer.unknown_after_s, default=0) <= TIMEOUTS[Role.PRODUCER].read_s + 1.0
    assert v.lost == set() and not v.unknown and crashes == 0
    assert v.created == v.acked == 401, "a repeated enqueue created a task twice"
    assert ledger.completions()["probe-1"] >= 1
    assert resume_s <= 2.0 + 1.0  # + process and poll margin
    r.close()
