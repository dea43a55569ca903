"""Reading tasks back: get_task reports each state with what it knows (payload, error, reason, kept result, times);
wait blocks until the task ends, told by pub/sub rather than by polling, and gives up with WaitTimeout."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from enginekit import build_registry, fast_settings, qk, raw_client, task

import router
from router.producer.client import Client

SERVICES = {
    "svc": {"queues": {"default": 1, "other": 1}, "tasks": {
        "svc.kept": task(retention_s=60),
        "svc.bare": task(),
        "svc.fails": task(max_retry=0),
    }},
    "two": {"tasks": {"two.job": task()}},
}


def _app(gate: threading.Event | None = None) -> router.Service:
    app = router.Service("svc")

    def kept(t: router.Task) -> Any:
        if gate is not None:
            gate.wait(10)
        return {"total": t.payload["n"] * 2}

    def fails(t: router.Task) -> None:
        raise ValueError("bad input")

    app.add("svc.kept", kept)
    app.add("svc.bare", lambda t: None)
    app.add("svc.fails", fails)
    return app


def test_get_task_reports_every_state(target: tuple[str, Any]) -> None:
    url, _ = target
    reg = build_registry(url, SERVICES)
    with router.Client(reg, url=url) as c:
        kept = c.enqueue("svc.kept", {"n": 21})
        bare = c.enqueue("svc.bare", {})
        fails = c.enqueue("svc.fails", {"x": 1})
        later = c.enqueue("svc.bare", {}, process_in=600)
        pending = c.get_task(kept)
        assert (pending.state, pending.type, pending.payload, pending.finished) == \
            (router.TaskState.PENDING, "svc.kept", {"n": 21}, False)
        assert pending.enqueued_at_ms is not None and pending.result is None
        scheduled = c.get_task(later)
        assert scheduled.state is router.TaskState.SCHEDULED and scheduled.next_run_at_ms is not None
        router.Worker(reg, _app(), url=url, settings=fast_settings()).run(burst=True)
        done = c.get_task(kept)
        assert (done.state, done.result, done.result_kept) == (router.TaskState.COMPLETED, {"total": 42}, True)
        assert done.result_expires_at_ms is not None and done.ended_at_ms is not None
        gone = c.get_task(bare)  # completed, result not kept: remembered by id only
        assert (gone.state, gone.result_kept, gone.payload) == (router.TaskState.COMPLETED, False, None)
        dead = c.get_task(fails.id, service="svc", queue="default")
        assert (dead.state, dead.reason) == (router.TaskState.ARCHIVED, "max_retry_exceeded")
        assert dead.error is not None and "bad input" in dead.error and dead.failures == 1
        with pytest.raises(router.TaskNotFound):
            c.get_task("never-enqueued")


def test_an_id_in_two_queues_is_ambiguous(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c:
        a = c.enqueue("svc.bare", {}, task_id="same")
        c.enqueue("two.job", {}, task_id="same")
        with pytest.raises(router.AmbiguousTaskId, match="svc/default, two/default"):
            c.get_task("same")
        assert c.get_task(a).service == "svc"  # the TaskInfo says where
        assert c.get_task("same", service="two").service == "two"


def test_wait_returns_when_the_task_ends_without_polling(target: tuple[str, Any]) -> None:
    url, r = target
    reg = build_registry(url, SERVICES)
    gate = threading.Event()
    worker = router.Worker(reg, _app(gate), url=url, settings=fast_settings())
    thread = threading.Thread(target=worker.run)
    thread.start()
    looks: list[str] = []
    try:
        with router.Client(reg, url=url) as c:
            info = c.enqueue("svc.kept", {"n": 5})
            original = Client._look

            def counting(self: Client, *args: Any) -> Any:
                looks.append(args[2])
                return original(self, *args)

            c._look = counting.__get__(c)  # type: ignore[method-assign]
            threading.Timer(0.5, gate.set).start()
            done = c.wait(info, timeout_s=20)
    finally:
        worker.stop()
        thread.join(10)
    assert (done.state, done.result) == (router.TaskState.COMPLETED, {"total": 10})
    # One look that registers the waiter, and one when the end is published (a re-check every 2 s at most).
    assert looks[0] == "enter" and len(looks) <= 3, looks
    assert r.hlen(qk(reg, "svc").waiters) == 0
    r.close()


def test_wait_times_out_and_withdraws(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("svc.bare", {})
        with pytest.raises(router.WaitTimeout, match=r"did not end within 0\.3 s") as caught:
            c.wait(info, timeout_s=0.3)
        assert caught.value.state == "pending" and isinstance(caught.value, TimeoutError)
        assert r.hlen(qk(reg, "svc").waiters) == 0  # the waiter count went back down
        router.Worker(reg, _app(), url=redis_url, settings=fast_settings()).run(burst=True)
        assert c.wait(info, timeout_s=0.3).state is router.TaskState.COMPLETED  # already ended: at once
    r.close()


def test_async_wait(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    worker = router.Worker(reg, _app(), url=redis_url, settings=fast_settings())

    async def main() -> router.TaskDetail:
        async with router.AsyncClient(reg, url=redis_url) as c:
            info = await c.enqueue("svc.fails", {})
            thread = threading.Thread(target=worker.run, kwargs={"burst": True})
            thread.start()
            try:
                return await c.wait(info, timeout_s=20)
            finally:
                await asyncio.to_thread(thread.join, 10)

    done = asyncio.run(main())
    assert (done.state, done.reason) == (router.TaskState.ARCHIVED, "max_retry_exceeded")


def test_a_waiter_is_told_when_an_operator_deletes_the_task(redis_url: str) -> None:
    from router.ops.inspector import Inspector  # noqa: PLC0415 - the operator's side of the test

    reg = build_registry(redis_url, SERVICES)
    looks: list[str] = []
    with router.Client(reg, url=redis_url) as c, Inspector(reg, redis_url) as ins:
        info = c.enqueue("svc.bare", {})
        original = Client._look

        def counting(self: Client, *args: Any) -> Any:
            looks.append(args[2])
            return original(self, *args)

        c._look = counting.__get__(c)  # type: ignore[method-assign]
        threading.Timer(0.3, lambda: ins.delete("svc", "default", [info.id])).start()
        with pytest.raises(router.TaskNotFound):
            c.wait(info, timeout_s=20)
    assert len(looks) == 2, looks  # told by the publication, not by the 2 s re-check
