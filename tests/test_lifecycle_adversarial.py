"""Adversarial lifecycle cases: the end paths a unique lock, a waiter or a cancel request can be forgotten on, the
inputs a hostile caller passes to wait and enqueue, and aggregation under many groups and garbage bookkeeping."""

from __future__ import annotations

from typing import Any

from enginekit import build_registry, fast_settings, qk, stats, task

import router
from router.registry.model import UniquePolicy
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {
    "svc.until": task(unique_s=600, unique_policy=UniquePolicy.UNTIL_FINISHED),
    "svc.job": task(max_retry=3),
}}}


def _app(ran: list[str] | None = None) -> router.Service:
    app = router.Service("svc")
    for name in ("svc.until", "svc.job"):
        app.add(name, lambda t: (ran.append(t.id) if ran is not None else None))
    return app


def _locks(r: Any, q: Any) -> list[bytes]:
    return list(r.keys(f"{q.base}:unique:*"))


def test_a_request_outliving_its_worker_releases_the_until_finished_lock(target: tuple[str, Any]) -> None:
    """Regression: the dequeue that ended a task cancelled while a (since dead) worker ran it could not name the
    task's unique lock, so an until_finished lock stayed held for unique_s (10 minutes here) after the cancel."""
    url, r = target
    reg = build_registry(url, SERVICES)
    q = qk(reg, "svc")
    broker = SyncBroker(connect(url))
    ran: list[str] = []
    try:
        with router.Client(reg, url=url) as c:
            info = c.enqueue("svc.until", {"n": 1})
            [held] = protocol.parse_dequeue(broker.run(protocol.dequeue(q, 30_000, 10))).deliveries
            assert c.cancel(info).outcome is router.CancelOutcome.REQUESTED
            assert broker.run(protocol.requeue(q, [held.member])) == 1  # what lease recovery does after a crash
            router.Worker(reg, _app(ran), url=url, settings=fast_settings()).run(burst=True)
            assert ran == []
            detail = c.get_task(info)
            assert (detail.state, detail.reason) == (router.TaskState.CANCELLED, "cancelled")
            assert _locks(r, q) == []
            c.enqueue("svc.until", {"n": 1})  # the lock is free again
    finally:
        broker.close()
    assert r.hlen(q.cancel_requests) == 0 and r.zcard(q.active) == 0 and r.hlen(q.leased) == 0
    assert stats(r, q)["cancelled"] == 1
