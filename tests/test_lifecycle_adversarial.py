"""Adversarial lifecycle cases: the end paths a unique lock, a waiter or a cancel request can be forgotten on, the
inputs a hostile caller passes to wait and enqueue, and aggregation under many groups and garbage bookkeeping."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from enginekit import build_registry, fast_settings, qk, raw_client, stats, task, wait_for

import router
from router.registry.model import AggregateSpec, UniquePolicy
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


def test_an_orphan_archived_by_the_sweep_releases_its_lock_and_tells_its_waiters(target: tuple[str, Any]) -> None:
    """Regression: quarantine.lua archived an orphaned message (one nothing referenced any more) without releasing
    its until_finished lock (held for unique_s) or publishing its end (a waiter learned it only by its 2 s
    re-look, and its Q:waiters entry was never removed)."""
    url, r = target
    reg = build_registry(url, SERVICES)
    q = qk(reg, "svc")
    with router.Client(reg, url=url) as c:
        info = c.enqueue("svc.until", {"n": 2})
        r.lrem(q.pending, 1, info.id)  # the message is now referenced by nothing
        got: dict[str, Any] = {}
        waiter = threading.Thread(target=lambda: got.setdefault("end", c.wait(info, timeout_s=20)))
        waiter.start()
        wait_for(lambda: r.hget(q.waiters, info.id), 10, "the waiter to register")
        listener = r.pubsub(ignore_subscribe_messages=True)
        listener.subscribe(q.waiters)
        router.Worker(reg, _app(), url=url, settings=fast_settings()).run(burst=True)
        message = wait_for(lambda: listener.get_message(timeout=0.1), 10, "the end to be published")
        assert message["data"] == info.id.encode()
        listener.close()
        waiter.join(20)
        assert (got["end"].state, got["end"].reason) == (router.TaskState.ARCHIVED, "orphan")
        assert _locks(r, q) == [] and r.hlen(q.waiters) == 0
        c.enqueue("svc.until", {"n": 2})


def test_wait_refuses_a_nan_timeout_and_looks_once_for_zero_or_less(redis_url: str) -> None:
    """Regression: ``wait(timeout_s=nan)`` compared false everywhere, so it neither timed out nor paused: a busy
    loop of lookups (over 100,000 commands a second) that never returned."""
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("svc.job", {})
        for bad in (float("nan"), "5", True):
            with pytest.raises(router.InvalidOption, match="timeout_s"):
                c.wait(info, timeout_s=bad)  # type: ignore[arg-type]
        for quick in (0, -1, 0.0):
            with pytest.raises(router.WaitTimeout) as caught:
                c.wait(info, timeout_s=quick)
            assert caught.value.state == "pending"
    assert r.hlen(qk(reg, "svc").waiters) == 0  # every wait that entered left again
    r.close()


def test_many_concurrent_waiters_leave_no_count_behind(target: tuple[str, Any]) -> None:
    url, r = target
    reg = build_registry(url, SERVICES)
    q = qk(reg, "svc")
    with router.Client(reg, url=url) as c:
        info = c.enqueue("svc.job", {})
        ends: list[router.TaskState] = []
        timeouts: list[str] = []

        def wait(timeout_s: float) -> None:
            with router.Client(reg, url=url) as mine:
                try:
                    ends.append(mine.wait(info, timeout_s=timeout_s).state)
                except router.WaitTimeout as exc:
                    timeouts.append(exc.state)

        threads = [threading.Thread(target=wait, args=(0.2 if i % 4 == 0 else 30,)) for i in range(12)]
        for t in threads:
            t.start()
        wait_for(lambda: len(timeouts) == 3, 10, "the short waits to time out")
        wait_for(lambda: int(r.hget(q.waiters, info.id) or 0) == 9, 10, "the other nine to register")
        router.Worker(reg, _app(), url=url, settings=fast_settings()).run(burst=True)
        for t in threads:
            t.join(30)
        assert ends == [router.TaskState.COMPLETED] * 9
    assert r.hlen(q.waiters) == 0


def test_an_async_wait_refuses_nan_and_leaves_no_count(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)

    async def main() -> None:
        async with router.AsyncClient(reg, url=redis_url) as c:
            info = await c.enqueue("svc.job", {})
            with pytest.raises(router.InvalidOption, match="timeout_s"):
                await c.wait(info, timeout_s=float("nan"))
            with pytest.raises(router.WaitTimeout):
                await c.wait(info, timeout_s=0.1)

    asyncio.run(main())
    r = raw_client(redis_url)
    assert r.hlen(qk(reg, "svc").waiters) == 0
    r.close()


def test_a_wait_survives_a_redis_restart(fresh_redis_server: Any) -> None:
    """Regression: the subscription's connection reset by a Redis restart raised a raw redis ConnectionError out
    of ``wait``; it now subscribes and looks again (the end may have been published meanwhile) until its
    timeout."""
    url = fresh_redis_server.url
    reg = build_registry(url, SERVICES)
    q = qk(reg, "svc")
    with router.Client(reg, url=url) as c:
        info = c.enqueue("svc.job", {})
        got: dict[str, Any] = {}

        def wait() -> None:
            try:
                got["end"] = c.wait(info, timeout_s=60)
            except BaseException as exc:
                got["error"] = exc

        waiter = threading.Thread(target=wait)
        waiter.start()
        r = fresh_redis_server.client()
        wait_for(lambda: r.hget(q.waiters, info.id), 10, "the waiter to register")
        r.close()
        fresh_redis_server.restart()  # append-only: the task and the waiter's count survive
        router.Worker(reg, _app(), url=url, settings=fast_settings()).run(burst=True)
        waiter.join(30)
        assert "error" not in got, got.get("error")
        assert got["end"].state is router.TaskState.COMPLETED


AGG = {"svc": {"queues": {"default": 1}, "tasks": {
    "svc.line": task(aggregate=AggregateSpec(into="svc.digest", grace_s=0.05, max_delay_s=60, max_size=100)),
    "svc.digest": task(),
}}}


def _digest_app(flushed: list[Any]) -> router.Service:
    app = router.Service("svc")
    app.add("svc.digest", lambda t: flushed.append(t.payload))
    return app


def test_more_groups_due_than_one_sweep_reports_all_flush_promptly(target: tuple[str, Any]) -> None:
    """Regression: maintain.lua reports at most 10 due groups and did not count the rest in its next due time, so
    with ``maintenance_s`` 5 the 11th to 25th groups waited 5 and 10 s more."""
    url, r = target
    reg = build_registry(url, AGG)
    flushed: list[Any] = []
    with router.Client(reg, url=url) as c:
        c.enqueue_many([("svc.line", {"i": i}, {"group": f"g{i}"}) for i in range(25)])
    worker = router.Worker(reg, _digest_app(flushed), url=url, settings=fast_settings(maintenance_s=5.0))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: len(flushed) == 25, 4, "all 25 groups to flush within one maintenance period")
    finally:
        worker.stop()
        thread.join(10)
    q = qk(reg, "svc")
    assert sorted(p["group"] for p in flushed) == sorted(f"g{i}" for i in range(25))
    assert r.zcard(q.groups) == 0 and stats(r, q)["aggregating"] == 0


def test_garbage_in_the_groups_index_neither_crashes_a_worker_nor_stays_due(target: tuple[str, Any]) -> None:
    """Regression: a Q:groups entry that is not "<member type>:<name>" raised ValueError out of the worker (every
    input is untrusted); a due group whose list is gone stayed due forever. A member whose message is gone is
    archived as missing_message instead of being counted as done."""
    url, r = target
    reg = build_registry(url, AGG)
    q = qk(reg, "svc")
    flushed: list[Any] = []
    with router.Client(reg, url=url) as c:
        kept = c.enqueue("svc.line", {"n": 1}, group="real")
        gone = c.enqueue("svc.line", {"n": 2}, group="real")
        r.hdel(q.messages, gone.id)
        r.zadd(q.groups, {"not a group": 0, "svc.line:": 0, "svc.line:-x": 0, "svc.line:emptied": 0,
                          "svc.line:real": 0})  # due now: a burst flushes only what is due
        router.Worker(reg, _digest_app(flushed), url=url, settings=fast_settings()).run(burst=True)
        assert flushed == [{"group": "real", "items": [{"n": 1}]}]
        assert r.zcard(q.groups) == 0
        assert c.get_task(kept).state is router.TaskState.COMPLETED
        missing = c.get_task(gone)
        assert (missing.state, missing.reason) == (router.TaskState.ARCHIVED, "missing_message")
    counts = stats(r, q)
    assert counts["aggregating"] == 0 and counts["stale_bookkeeping"] == 3 and counts["archived"] == 1


def test_a_deadline_not_after_the_delayed_start_is_refused(redis_url: str) -> None:
    """A deadline at or before ``process_in``/``process_at`` could never be met: the task would sit scheduled, then
    be archived as deadline_exceeded without running. Refused like a deadline already past (honoured or refused)."""
    reg = build_registry(redis_url, SERVICES)
    now = time.time()
    with router.Client(reg, url=redis_url) as c:
        with pytest.raises(router.InvalidOption, match="delayed start") as caught:
            c.enqueue("svc.job", {}, process_in=100, deadline=now + 10)
        assert caught.value.option == "deadline"
        with pytest.raises(router.InvalidOption, match="delayed start"):
            c.enqueue("svc.job", {}, process_at=now + 50, deadline=now + 50)
        info = c.enqueue("svc.job", {}, process_in=10, deadline=now + 100)  # room to run: accepted
        assert c.get_task(info).state is router.TaskState.SCHEDULED
        c.enqueue("svc.job", {}, process_at=now - 5, deadline=now + 100)  # a start already past runs now
    r = raw_client(redis_url)
    assert r.zcard(qk(reg, "svc").scheduled) == 1 and r.llen(qk(reg, "svc").pending) == 1
    r.close()


def test_a_unique_window_under_a_millisecond_still_locks(redis_url: str) -> None:
    """Regression: ``unique_s: 0.0004`` (the schema takes any positive number) became ``SET ... PX 0``, which Redis
    refuses: every enqueue of the type failed with a BrokerError."""
    reg = build_registry(redis_url, {"svc": {"tasks": {"svc.tiny": task(unique_s=0.0004)}}})
    with router.Client(reg, url=redis_url) as c:
        c.enqueue("svc.tiny", {"a": 1})
        wait_for(lambda: _accepted(c, "svc.tiny", {"a": 1}), 5, "the 1 ms lock to expire")


def _accepted(c: router.Client, task_type: str, payload: dict[str, Any]) -> bool:
    try:
        c.enqueue(task_type, payload)
    except router.DuplicateTask:
        return False
    return True


def test_unique_s_takes_the_ten_years_the_docs_promise(tmp_path: Any) -> None:
    """docs/lifecycle.md and registry.md say unique_s is at most ten years; the schema stopped at one."""
    path = tmp_path / "services.yaml"
    path.write_text("version: 1\nservices:\n  s:\n    tasks:\n      s.t: {unique_s: 315360000}\n")
    assert router.load(path, env={}).tasks["s.t"].unique_s == 315360000
    path.write_text("version: 1\nservices:\n  s:\n    tasks:\n      s.t: {unique_s: 315360001}\n")
    with pytest.raises(router.ConfigError, match="unique_s"):
        router.load(path, env={})
