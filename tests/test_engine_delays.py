"""Delayed tasks: process_in / process_at put a task in the scheduled set until it is due; bad delays are
refused by the guard before anything is written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from enginekit import FakeClock, build_registry, dbsize, fast_settings, qk, raw_client, task

import router

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


def _worker(reg: router.Registry, url: str, clock: FakeClock, seen: list[Any]) -> router.Worker:
    app = router.Service("svc")
    app.add("svc.job", lambda t: seen.append(t.payload["n"]))
    return router.Worker(reg, app, url=url, settings=fast_settings(), clock=clock)


def test_a_delayed_task_waits_in_scheduled_until_due(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r, clock, seen = raw_client(redis_url), FakeClock(), []
    with router.Client(reg, url=redis_url, clock=clock) as c:
        later = c.enqueue("svc.job", {"n": 1}, process_in=60)
        at = c.enqueue("svc.job", {"n": 2}, process_at=datetime.fromtimestamp(clock.now + 120, tz=timezone.utc))
        now = c.enqueue("svc.job", {"n": 3}, process_in=0)
        past = c.enqueue("svc.job", {"n": 4}, process_at=clock.now - 5)
    scheduled, pending = router.TaskState.SCHEDULED, router.TaskState.PENDING
    assert [i.state for i in (later, at, now, past)] == [scheduled, scheduled, pending, pending]
    q = qk(reg, "svc")
    assert r.zscore(q.scheduled, later.id) == (clock.now + 60) * 1000
    assert r.llen(q.pending) == 2

    _worker(reg, redis_url, clock, seen).run(burst=True)
    assert sorted(seen) == [3, 4]
    clock.advance(61)
    _worker(reg, redis_url, clock, seen).run(burst=True)
    assert sorted(seen) == [1, 3, 4]
    clock.advance(60)
    _worker(reg, redis_url, clock, seen).run(burst=True)
    assert sorted(seen) == [1, 2, 3, 4]
    assert r.zcard(q.scheduled) == 0
    r.close()


@pytest.mark.parametrize(("options", "bad"), [
    ({"process_in": -1}, "process_in"),
    ({"process_in": float("inf")}, "process_in"),
    ({"process_in": "soon"}, "process_in"),
    ({"process_in": 5, "process_at": 10.0}, "process_in"),
    ({"process_at": datetime(2030, 1, 1)}, "process_at"),
    ({"process_at": "tomorrow"}, "process_at"),
    ({"process_in_s": 5}, "process_in_s"),
])
def test_bad_delays_are_refused_before_redis(redis_url: str, options: dict[str, Any], bad: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    before = dbsize(r)
    with router.Client(reg, url=redis_url) as c, pytest.raises(router.InvalidOption) as err:
        c.enqueue("svc.job", {"n": 1}, **options)
    assert err.value.option == bad
    assert dbsize(r) == before
    r.close()


def test_process_at_with_a_timezone_is_exact(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r, clock = raw_client(redis_url), FakeClock()
    when = datetime.fromtimestamp(clock.now, tz=timezone(timedelta(hours=-5))) + timedelta(minutes=10)
    with router.Client(reg, url=redis_url, clock=clock) as c:
        info = c.enqueue("svc.job", {"n": 1}, process_at=when)
    assert r.zscore(qk(reg, "svc").scheduled, info.id) == (clock.now + 600) * 1000
    r.close()
