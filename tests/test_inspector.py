"""The Inspector against a real Redis, on a single server and on the cluster: every query (overview, history, tasks
with cursor paging, live workers) and every action (pause, unpause, run, run all, delete, delete all)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from enginekit import FakeClock, build_registry, fast_settings, qk, raw_client, task, wait_for

import router
from router.errors import UnknownQueue, UnknownService
from router.ops.inspector import Inspector
from router.ops.views import Progress
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect
from router.storage.envelope import decode, encode_new

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z: 20 s into a minute


def fleet(url: str) -> router.Registry:
    return build_registry(url, {
        "shop": {
            "queues": {"default": 1, "critical": 3},
            "tasks": {
                "shop.order": task("default", max_retry=0),
                "shop.flaky": task("default", max_retry=5),
                "shop.alert": task("critical"),
            },
        },
        "mail": {"queues": {"default": 1}, "tasks": {"mail.send": task()}},
    })


def app_for_shop() -> router.Service:
    app = router.Service("shop")

    def order(t: router.Task) -> None:
        if t.payload.get("fail"):
            raise RuntimeError(f"order {t.payload['n']} failed")

    def flaky(t: router.Task) -> None:
        raise RuntimeError("try again")

    app.add("shop.order", order)
    app.add("shop.flaky", flaky)
    app.add("shop.alert", lambda t: None)
    return app


def test_overview_sizes_latency_counters_and_rates(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    clock = FakeClock(T0)
    with router.Client(reg, url=url, clock=clock) as c:
        c.enqueue_many([("shop.order", {"n": n}) for n in range(5)])
        c.enqueue_many([("shop.order", {"n": n, "fail": True}) for n in range(2)])
        c.enqueue("shop.flaky", {})
        c.enqueue("shop.alert", {}, process_in=3600)
    router.Worker(reg, app_for_shop(), url=url, settings=fast_settings(), clock=clock).run(burst=True)
    with router.Client(reg, url=url, clock=FakeClock(T0 + 30)) as c:
        c.enqueue("shop.order", {"n": 99})  # enqueued at T0+30: pending, 90 s old when looked at below

    with Inspector(reg, url, clock=FakeClock(T0 + 120)) as ins:
        queues = {(q.service, q.queue): q for q in ins.overview()}
        assert set(queues) == {("shop", "default"), ("shop", "critical"), ("mail", "default")}
        d = queues[("shop", "default")]
        assert d.sizes == {"pending": 1, "active": 0, "scheduled": 0, "retry": 1, "archived": 2, "completed": 0,
                           "cancelled": 0, "aggregating": 0}
        assert (d.processed, d.failed, d.paused, d.paused_since_ms) == (5, 3, False, None)
        assert d.latency_s == pytest.approx(90.0)
        # The worker settled at T0 (minute m); at T0+120 the last whole minute is m+1, the last hour holds m.
        assert (d.last_minute.processed, d.last_minute.failed, d.last_minute.seconds) == (0, 0, 60)
        assert (d.last_hour.processed, d.last_hour.failed, d.last_hour.seconds) == (5, 3, 3600)
        assert d.last_hour.processed_per_s == pytest.approx(5 / 3600)
        assert queues[("shop", "critical")].sizes["scheduled"] == 1
        assert queues[("shop", "critical")].latency_s is None
        assert ins.queue("mail", "default").sizes["pending"] == 0
        assert [q.queue for q in ins.overview("shop")] == ["default", "critical"]
    with Inspector(reg, url, clock=FakeClock(T0 + 60)) as ins:
        assert (ins.queue("shop", "default").last_minute.processed, ins.queue("shop", "default").last_minute.failed) \
            == (5, 3)
        history = ins.history("shop", "default", minutes=3)
        minute = int(T0 // 60) * 60_000
        assert [(m.minute_ms, m.processed, m.failed) for m in history] == [
            (minute - 120_000, 0, 0), (minute - 60_000, 0, 0), (minute, 5, 3)]
        assert len(ins.history("shop", "default", minutes=100_000)) == 24 * 60
        with pytest.raises(UnknownQueue, match="no queue 'nope'"):
            ins.queue("shop", "nope")
        with pytest.raises(UnknownService):
            ins.overview("nope")
    # The per-minute counters are bounded: each hour's hash expires 25 hours after its last new field.
    hour_key = qk(reg, "shop").minutes(int(T0 * 1000) // 3_600_000)
    assert 0 < r.ttl(hour_key) <= 25 * 3600


def test_tasks_pages_every_state_in_order(target: tuple[str, Any]) -> None:
    url, _r = target
    reg = fleet(url)
    clock = FakeClock(T0, tick_s=0.001)
    with router.Client(reg, url=url, clock=clock) as c:
        pending = [i.id for i in c.enqueue_many([("shop.order", {"n": n}) for n in range(250)])]
        later = [c.enqueue("shop.order", {"n": n}, process_in=60 + n).id for n in range(7)]
    with Inspector(reg, url) as ins:
        seen, cursor, pages = [], None, 0
        while True:
            page = ins.tasks("shop", "default", "pending", limit=100, cursor=cursor)
            assert page.total == 250
            seen += [t.id for t in page.tasks]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert (seen, pages) == (pending, 3)  # oldest (next to run) first
        first = ins.tasks("shop", "default", "pending", limit=2).tasks[0]
        assert (first.type, first.payload, first.state, first.failures, first.at_ms) == (
            "shop.order", {"n": 0}, "pending", 0, None)
        sched = ins.tasks("shop", "default", router.TaskState.SCHEDULED, limit=3)
        assert [t.id for t in sched.tasks] == later[:3] and sched.total == 7
        rest = ins.tasks("shop", "default", "scheduled", limit=10, cursor=sched.next_cursor)
        assert [t.id for t in rest.tasks] == later[3:] and rest.next_cursor is None
        at = [t.at_ms or 0 for t in sched.tasks + rest.tasks]
        assert at == sorted(at) and at[0] > (T0 + 60) * 1000  # when each runs
        assert ins.tasks("shop", "critical", "archived").tasks == []
        with pytest.raises(ValueError, match="invalid cursor"):
            ins.tasks("shop", "default", "archived", cursor=sched.next_cursor)  # a cursor of another state
        with pytest.raises(ValueError, match="invalid cursor"):
            ins.tasks("shop", "default", "pending", cursor="not-a-cursor")


def test_a_pending_page_continues_after_its_last_task_while_workers_drain(target: tuple[str, Any]) -> None:
    url, _r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    with router.Client(reg, url=url) as c:
        ids = [i.id for i in c.enqueue_many([("shop.order", {"n": n}) for n in range(300)])]
    broker = SyncBroker(connect(url))
    try:
        with Inspector(reg, url) as ins:
            first = ins.tasks("shop", "default", "pending", limit=100)
            assert [t.id for t in first.tasks] == ids[:100]
            leased = protocol.parse_dequeue(broker.run(protocol.dequeue(q, 30_000, 40))).deliveries
            assert [d.task_id for d in leased] == ids[:40]  # a worker took the oldest 40 meanwhile
            second = ins.tasks("shop", "default", "pending", limit=100, cursor=first.next_cursor)
            assert [t.id for t in second.tasks] == ids[100:200]  # not shifted by the 40
            broker.run(protocol.dequeue(q, 30_000, 200))  # the anchor itself is taken: start at the oldest left
            third = ins.tasks("shop", "default", "pending", limit=100, cursor=second.next_cursor)
            assert [t.id for t in third.tasks] == ids[240:300]
            active = ins.tasks("shop", "default", "active", limit=500)
            assert sorted(t.id for t in active.tasks) == sorted(ids[:240]) and active.total == 240
            assert all(t.at_ms for t in active.tasks)
    finally:
        broker.close()


def test_pause_and_unpause_are_persisted_and_visible(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    with Inspector(reg, url, clock=FakeClock(T0)) as ins:
        assert ins.pause("shop", "default").done == 1
        assert ins.pause("shop", "default").done == 0  # already paused: the first time is kept
        info = ins.queue("shop", "default")
        assert (info.paused, info.paused_since_ms) == (True, int(T0 * 1000))
        assert r.get(q.paused) == str(int(T0 * 1000)).encode()
        assert ins.queues("shop")[0].paused  # what router status shows
        assert ins.unpause("shop", "default").done == 1
        assert ins.unpause("shop", "default").done == 0
        assert not ins.queue("shop", "default").paused and r.exists(q.paused) == 0


def test_an_idle_worker_serves_a_queue_the_moment_it_is_unpaused(redis_url: str) -> None:
    reg = fleet(redis_url)
    q = qk(reg, "shop")
    done: list[int] = []
    app_order = router.Service("shop")
    app_order.add("shop.order", lambda t: done.append(t.payload["n"]))
    app_order.add("shop.flaky", lambda t: None)
    app_order.add("shop.alert", lambda t: None)
    # Maintenance every 60 s: only the wake token that unpause pushes can bring the worker back in time.
    worker = router.Worker(reg, app_order, url=redis_url, settings=fast_settings(maintenance_s=60.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    ins = Inspector(reg, redis_url)
    r = raw_client(redis_url)
    try:
        ins.pause("shop", "default")
        thread.start()
        wait_for(lambda: ins.live_workers("shop"), 10, "the worker's heartbeat")
        with router.Client(reg, url=redis_url) as c:
            c.enqueue_many([("shop.order", {"n": n}) for n in range(3)])
        wait_for(lambda: r.llen(q.wake) == 0, 10, "the idle worker to take the wake token while paused")
        assert done == [] and ins.queue("shop", "default").sizes["pending"] == 3
        ins.unpause("shop", "default")
        wait_for(lambda: sorted(done) == [0, 1, 2], 5, "the backlog to run right after unpausing")
    finally:
        worker.stop()
        thread.join(timeout=10)
        ins.close()
        r.close()


def test_live_workers_show_handlers_and_running_tasks(target: tuple[str, Any]) -> None:
    url, _ = target
    reg = fleet(url)
    release = threading.Event()
    app = router.Service("shop")
    app.add("shop.order", lambda t: release.wait(20))
    app.add("shop.flaky", lambda t: None)
    app.add("shop.alert", lambda t: None)
    worker = router.Worker(reg, app, url=url, settings=fast_settings(concurrency=2))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with router.Client(reg, url=url) as c:
            info = c.enqueue("shop.order", {"n": 1})
        with Inspector(reg, url) as ins:
            w = wait_for(lambda: [w for w in ins.live_workers("shop") if w.running], 10, "a heartbeat with the task")[0]
            assert (w.service, w.queues, w.handlers, w.concurrency) == (
                "shop", ["default", "critical"], ["shop.alert", "shop.flaky", "shop.order"], 2)
            [running] = w.running
            assert (running.id, running.type, running.queue) == (info.id, "shop.order", "default")
            assert running.started_ms > 0 and w.started_ms and w.at_ms and w.pid > 0
            assert ins.live_workers("mail") == []
            assert ins.queue("shop", "default").live_workers == 1
            json_doc = w.to_json()
            assert json_doc["running"][0]["id"] == info.id
    finally:
        release.set()
        worker.stop()
        thread.join(timeout=10)


def _archive(r: Any, q: Any, ids: list[str], reason: str = "max_retry_exceeded", at_ms: int = 1) -> None:
    pipe = r.pipeline(transaction=False)
    for n, task_id in enumerate(ids):
        env = encode_new("shop.order", f'{{"n":{n}}}', 1000).replace(
            '"e":1000', f'"e":1000,"n":3,"why":"{reason}","err":"RuntimeError: boom"')
        pipe.hset(q.messages, task_id, env)
        pipe.zadd(q.archived, {task_id: at_ms + n})
    pipe.execute()


def test_run_and_delete_named_tasks(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    _archive(r, q, ["a1", "a2", "a3"])
    with router.Client(reg, url=url) as c:
        c.enqueue("shop.order", {"n": 1}, task_id="s1", process_in=600)
        c.enqueue("shop.order", {"n": 2}, task_id="p1")
    with Inspector(reg, url) as ins:
        res = ins.run("shop", "default", ["a1", "s1", "p1", "nope"])
        assert res.tasks == {"a1": "archived", "s1": "scheduled", "p1": None, "nope": None}
        assert (res.done, res.total, res.missed) == (2, 4, ["p1", "nope"])
        env = decode(r.hget(q.messages, "a1"))
        assert (env.failures, env.reason, env.last_error) == (0, None, "RuntimeError: boom")  # fresh retries
        assert ins.run("shop", "default", ["a2"], state="retry").tasks == {"a2": None}  # a2 is archived, not retry
        pending = ins.tasks("shop", "default", "pending").tasks
        assert [t.id for t in pending] == ["p1", "a1", "s1"]
        assert r.llen(q.wake) == 1  # an idle worker wakes up
        gone = ins.delete("shop", "default", ["a2", "p1", "nope"])
        assert (gone.done, gone.tasks) == (2, {"a2": "archived", "p1": "pending", "nope": None})
        assert r.hexists(q.messages, "a2") == 0 and r.hexists(q.messages, "p1") == 0
        assert ins.delete("shop", "default", ["a3"], state="scheduled").done == 0
        leased = protocol.parse_dequeue(SyncBroker(connect(url)).run(protocol.dequeue(q, 30_000, 1))).deliveries
        assert ins.delete("shop", "default", [leased[0].task_id]).tasks == {leased[0].task_id: None}  # running
        assert r.hexists(q.messages, leased[0].task_id) == 1
        with pytest.raises(ValueError, match="cannot run tasks that are pending"):
            ins.run("shop", "default", ["x"], state="pending")
        stats = {k.decode(): int(v) for k, v in r.hgetall(q.stats).items()}
        assert (stats["run"], stats["deleted"]) == (2, 2)


def test_run_all_and_delete_all_proceed_in_batches_with_progress(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    _archive(r, q, [f"a{n}" for n in range(25)])
    with router.Client(reg, url=url) as c:
        c.enqueue_many([("shop.order", {"n": n}, {"process_in": 600}) for n in range(12)])
    with Inspector(reg, url) as ins:
        seen: list[Progress] = []
        res = ins.run_all("shop", "default", "archived", batch=10, progress=seen.append)
        assert (res.done, res.total, res.batches) == (25, 25, 3)
        assert [(p.done, p.total, p.batches) for p in seen] == [(10, 25, 1), (20, 25, 2), (25, 25, 3)]
        assert r.zcard(q.archived) == 0 and r.llen(q.pending) == 25
        assert decode(r.hget(q.messages, "a7")).reason is None
        res = ins.delete_all("shop", "default", "scheduled", batch=5)
        assert (res.done, res.batches) == (12, 3) and r.zcard(q.scheduled) == 0
        res = ins.delete_all("shop", "default", "pending", batch=100)
        assert (res.done, res.batches) == (25, 1) and r.llen(q.pending) == 0 and r.hlen(q.messages) == 0
        assert ins.delete_all("shop", "default", "archived").done == 0
        with pytest.raises(ValueError, match="cannot delete tasks that are active"):
            ins.delete_all("shop", "default", "active")


@pytest.mark.timeout(300)
def test_paging_100000_pending_keeps_memory_bounded(target: tuple[str, Any]) -> None:
    import tracemalloc  # noqa: PLC0415 - only this test measures

    url, _r = target
    reg = fleet(url)
    n = 100_000
    with router.Client(reg, url=url) as c:
        for start in range(0, n, 10_000):
            c.enqueue_many([("shop.order", {"n": i}) for i in range(start, start + 10_000)])
    with Inspector(reg, url) as ins:
        tracemalloc.start()
        try:
            count, pages, cursor, last = 0, 0, None, -1
            while True:
                page = ins.tasks("shop", "default", "pending", limit=500, cursor=cursor)
                for t in page.tasks:
                    assert t.payload["n"] == last + 1  # every task once, oldest first
                    last += 1
                count += len(page.tasks)
                pages += 1
                cursor = page.next_cursor
                if cursor is None:
                    break
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (count, pages) == (n, 200)
    assert peak < 4 * 1024 * 1024, f"paging held {peak} bytes at its peak: it must not grow with the queue"


@pytest.mark.timeout(300)
def test_run_all_over_100000_archived_proceeds_in_batches(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    n = 100_000
    for start in range(0, n, 10_000):
        _archive(r, q, [f"a{i}" for i in range(start, start + 10_000)], at_ms=start + 1)
    with Inspector(reg, url) as ins:
        seen: list[Progress] = []
        res = ins.run_all("shop", "default", "archived", progress=seen.append)
    assert (res.done, res.total, res.batches) == (n, n, 100)
    assert len(seen) == 100 and seen[0].done == 1000 and [p.done for p in seen] == sorted(p.done for p in seen)
    assert r.zcard(q.archived) == 0 and r.llen(q.pending) == n
    assert r.lindex(q.pending, -1) == b"a0"  # the oldest archived runs first


def test_cancelled_tasks_are_listed_and_deleted_and_aggregating_ones_counted(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    for n in range(3):  # as the lifecycle's cancel leaves them: terminal, the message kept
        r.hset(q.messages, f"c{n}", encode_new("shop.order", f'{{"n":{n}}}', 1000).replace('"e":1000',
                                                                                            '"e":1000,"why":"cancelled"'))
        r.zadd(q.cancelled, {f"c{n}": 5000 + n})
    r.hset(q.stats, "aggregating", 4)  # members waiting in their groups: counted, one list per group
    with Inspector(reg, url) as ins:
        info = ins.queue("shop", "default")
        assert (info.sizes["cancelled"], info.sizes["aggregating"]) == (3, 4)
        page = ins.tasks("shop", "default", "cancelled")
        assert [(t.id, t.at_ms, t.reason) for t in page.tasks] == [("c0", 5000, "cancelled"), ("c1", 5001, "cancelled"),
                                                                   ("c2", 5002, "cancelled")]
        with pytest.raises(ValueError, match="one list per group"):
            ins.tasks("shop", "default", "aggregating")
        assert ins.delete("shop", "default", ["c0"]).tasks == {"c0": "cancelled"}
        assert ins.delete_all("shop", "default", "cancelled").done == 2
        assert r.zcard(q.cancelled) == 0 and r.hlen(q.messages) == 0
        assert ins.run("shop", "default", ["c1"]).tasks == {"c1": None}  # cancelled is terminal: never run again
