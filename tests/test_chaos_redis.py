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
    Recorder,
    build_registry,
    chaos_env,
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

import router
from router.service import Service

pytestmark = pytest.mark.chaos


class Producer(threading.Thread):
    """Enqueues ``n`` tasks with fixed ids; an unknown outcome is repeated with the same id, and a conflict
    after an unknown outcome means the first attempt had landed (success)."""

    def __init__(self, reg: router.Registry, url: str, n: int) -> None:
        super().__init__(daemon=True)
        self.client = router.Client(reg, url=url)
        self.n = n
        self.acked: list[str] = []
        self.unknown = 0
        self.conflicts_after_unknown = 0
        self.error: BaseException | None = None
        self._pace = threading.Event()

    def run(self) -> None:
        try:
            for i in range(self.n):
                tid = f"p-{i:04d}"
                uncertain = False
                for _ in range(200):
                    try:
                        self.client.enqueue("chaos.work", {"i": i}, task_id=tid)
                    except router.EnqueueOutcomeUnknown:
                        uncertain = True
                        self.unknown += 1
                        self._pace.wait(0.05)  # back off while Redis is down
                        continue
                    except router.TaskIdConflict:
                        if not uncertain:
                            raise
                        self.conflicts_after_unknown += 1
                    self.acked.append(tid)
                    break
                else:
                    raise AssertionError(f"could not enqueue {tid} in 200 attempts")
                self._pace.wait(0.002)  # spread the load over the restart
        except BaseException as exc:
            self.error = exc
        finally:
            self.client.close()


def test_redis_restart_under_load_loses_no_acknowledged_task(
    fresh_redis_server: Any, redis_url: str, tmp_path: Path
) -> None:
    server = fresh_redis_server
    url = server.url
    reg = build_registry(url, CHAOS_SERVICES)
    q = qk(reg, "chaos")
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    rec_client = raw_client(redis_url)  # deliveries are recorded outside the Redis that restarts
    rec = Recorder(rec_client, "restart")
    r = raw_client(url)
    with workers() as procs:
        w = start_worker(path, "chaos", url, concurrency=4, lease_s=2.0, maintenance_s=0.5,
                         extra_env=chaos_env(redis_url, "restart"))  # fmt: skip
        procs.append(w)
        wait_for(lambda: w.has_event("worker_started"), 30, f"the worker to start\n{w.log_tail()}")
        producer = Producer(reg, url, 600)
        producer.start()
        wait_for(lambda: len(producer.acked) >= 150 or producer.error, 30, "the producer to get going")
        # Restart with a gap: SIGTERM (the AOF is flushed), stay down until both the producer and the worker have
        # hit the outage, then start again on the same port and directory (the AOF is replayed).
        restart_at = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        wait_for(lambda: not server.is_running, 10, "redis-server to exit")
        wait_for(lambda: producer.unknown >= 1 and w.has_event("redis_unavailable"), 20,
                 f"the producer and the worker to meet the outage\n{w.log_tail()}")  # fmt: skip
        server.start()
        restart_s = time.monotonic() - restart_at
        producer.join(60)
        assert not producer.is_alive() and producer.error is None, producer.error
        acked = set(producer.acked)
        wait_for(lambda: acked <= set(rec.per_task("done")), 30,
                 f"every acknowledged enqueue to be processed\n{w.log_tail()}")  # fmt: skip
        # A delivery whose dequeue reply was lost in the restart sits in active until its lease is recovered.
        wait_for(lambda: r.llen(q.pending) + r.zcard(q.active) + r.zcard(q.retry) == 0, 15,
                 f"the queue to drain\n{w.log_tail()}")  # fmt: skip
        assert w.proc.poll() is None, f"the worker exited during the outage\n{w.log_tail()}"
        events = w.event_names()
        w.signal(signal.SIGTERM)
        assert w.wait(15) == 0
    done = rec.per_task("done")
    duplicates = sum(1 for c in done.values() if c > 1)
    down = events.index("redis_unavailable") if "redis_unavailable" in events else -1
    outage = [e for e in w.find("redis_available")]
    print(f"\n[redis restart] {len(acked)} acknowledged, {len(acked - set(done))} lost, {duplicates} processed twice, "
          f"{producer.unknown} unknown outcomes repeated ({producer.conflicts_after_unknown} had landed), "
          f"Redis down {restart_s:.2f} s, worker outage {outage[0]['outage_s'] if outage else '?'} s")
    assert len(acked) == 600
    assert acked - set(done) == set()
    assert down >= 0, "the worker never logged redis_unavailable"
    assert "redis_available" in events[down:], "the worker never logged redis_available after the outage"
    try:
        assert r.llen(q.pending) == r.zcard(q.active) == 0
        # More than 600 only when a repeated enqueue re-created a task already completed (see test_engine_basic).
        assert qstats(r, q)["enqueued"] == 600 + duplicates
    finally:
        r.close()
        rec_client.close()


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
