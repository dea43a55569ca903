"""`router.AsyncClient`: enqueue and enqueue_many route by the registry exactly as the sync client does, one script
call per queue, the same refusals, and an unknown outcome carrying every task id when Redis is unreachable."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from enginekit import build_registry, dbsize, fast_settings, qk, raw_client, task
from enginekit import stats as qstats

import router
from router.task import TaskState

SERVICES = {
    "shop": {
        "queues": {"default": 1, "critical": 3},
        "tasks": {
            "shop.order": task("default", {"type": "object", "required": ["n"]}),
            "shop.alert": task("critical"),
        },
    }
}


def script_calls(r: Any) -> int:
    """EVALSHA + EVAL commands the server has run so far (INFO commandstats)."""
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_async_enqueue_and_enqueue_many_reach_the_owners_queues(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    d, crit = qk(reg, "shop", "default"), qk(reg, "shop", "critical")

    async def produce() -> tuple[router.TaskInfo, router.TaskInfo, list[router.TaskInfo], int]:
        async with router.AsyncClient(reg, url=redis_url) as client:
            one = await client.enqueue("shop.order", {"n": 1}, task_id="first")
            later = await client.enqueue("shop.alert", {"n": 2}, process_in=3600)
            before = script_calls(r)
            many = await client.enqueue_many([
                ("shop.order", {"n": 3}),
                ("shop.alert", {"n": 4}),
                ("shop.order", {"n": 5}, {"queue": "critical", "task_id": "moved"}),
                ("shop.order", {"n": 6}),
            ])
            return one, later, many, script_calls(r) - before

    one, later, many, calls = asyncio.run(produce())
    assert (one.id, one.service, one.queue, one.state) == ("first", "shop", "default", TaskState.PENDING)
    assert (later.queue, later.state) == ("critical", TaskState.SCHEDULED)
    assert [(i.type, i.queue) for i in many] == [
        ("shop.order", "default"), ("shop.alert", "critical"), ("shop.order", "critical"), ("shop.order", "default")]
    assert many[2].id == "moved" and len({i.id for i in many}) == 4
    assert calls == 2, "enqueue_many sends one script call per queue"
    assert r.llen(d.pending) == 3 and r.llen(crit.pending) == 2 and r.zcard(crit.scheduled) == 1
    assert r.hexists(d.messages, "first") and r.hexists(crit.messages, "moved")

    seen: list[int] = []
    app = router.Service("shop")
    app.add("shop.order", lambda t: seen.append(t.payload["n"]))
    app.add("shop.alert", lambda t: seen.append(t.payload["n"]))
    w = router.Worker(reg, app, url=redis_url, settings=fast_settings())
    w.run(burst=True)
    assert sorted(seen) == [1, 3, 4, 5, 6]  # the delayed one waits in scheduled
    assert qstats(r, d)["processed"] == 3 and qstats(r, crit)["processed"] == 2
    r.close()


def test_async_refusals_and_conflicts_write_nothing(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)

    async def produce() -> None:
        async with router.AsyncClient(reg, url=redis_url) as client:
            await client.enqueue("shop.order", {"n": 1}, task_id="taken")
            before = dbsize(r), r.hget(qk(reg, "shop").messages, "taken")
            with pytest.raises(router.UnknownTaskType):
                await client.enqueue("shop.ordr", {"n": 1})
            with pytest.raises(router.PayloadInvalid):
                await client.enqueue_many([("shop.alert", {}), ("shop.order", {})])  # the second lacks n
            with pytest.raises(router.InvalidOption):
                await client.enqueue("shop.order", {"n": 1}, timeout_s=0)
            with pytest.raises(router.TaskIdConflict) as conflict:
                await client.enqueue("shop.order", {"n": 2}, task_id="taken")
            assert (conflict.value.task_id, conflict.value.queue) == ("taken", "default")
            assert (dbsize(r), r.hget(qk(reg, "shop").messages, "taken")) == before

    asyncio.run(produce())
    assert r.llen(qk(reg, "shop").pending) == 1
    r.close()


def test_async_enqueue_outcome_unknown_carries_every_task_id() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    reg = build_registry(url, SERVICES)

    async def produce() -> tuple[router.EnqueueOutcomeUnknown, router.EnqueueOutcomeUnknown]:
        async with router.AsyncClient(reg, url=url) as client:
            with pytest.raises(router.EnqueueOutcomeUnknown) as one:
                await client.enqueue("shop.order", {"n": 1}, task_id="mine-1")
            with pytest.raises(router.EnqueueOutcomeUnknown) as many:
                await client.enqueue_many([("shop.order", {"n": i}) for i in range(3)] + [("shop.alert", {})])
        return one.value, many.value

    one, many = asyncio.run(produce())
    assert one.task_ids == ("mine-1",) and "task_id='mine-1'" in str(one)
    assert one.__cause__ is not None
    assert len(set(many.task_ids)) == 4 and many.task_id == many.task_ids[0]
    assert "Repeat the batch of 4" in str(many)
