"""A queue paused while tasks arrive, then unpaused: an idle worker notices the backlog at its next maintenance."""

from __future__ import annotations

import threading

from enginekit import build_registry, fast_settings, qk, raw_client, task, wait_for

import router

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


def test_idle_worker_serves_a_queue_after_it_is_unpaused(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    r.set(q.paused, 1)
    done: list[int] = []
    app = router.Service("svc")
    app.add("svc.job", lambda t: done.append(t.payload["n"]))
    worker = router.Worker(reg, app, url=redis_url, settings=fast_settings(maintenance_s=0.2))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with router.Client(reg, url=redis_url) as client:
            client.enqueue_many([("svc.job", {"n": n}) for n in range(3)])
        # The wake token is consumed while paused and nothing is fetched.
        wait_for(lambda: r.llen(q.wake) == 0, 10, "the idle worker to take the wake token")
        assert done == [] and r.llen(q.pending) == 3
        r.delete(q.paused)  # no wake token: only the maintenance sweep can notice
        wait_for(lambda: len(done) == 3, 10, "the backlog to be served after unpausing")
    finally:
        worker.stop()
        thread.join(timeout=10)
        r.close()
