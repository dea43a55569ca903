"""An idle worker's wake-up: the dequeue pipelined behind the blocking pop leases the new task in the same round
trip, and stopping the worker cuts that pop short so nothing is leased behind its back afterwards."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import redis
from enginekit import build_registry, fast_settings, qk, raw_client, task, wait_for

import router
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import Role, connect

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


def _blocked_pops(r: redis.Redis) -> int:
    return sum(1 for c in r.client_list() if "b" in c.get("flags", ""))  # flag b: blocked in a command


def test_token_wakes_the_pop_and_the_dequeue_behind_it_leases_the_task(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    broker = SyncBroker(connect(redis_url, Role.BLOCKING))
    outcome: list[tuple[bool, list[Any]]] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(broker.wait_wake_then([q.wake], 5.0, [protocol.dequeue(q, 30_000, 10)]))
    )
    waiting.start()
    try:
        wait_for(lambda: _blocked_pops(r) == 1, 10, "the pop to block")
        with router.Client(reg, url=redis_url) as client:
            info = client.enqueue("svc.job", {"n": 1})
        waiting.join(10)
        [(woke, [reply])] = outcome
        assert woke
        assert [d.task_id for d in protocol.parse_dequeue(reply).deliveries] == [info.id]
        assert r.llen(q.pending) == 0 and r.zcard(q.active) == 1
    finally:
        broker.close()
        r.close()


def test_pop_that_times_out_still_runs_the_dequeue_and_finds_nothing(redis_url: str) -> None:
    q = qk(build_registry(redis_url, SERVICES), "svc")
    broker = SyncBroker(connect(redis_url, Role.BLOCKING))
    try:
        assert broker.wait_wake_then([q.wake], 0.05, [protocol.dequeue(q, 30_000, 10)]) == (False, [[[]]])
    finally:
        broker.close()


def test_stopped_idle_worker_leaves_no_pop_behind_to_lease_new_tasks(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    done: list[int] = []
    app = router.Service("svc")
    app.add("svc.job", lambda t: done.append(t.payload["n"]))
    # A long lease makes the waker block for its full time: only the interrupt can end the pop early.
    worker = router.Worker(reg, app, url=redis_url, settings=fast_settings(lease_s=60.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with router.Client(reg, url=redis_url) as client:
            client.enqueue("svc.job", {"n": 1})
            wait_for(lambda: done == [1], 10, "the first task")
            wait_for(lambda: _blocked_pops(r) == 1, 10, "the idle worker to block on its wake list")
            worker.stop()
            thread.join(10)
            assert not thread.is_alive()
            assert _blocked_pops(r) == 0
            client.enqueue("svc.job", {"n": 2})
        assert r.llen(q.pending) == 1 and r.zcard(q.active) == 0
        assert done == [1]
    finally:
        worker.stop()
        thread.join(timeout=10)
        r.close()


def test_sigtstp_halts_the_wake_up_so_new_tasks_stay_pending(redis_url: str) -> None:
    # The worker runs on the main thread (its signal handlers need it); a helper thread plays the operator.
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    done: list[int] = []
    seen: dict[str, Any] = {}
    app = router.Service("svc")
    app.add("svc.job", lambda t: done.append(t.payload["n"]))
    worker = router.Worker(reg, app, url=redis_url, settings=fast_settings(lease_s=60.0))

    def operator() -> None:
        try:
            with router.Client(reg, url=redis_url) as client:
                client.enqueue("svc.job", {"n": 1})
                wait_for(lambda: done == [1] and _blocked_pops(r) == 1, 10, "the worker to go idle and block")
                os.kill(os.getpid(), signal.SIGTSTP)
                wait_for(lambda: _blocked_pops(r) == 0, 10, "the blocked pop to be cut short")
                client.enqueue("svc.job", {"n": 2})
                seen["pending"], seen["active"] = r.llen(q.pending), r.zcard(q.active)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=operator)
    helper.start()
    try:
        worker.run()
    finally:
        helper.join(30)
        r.close()
    assert seen == {"pending": 1, "active": 0}
    assert done == [1]
