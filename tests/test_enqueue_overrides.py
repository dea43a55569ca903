"""Per-enqueue policy overrides (README's enqueue options): ``timeout_s`` and ``max_retry`` given to enqueue win over
the registry's for that task only. The handler sees them on its Task, and the worker enforces them."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from enginekit import FakeClock, archived, build_registry, fast_settings, qk, raw_client, task, wait_for
from enginekit import stats as qstats

import router

# The registry's policy is generous; the overrides below are what must decide.
SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task(timeout_s=60, max_retry=5)}}}


def test_per_enqueue_timeout_is_what_the_handler_sees_and_an_async_handler_is_held_to(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    q = qk(reg, "svc")
    with router.Client(reg, url=redis_url) as c:
        short = c.enqueue("svc.job", {"slow": True}, timeout_s=0.2).id
        plain = c.enqueue("svc.job", {"slow": False}).id
    seen: dict[str, float] = {}
    app = router.Service("svc")

    async def handle(t: router.Task) -> None:
        seen[t.id] = t.timeout_s
        if t.payload["slow"]:
            await asyncio.sleep(5)  # only the 0.2 s override ends this early

    app.add("svc.job", handle)
    w = router.Worker(reg, app, url=redis_url, settings=fast_settings(), clock=FakeClock())
    w.run(burst=True)
    assert seen == {short: 0.2, plain: 60.0}
    assert (w.stats["processed"], w.stats["retried"]) == (1, 1)
    stored = json.loads(r.hget(q.messages, short))
    assert stored["err"] == "HandlerTimeout: handler exceeded its timeout of 0.2 s"
    assert r.zscore(q.retry, short) is not None
    r.close()


def test_per_enqueue_timeout_fails_a_sync_handler_that_runs_past_it(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    q = qk(reg, "svc")
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("svc.job", {}, timeout_s=0.3)
    release = threading.Event()
    seen: list[float] = []
    app = router.Service("svc")

    def handle(t: router.Task) -> None:
        seen.append(t.timeout_s)
        assert release.wait(30), "the test never released the handler"

    app.add("svc.job", handle)
    w = router.Worker(reg, app, url=redis_url, settings=fast_settings(), clock=FakeClock())
    runner = threading.Thread(target=w.run, kwargs={"burst": True})
    runner.start()
    try:
        wait_for(lambda: r.zscore(q.retry, info.id) is not None, 10, "the task to be failed at its 0.3 s override")
        assert json.loads(r.hget(q.messages, info.id))["err"].startswith("HandlerTimeout")
    finally:
        release.set()
        runner.join(15)
    assert seen == [0.3]
    assert w.stats["retried"] == 1 and w.stats["processed"] == 0
    r.close()


def test_per_enqueue_max_retry_decides_when_a_task_is_archived(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    q = qk(reg, "svc")
    clock = FakeClock()
    with router.Client(reg, url=redis_url) as c:
        once = c.enqueue("svc.job", {"which": "once"}, max_retry=1).id
        never = c.enqueue("svc.job", {"which": "never"}, max_retry=0).id
    attempts: list[tuple[str, int, int]] = []
    app = router.Service("svc")

    def fail(t: router.Task) -> Any:
        attempts.append((t.payload["which"], t.attempt, t.max_retry))
        raise RuntimeError("down")

    app.add("svc.job", fail)
    for _ in range(3):
        router.Worker(reg, app, url=redis_url, settings=fast_settings(), clock=clock).run(burst=True)
        clock.advance(3600)
    assert sorted(attempts) == [("never", 1, 0), ("once", 1, 1), ("once", 2, 1)]
    dead = archived(r, q)
    assert set(dead) == {once, never}
    assert {dead[once]["why"], dead[never]["why"]} == {"max_retry_exceeded"}
    assert qstats(r, q)["retried"] == 1
    r.close()
