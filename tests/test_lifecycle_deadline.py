"""Deadlines: a task given ``deadline=`` that has not finished by then is archived as ``deadline_exceeded``, whether
it was still waiting, ran into it, or would only be retried after it; bad deadlines are refused at enqueue."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from enginekit import FakeClock, build_registry, fast_settings, task

import router

SERVICES = {"svc": {"tasks": {"svc.job": task(max_retry=5, timeout_s=30), "svc.slow": task(timeout_s=30)}}}


def _app(ran: list[str]) -> router.Service:
    app = router.Service("svc")

    def job(t: router.Task) -> None:
        ran.append(t.id)
        raise RuntimeError("flaky")

    def slow(t: router.Task) -> None:
        ran.append(t.id)
        assert t.timeout_s <= 1.0  # its timeout is cut to reach no further than the deadline
        time.sleep(5)  # the handler under test: it overruns its deadline

    app.add("svc.job", job)
    app.add("svc.slow", slow)
    return app


def test_a_task_past_its_deadline_never_starts(target: tuple[str, Any]) -> None:
    url, _ = target
    reg = build_registry(url, SERVICES)
    clock = FakeClock(start=time.time())
    ran: list[str] = []
    with router.Client(reg, url=url, clock=clock) as c:
        info = c.enqueue("svc.job", {}, deadline=clock.now + 10)
        clock.advance(20)
        router.Worker(reg, _app(ran), url=url, settings=fast_settings(), clock=clock).run(burst=True)
        detail = c.get_task(info)
    assert ran == [] and (detail.state, detail.reason) == (router.TaskState.ARCHIVED, "deadline_exceeded")
    assert detail.deadline_ms == int((clock.now - 20 + 10) * 1000)


def test_a_retry_that_would_start_after_the_deadline_is_archived(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    ran: list[str] = []
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("svc.job", {}, deadline=time.time() + 60)
        router.Worker(reg, _app(ran), url=redis_url, settings=fast_settings(),
                      backoff=lambda n, e: 120).run(burst=True)
        detail = c.get_task(info)
    assert len(ran) == 1
    assert (detail.state, detail.reason) == (router.TaskState.ARCHIVED, "deadline_exceeded")
    assert detail.error is not None and "after its deadline" in detail.error


def test_a_task_running_into_its_deadline_is_archived(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    ran: list[str] = []
    worker = router.Worker(reg, _app(ran), url=redis_url, settings=fast_settings())
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        with router.Client(reg, url=redis_url) as c:
            info = c.enqueue("svc.slow", {}, deadline=time.time() + 1.0)
            detail = c.wait(info, timeout_s=20)
    finally:
        worker.stop()
        thread.join(10)
    assert (detail.state, detail.reason) == (router.TaskState.ARCHIVED, "deadline_exceeded")


@pytest.mark.parametrize("deadline", [0, -5.0, "tomorrow", float("nan")])
def test_bad_deadlines_are_refused(redis_url: str, deadline: object) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c, pytest.raises(router.InvalidOption, match="deadline"):
        c.enqueue("svc.job", {}, deadline=deadline)
