"""Leases stay within their limits: at most ``concurrency + prefetch`` per worker on every topology (issue 9, item
7), and never judged by a host clock that disagrees with the others (item 9)."""

from __future__ import annotations

import threading
import time
from typing import Any

from enginekit import build_registry, fast_settings, qk, raw_client, task, wait_for

import router

SERVICES = {"svc": {"queues": {"a": 1, "b": 1}, "tasks": {"svc.a": task("a"), "svc.b": task("b")}}}


def test_the_lease_limit_holds_with_one_wake_up_thread_per_slot(target: tuple[str, Any]) -> None:
    """concurrency 10, prefetch 0, two queues (two slots on the cluster): the wake-up threads used to size their
    fetches from the same free count, so a worker held up to 20 leases (11 on a single server)."""
    url, r = target
    reg = build_registry(url, SERVICES)
    qa, qb = qk(reg, "svc", "a"), qk(reg, "svc", "b")
    gate = threading.Event()
    app = router.Service("svc")
    for t in ("svc.a", "svc.b"):
        app.add(t, lambda _task: gate.wait(20))
    worker = router.Worker(reg, app, url=url, settings=fast_settings(concurrency=10, prefetch=0, lease_s=10))
    runner = threading.Thread(target=worker.run)
    runner.start()
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], int(r.zcard(qa.active)) + int(r.zcard(qb.active)))
            time.sleep(0.002)  # a sampling period, not a wait for work

    sampler = threading.Thread(target=sample)
    try:
        wait_for(lambda: r.exists(qa.wake) or _idle(worker), 10, "the worker to go idle (armed wake-ups)")
        sampler.start()
        with router.Client(reg, url=url) as client:  # both queues at once: both wake-up threads fire
            client.enqueue_many([(t, {"i": i}) for i in range(30) for t in ("svc.a", "svc.b")])
        wait_for(lambda: int(r.zcard(qa.active)) + int(r.zcard(qb.active)) >= 10, 10, "ten tasks running")
        # Every wake-up fetch in flight has landed (an over-lease would be in the active sets by then).
        wait_for(lambda: getattr(getattr(worker, "_fetch", None), "reserved", 0) == 0
                 and len(worker._state.running) >= 10, 10,
                 "the wake-ups to land")
        peak[0] = max(peak[0], int(r.zcard(qa.active)) + int(r.zcard(qb.active)))
    finally:
        stop.set()  # the sampling ends before the gate opens: later samples would mix counts before and after
        if sampler.is_alive():
            sampler.join()
        gate.set()
        worker.stop()
        runner.join(30)
    assert peak[0] == 10, f"{peak[0]} leases held at once by a worker with concurrency 10 and no prefetch"


def _idle(worker: router.Worker) -> bool:
    return not worker._state.running and not worker._state.maybe_work


def test_a_skewed_host_clock_does_not_expire_a_live_lease(redis_url: str) -> None:
    """Worker A's clock is an hour slow. Lease deadlines used to come from each host's clock, so worker B saw A's
    live lease as long expired, recovered it and ran the task a second time."""
    reg = build_registry(redis_url, {"svc": {"tasks": {"svc.job": task()}}})
    q = qk(reg, "svc", "default")
    r = raw_client(redis_url)
    running, release, ran_by = threading.Event(), threading.Event(), []
    app_a = router.Service("svc")

    def slow(t: router.Task) -> None:
        ran_by.append("a")
        running.set()
        release.wait(20)

    app_a.add("svc.job", slow)
    app_b = router.Service("svc")
    app_b.add("svc.job", lambda t: ran_by.append("b"))
    with router.Client(reg, url=redis_url) as client:
        client.enqueue("svc.job", {})
    a = router.Worker(reg, app_a, url=redis_url, settings=fast_settings(lease_s=5), clock=lambda: time.time() - 3600)
    thread = threading.Thread(target=a.run, kwargs={"burst": True})
    thread.start()
    try:
        assert running.wait(10)
        b = router.Worker(reg, app_b, url=redis_url, settings=fast_settings(lease_s=5))
        b.run(burst=True)  # its maintenance sweep runs with a correct clock
        assert ran_by == ["a"] and r.zcard(q.active) == 1
        assert b.stats["processed"] == 0
    finally:
        release.set()
        thread.join(20)
    assert ran_by == ["a"] and a.stats["processed"] == 1
