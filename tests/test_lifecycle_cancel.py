"""Cancelling tasks: one that has not started (pending, scheduled, retrying, aggregating) ends at once and never
runs; a running one is stopped by its worker (``async def`` handlers cancelled, sync ones see ``task.cancelled``);
a finished one is left alone; a task whose worker died after the request ends instead of running again."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from enginekit import build_registry, fast_settings, qk, stats, task, wait_for

import router
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {
    "svc.job": task(max_retry=3),
    "svc.slow_async": task(),
    "svc.slow_sync": task(),
}}}


def _app(ran: list[str], started: threading.Event, stopped: list[str]) -> router.Service:
    app = router.Service("svc")

    def job(t: router.Task) -> None:
        ran.append(t.id)

    async def slow_async(t: router.Task) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append(t.id)
            raise

    def slow_sync(t: router.Task) -> None:
        started.set()
        if not t.cancelled.wait(30):
            return
        stopped.append(t.id)
        raise router.TaskCancelled("noticed the cancel")

    app.add("svc.job", job)
    app.add("svc.slow_async", slow_async)
    app.add("svc.slow_sync", slow_sync)
    return app


def test_tasks_that_have_not_started_never_run(target: tuple[str, Any]) -> None:
    url, r = target
    reg = build_registry(url, SERVICES)
    ran: list[str] = []
    with router.Client(reg, url=url) as c:
        pending = c.enqueue("svc.job", {"n": 1})
        scheduled = c.enqueue("svc.job", {"n": 2}, process_in=3600)
        kept = c.enqueue("svc.job", {"n": 3})
        assert c.cancel(pending).outcome is router.CancelOutcome.CANCELLED
        result = c.cancel(scheduled.id)  # by id alone: every queue is searched
        assert (result.outcome, result.state_before) == (router.CancelOutcome.CANCELLED, "scheduled")
        assert c.cancel(pending).outcome is router.CancelOutcome.ALREADY_CANCELLED  # safe to repeat
        router.Worker(reg, _app(ran, threading.Event(), []), url=url, settings=fast_settings()).run(burst=True)
        assert ran == [kept.id]
        assert c.cancel(kept).outcome is router.CancelOutcome.FINISHED
        detail = c.get_task(pending)
        assert (detail.state, detail.payload, detail.finished) == (router.TaskState.CANCELLED, {"n": 1}, True)
        unknown = c.cancel("nope")
        assert (unknown.outcome, unknown.state_before) == (router.CancelOutcome.UNKNOWN, "unknown")
    q = qk(reg, "svc")
    assert r.zcard(q.cancelled) == 2 and r.zcard(q.scheduled) == 0 and stats(r, q)["cancelled"] == 2
    r.close()


def test_a_retrying_task_is_cancelled_between_attempts(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    app = router.Service("svc")
    calls: list[int] = []

    def flaky(t: router.Task) -> None:
        calls.append(t.attempt)
        raise RuntimeError("again")

    app.add("svc.job", flaky)
    app.add("svc.slow_async", flaky)
    app.add("svc.slow_sync", flaky)
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("svc.job", {})
        router.Worker(reg, app, url=redis_url, settings=fast_settings(),
                      backoff=lambda n, e: 3600).run(burst=True)
        assert c.get_task(info).state is router.TaskState.RETRY
        assert c.cancel(info).state_before == "retry"
        assert c.get_task(info).state is router.TaskState.CANCELLED
    assert calls == [1]


@pytest.mark.parametrize("kind", ["slow_async", "slow_sync"])
def test_a_running_task_is_stopped_by_its_worker(target: tuple[str, Any], kind: str) -> None:
    url, r = target
    reg = build_registry(url, SERVICES)
    started = threading.Event()
    stopped: list[str] = []
    worker = router.Worker(reg, _app([], started, stopped), url=url, settings=fast_settings())
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        with router.Client(reg, url=url) as c:
            info = c.enqueue(f"svc.{kind}", {})
            assert started.wait(10)
            t0 = time.monotonic()
            assert c.cancel(info).outcome is router.CancelOutcome.REQUESTED
            done = c.wait(info, timeout_s=10)
            assert time.monotonic() - t0 < 5  # noticed by the next poll, not by the 30 s handler's end
            assert (done.state, done.reason) == (router.TaskState.CANCELLED, "cancelled")
            assert stopped == [info.id]
            assert worker.stats["cancelled"] == 1 and worker.stats["failed"] == 0
    finally:
        worker.stop()
        thread.join(10)
    assert r.hlen(qk(reg, "svc").cancel_requests) == 0
    r.close()


def test_a_task_that_completes_despite_the_request_is_completed(redis_url: str) -> None:
    reg = build_registry(redis_url, {"svc": {"tasks": {"svc.job": task(retention_s=60)}}})
    app = router.Service("svc")
    gate = threading.Event()
    running = threading.Event()

    def job(t: router.Task) -> str:
        running.set()
        gate.wait(10)
        return "finished anyway"

    app.add("svc.job", job)
    worker = router.Worker(reg, app, url=redis_url, settings=fast_settings())
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        with router.Client(reg, url=redis_url) as c:
            info = c.enqueue("svc.job", {})
            assert running.wait(10)
            assert c.cancel(info).outcome is router.CancelOutcome.REQUESTED
            wait_for(lambda: _requested_seen(worker), 5, "the worker to see the request")
            gate.set()
            done = c.wait(info, timeout_s=10)
            assert (done.state, done.result) == (router.TaskState.COMPLETED, "finished anyway")
    finally:
        worker.stop()
        thread.join(10)


def _requested_seen(worker: router.Worker) -> bool:
    return any(run.cancel_requested for run in worker._state.running.values())


def test_a_request_outlives_a_dead_worker(redis_url: str) -> None:
    """The worker holding the task dies after the request: the recovered task is cancelled at its next dequeue
    instead of running again."""
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    broker = SyncBroker(connect(redis_url))
    ran: list[str] = []
    try:
        with router.Client(reg, url=redis_url) as c:
            info = c.enqueue("svc.job", {})
            [held] = protocol.parse_dequeue(broker.run(protocol.dequeue(q, 30_000, 10))).deliveries
            assert c.cancel(info).outcome is router.CancelOutcome.REQUESTED
            assert broker.run(protocol.requeue(q, [held.member])) == 1  # what lease recovery does after a crash
            router.Worker(reg, _app(ran, threading.Event(), []), url=redis_url, settings=fast_settings()).run(
                burst=True)
            assert ran == []
            assert c.get_task(info).state is router.TaskState.CANCELLED
    finally:
        broker.close()


def test_a_prefetched_task_waiting_for_a_slot_never_starts(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    started = threading.Event()
    stopped: list[str] = []
    ran: list[str] = []
    worker = router.Worker(reg, _app(ran, started, stopped), url=redis_url,
                           settings=fast_settings(concurrency=1, prefetch=1))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        with router.Client(reg, url=redis_url) as c:
            blocker = c.enqueue("svc.slow_sync", {})
            assert started.wait(10)
            waiting = c.enqueue("svc.job", {})
            wait_for(lambda: c.get_task(waiting).state is router.TaskState.ACTIVE, 5, "the prefetch")
            assert c.cancel(waiting).outcome is router.CancelOutcome.REQUESTED
            assert c.wait(waiting, timeout_s=10).state is router.TaskState.CANCELLED
            c.cancel(blocker)
            c.wait(blocker, timeout_s=10)
    finally:
        worker.stop()
        thread.join(10)
    assert ran == []


def test_cancel_and_get_task_refuse_bad_input(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c:
        with pytest.raises(router.InvalidOption, match="task_id"):
            c.get_task("")
        with pytest.raises(router.InvalidOption, match="no queue 'nope'"):
            c.get_task("x", queue="nope")
        with pytest.raises(router.RouterError, match=r"unknown service|no service"):
            c.get_task("x", service="ghost")


def test_async_client_cancels_and_reads(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)

    async def main() -> Any:
        async with router.AsyncClient(reg, url=redis_url) as c:
            info = await c.enqueue("svc.job", {"n": 5})
            assert (await c.get_task(info)).state is router.TaskState.PENDING
            assert (await c.cancel(info)).outcome is router.CancelOutcome.CANCELLED
            return await c.wait(info, timeout_s=5)

    assert asyncio.run(main()).state is router.TaskState.CANCELLED
