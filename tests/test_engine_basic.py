"""Engine lifecycle against a real Redis: enqueue, process, retry, archive, priorities, timeouts, middleware,
retention, pause and heartbeats. The cheap ones run on a single server and on the three-master cluster."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from typing import Any

import pytest
from enginekit import (
    FakeClock,
    archived,
    build_registry,
    dbsize,
    fast_settings,
    qk,
    raw_client,
    sk,
    task,
    wait_for,
)
from enginekit import stats as qstats

import router
from router.service import Service
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect
from router.storage.envelope import encode_new

SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {"n": {"type": "integer"}},
    "additionalProperties": False,
}

Item = protocol.EnqueueItem


def fleet(url: str, **task_policy: Any) -> router.Registry:
    """One service ``shop`` with queues default (weight 1) and critical (weight 3)."""
    return build_registry(
        url,
        {
            "shop": {
                "queues": {"default": 1, "critical": 3},
                "tasks": {
                    "shop.order": task("default", SCHEMA, **task_policy),
                    "shop.alert": task("critical", SCHEMA, **task_policy),
                },
            }
        },
        max_payload_bytes=1024,
    )


def worker(reg: router.Registry, app: Service, url: str, clock: Any = None, **settings: Any) -> router.Worker:
    kwargs: dict[str, Any] = {"url": url, "settings": fast_settings(**settings)}
    if clock is not None:
        kwargs["clock"] = clock
    return router.Worker(reg, app, **kwargs)


def recording_app(seen: list[tuple[str, str, int, Any]], fail: Any = None) -> Service:
    app = Service("shop")

    def handle(t: router.Task) -> Any:
        seen.append((t.id, t.type, t.attempt, dict(t.payload)))
        if fail is not None:
            fail(t)
        return {"n": t.payload["n"]}

    app.add("shop.order", handle)
    app.add("shop.alert", handle)
    return app


# --- enqueue and process ---------------------------------------------------------------------------------------


def test_enqueued_task_is_processed_exactly_once(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    with router.Client(reg, url=url) as c:
        info = c.enqueue("shop.order", {"n": 7})
    assert (info.service, info.queue, info.state) == ("shop", "default", router.TaskState.PENDING)
    assert r.llen(q.pending) == 1
    seen: list[Any] = []
    w = worker(reg, recording_app(seen), url)
    w.run(burst=True)
    assert seen == [(info.id, "shop.order", 1, {"n": 7})]
    assert w.stats["processed"] == 1 and w.stats["failed"] == 0
    assert qstats(r, q) == {"enqueued": 1, "processed": 1}
    assert r.llen(q.pending) == 0 and r.zcard(q.active) == 0 and r.hlen(q.messages) == 0
    # A second burst finds nothing: no redelivery.
    w2 = worker(reg, recording_app(seen), url)
    w2.run(burst=True)
    assert len(seen) == 1


def test_task_id_conflict_with_different_payload(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    with router.Client(reg, url=url) as c:
        c.enqueue("shop.order", {"n": 1}, task_id="order-1")
        with pytest.raises(router.TaskIdConflict) as err:
            c.enqueue("shop.order", {"n": 2}, task_id="order-1")
    assert err.value.task_id == "order-1" and err.value.queue == "default"
    assert r.llen(q.pending) == 1
    assert json.loads(r.hget(q.messages, "order-1"))["p"] == {"n": 1}
    assert qstats(r, q)["enqueued"] == 1


def test_repeated_identical_envelope_is_recognised_not_duplicated(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    q = qk(reg, "shop")
    env = encode_new("shop.order", '{"n":3}', 1_700_000_000_000)
    broker = SyncBroker(connect(url))
    try:
        first = protocol.parse_enqueue(broker.run(protocol.enqueue(q, [Item("same-id", env)])))
        again = protocol.parse_enqueue(broker.run(protocol.enqueue(q, [Item("same-id", env)])))
        other = protocol.parse_enqueue(broker.run(protocol.enqueue(q, [Item("same-id", env.replace("3", "4"))])))
    finally:
        broker.close()
    assert first == [(protocol.ENQUEUE_CREATED, "")]
    assert again == [(protocol.ENQUEUE_REPEATED, "")]
    assert other == [(protocol.ENQUEUE_CONFLICT, "")]
    assert r.lrange(q.pending, 0, -1) == [b"same-id"]
    assert r.hlen(q.messages) == 1
    assert qstats(r, q)["enqueued"] == 1
    # Through the client: a frozen clock makes the repeat byte-identical, so it is success, not a conflict.
    with router.Client(reg, url=url, clock=FakeClock()) as c:
        a = c.enqueue("shop.order", {"n": 5}, task_id="again")
        b = c.enqueue("shop.order", {"n": 5}, task_id="again")
    assert a.id == b.id == "again"
    assert r.llen(q.pending) == 2 and qstats(r, q)["enqueued"] == 2


def test_repeating_an_enqueue_after_the_task_completed_creates_no_duplicate(redis_url: str) -> None:
    reg = fleet(redis_url)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    clock = FakeClock()  # byte-identical envelopes, as the client's own retry sends
    seen: list[Any] = []
    with router.Client(reg, url=redis_url, clock=clock) as c:
        c.enqueue("shop.order", {"n": 1}, task_id="pay-42")
        worker(reg, recording_app(seen), redis_url).run(burst=True)
        assert len(seen) == 1
        # The first reply was lost (EnqueueOutcomeUnknown): the producer repeats it with the same id.
        try:
            c.enqueue("shop.order", {"n": 1}, task_id="pay-42")
        except router.TaskIdConflict:
            pass
    worker(reg, recording_app(seen), redis_url).run(burst=True)
    assert len(seen) == 1, "the task ran twice"
    assert qstats(r, q)["enqueued"] == 1


def test_guard_rejections_write_nothing(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    with router.Client(reg, url=url) as c:
        c.enqueue("shop.order", {"n": 0})  # the connection and scripts exist; only refusals follow
        before = dbsize(r)
        with pytest.raises(router.UnknownTaskType) as unknown:
            c.enqueue("shop.ordr", {"n": 1})
        assert "shop.order" in unknown.value.suggestions
        with pytest.raises(router.PayloadInvalid) as invalid:
            c.enqueue("shop.order", {"n": "one"})
        assert [v.path for v in invalid.value.violations] == ["$.n"]
        with pytest.raises(router.PayloadInvalid):
            c.enqueue("shop.order", {"n": 1, "extra": True})
        with pytest.raises(router.PayloadTooLarge) as large:
            c.enqueue("shop.order", {"n": int("9" * 2000)})
        assert large.value.limit == 1024
        with pytest.raises(router.InvalidOption) as bad_queue:
            c.enqueue("shop.order", {"n": 1}, queue="nope")
        assert bad_queue.value.option == "queue"
        with pytest.raises(router.InvalidOption):
            c.enqueue("shop.order", {"n": 1}, task_id="has{brace}")
        with pytest.raises(router.InvalidOption):
            c.enqueue("shop.order", {"n": 1}, max_retry=-1)
        # A bulk enqueue with one bad item writes none of the good ones.
        with pytest.raises(router.PayloadInvalid):
            c.enqueue_many([("shop.order", {"n": 1}), ("shop.alert", {"n": "x"})])
        assert dbsize(r) == before
        q = qk(reg, "shop")
        assert r.llen(q.pending) == 1 and r.llen(qk(reg, "shop", "critical").pending) == 0


def test_enqueue_many_spans_two_queues_in_one_call(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url)
    d, crit = qk(reg, "shop", "default"), qk(reg, "shop", "critical")
    with router.Client(reg, url=url) as c:
        infos = c.enqueue_many(
            [
                ("shop.order", {"n": 1}),
                ("shop.alert", {"n": 2}),
                ("shop.order", {"n": 3}, {"queue": "critical", "task_id": "moved"}),
                ("shop.order", {"n": 4}),
            ]
        )
    assert [(i.type, i.queue) for i in infos] == [
        ("shop.order", "default"),
        ("shop.alert", "critical"),
        ("shop.order", "critical"),
        ("shop.order", "default"),
    ]
    assert infos[2].id == "moved"
    assert r.llen(d.pending) == 2 and r.llen(crit.pending) == 2
    assert qstats(r, d)["enqueued"] == 2 and qstats(r, crit)["enqueued"] == 2
    assert r.hexists(crit.messages, "moved")
    seen: list[Any] = []
    w = worker(reg, recording_app(seen), url)
    w.run(burst=True)
    assert sorted(s[3]["n"] for s in seen) == [1, 2, 3, 4]
    assert w.stats["processed"] == 4


def test_retry_with_backoff_then_success(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url, max_retry=5)
    q = qk(reg, "shop")
    clock = FakeClock()
    with router.Client(reg, url=url, clock=clock) as c:
        info = c.enqueue("shop.order", {"n": 1})

    def fail_twice(t: router.Task) -> None:
        if t.attempt < 3:
            raise ValueError(f"boom {t.attempt}")

    seen: list[Any] = []
    app = recording_app(seen, fail_twice)
    for attempt in (1, 2):
        w = worker(reg, app, url, clock)
        w.run(burst=True)  # returns: the retry is not due on the fake clock
        assert w.stats == {**w.stats, "failed": 1, "retried": 1, "processed": 0}
        assert r.zcard(q.retry) == 1 and r.llen(q.pending) == 0
        due = r.zscore(q.retry, info.id)
        stored = json.loads(r.hget(q.messages, info.id))
        assert stored["n"] == attempt and stored["err"] == f"ValueError: boom {attempt}"
        # Exponential backoff with jitter: base 1 s * 2**(attempt-1), scaled by [0.5, 1).
        delay_s = (due - clock.now * 1000) / 1000
        assert 0.5 * 2 ** (attempt - 1) <= delay_s < 2 ** (attempt - 1) + 0.01
        idle = worker(reg, app, url, clock)
        idle.run(burst=True)
        assert len(seen) == attempt, "a retry ran before it was due"
        clock.advance(2**attempt)
    w = worker(reg, app, url, clock)
    w.run(burst=True)
    assert [s[2] for s in seen] == [1, 2, 3]
    assert w.stats["processed"] == 1 and w.stats["failed"] == 0
    assert qstats(r, q) == {"enqueued": 1, "failed": 2, "retried": 2, "processed": 1}
    assert r.zcard(q.retry) == 0 and r.hlen(q.messages) == 0


def test_skip_retry_archives_at_once(target: tuple[str, Any]) -> None:
    url, r = target
    reg = fleet(url, max_retry=5)
    q = qk(reg, "shop")
    with router.Client(reg, url=url) as c:
        info = c.enqueue("shop.order", {"n": 1})

    def skip(t: router.Task) -> None:
        raise router.SkipRetry("bad card")

    seen: list[Any] = []
    w = worker(reg, recording_app(seen, skip), url)
    w.run(burst=True)
    assert len(seen) == 1
    assert w.stats["archived"] == 1 and w.stats["retried"] == 0
    arch = archived(r, q)
    assert list(arch) == [info.id]
    assert arch[info.id]["why"] == "skip_retry" and arch[info.id]["err"] == "SkipRetry: bad card"
    assert r.zcard(q.retry) == 0
    assert qstats(r, q) == {"enqueued": 1, "failed": 1, "archived": 1}


def test_exhausting_max_retry_archives_with_last_error(redis_url: str) -> None:
    reg = fleet(redis_url, max_retry=2)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    clock = FakeClock()
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("shop.order", {"n": 1})

    def always(t: router.Task) -> None:
        raise RuntimeError(f"down {t.attempt}")

    seen: list[Any] = []
    app = recording_app(seen, always)
    for _ in range(3):
        worker(reg, app, redis_url, clock).run(burst=True)
        clock.advance(3600)
    assert [s[2] for s in seen] == [1, 2, 3]
    arch = archived(r, q)
    assert list(arch) == [info.id]
    assert arch[info.id]["why"] == "max_retry_exceeded"
    assert arch[info.id]["err"] == "RuntimeError: down 3"
    assert arch[info.id]["n"] == 3
    assert qstats(r, q) == {"enqueued": 1, "failed": 3, "retried": 2, "archived": 1}
    worker(reg, app, redis_url, clock).run(burst=True)
    assert len(seen) == 3, "an archived task ran again"


def test_archive_is_bounded_by_size_and_drops_trimmed_messages(redis_url: str) -> None:
    reg = fleet(redis_url)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    clock = FakeClock(tick_s=0.001)  # distinct archive times, in processing order
    with router.Client(reg, url=redis_url) as c:
        ids = [c.enqueue("shop.order", {"n": i}, task_id=f"dead-{i}").id for i in range(7)]

    def skip(t: router.Task) -> None:
        raise router.SkipRetry("no")

    seen: list[Any] = []
    w = worker(reg, recording_app(seen, skip), redis_url, clock, concurrency=1, archive_max_size=3)
    w.run(burst=True)
    assert [s[0] for s in seen] == ids
    assert w.stats["archived"] == 7
    assert [x.decode() for x in r.zrange(q.archived, 0, -1)] == ids[-3:]
    assert r.hlen(q.messages) == 3
    assert sorted(x.decode() for x in r.hkeys(q.messages)) == sorted(ids[-3:])
    assert qstats(r, q)["archived"] == 7


# --- priorities ---------------------------------------------------------------------------------------------------


def priority_registry(url: str, mode: str, high_weight: int) -> router.Registry:
    return build_registry(
        url,
        {
            "prio": {
                "priority": mode,
                "queues": {"low": 1, "high": high_weight},
                "tasks": {"prio.low": task("low"), "prio.high": task("high")},
            }
        },
    )


def run_priority(url: str, mode: str, high_weight: int, n: int) -> list[str]:
    reg = priority_registry(url, mode, high_weight)
    with router.Client(reg, url=url) as c:
        c.enqueue_many([("prio.low", {"i": i}) for i in range(n)])
        c.enqueue_many([("prio.high", {"i": i}) for i in range(n)])
    order: list[str] = []
    app = Service("prio")
    app.add("prio.low", lambda t: order.append("low"))
    app.add("prio.high", lambda t: order.append("high"))
    w = router.Worker(reg, app, url=url, settings=fast_settings(concurrency=1))
    w.run(burst=True)
    assert w.stats["processed"] == 2 * n
    return order


def test_strict_priority_drains_higher_weight_queue_first(redis_url: str) -> None:
    order = run_priority(redis_url, "strict", 2, 10)
    assert order == ["high"] * 10 + ["low"] * 10


def test_weighted_priority_interleaves_by_weight(redis_url: str) -> None:
    random.seed(20240501)  # the worker draws queue order from the module RNG: fixed seed, fixed order
    order = run_priority(redis_url, "weighted", 3, 40)
    first_half = Counter(order[:40])
    assert first_half["low"] > 0, "weighted priority starved the low queue"
    assert first_half["high"] > first_half["low"], f"weights ignored: {first_half}"
    assert Counter(order) == {"high": 40, "low": 40}


# --- handler kinds, timeouts, middleware ------------------------------------------------------------------------


def test_async_handler_runs(redis_url: str) -> None:
    reg = fleet(redis_url)
    with router.Client(reg, url=redis_url) as c:
        ids = {c.enqueue("shop.order", {"n": i}).id for i in range(5)}
    done: list[str] = []
    app = Service("shop")

    async def handle(t: router.Task) -> None:
        await asyncio.sleep(0)
        done.append(t.id)

    app.add("shop.order", handle)
    app.add("shop.alert", handle)
    w = worker(reg, app, redis_url)
    w.run(burst=True)
    assert set(done) == ids and len(done) == 5
    assert w.stats["processed"] == 5


def test_async_handler_timeout_is_cancelled_and_retried(redis_url: str) -> None:
    reg = fleet(redis_url, timeout_s=0.3, max_retry=3)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    clock = FakeClock()
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("shop.order", {"n": 1})
    attempts: list[int] = []
    cancelled: list[int] = []
    app = Service("shop")

    async def handle(t: router.Task) -> None:
        attempts.append(t.attempt)
        if t.attempt == 1:
            try:
                await asyncio.Event().wait()  # never set: only the timeout ends it
            except asyncio.CancelledError:
                cancelled.append(t.attempt)
                raise

    app.add("shop.order", handle)
    app.add("shop.alert", handle)
    w = worker(reg, app, redis_url, clock)
    w.run(burst=True)
    assert cancelled == [1]
    assert w.stats["retried"] == 1
    stored = json.loads(r.hget(q.messages, info.id))
    assert stored["n"] == 1 and stored["err"] == "HandlerTimeout: handler exceeded its timeout of 0.3 s"
    clock.advance(10)
    w = worker(reg, app, redis_url, clock)
    w.run(burst=True)
    assert attempts == [1, 2]
    assert qstats(r, q) == {"enqueued": 1, "failed": 1, "retried": 1, "processed": 1}


def test_async_timeout_is_recorded_as_handler_timeout_even_when_worker_cancels_first(redis_url: str) -> None:
    reg = fleet(redis_url, timeout_s=0.2, max_retry=3)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("shop.order", {"n": 1})

    class SlowHook:
        """Holds the event loop past the timeout (regression: the worker's own cancel used to win the race and
        record 'CancelledError: ' instead of HandlerTimeout)."""

        def before(self, t: router.Task) -> None:
            threading.Event().wait(0.5)

        def after(self, t: router.Task, error: BaseException | None) -> None:
            pass

    app = Service("shop")

    async def handle(t: router.Task) -> None:
        await asyncio.Event().wait()

    app.add("shop.order", handle)
    app.add("shop.alert", handle)
    w = router.Worker(reg, app, url=redis_url, settings=fast_settings(), middleware=[SlowHook()])
    w.run(burst=True)
    assert w.stats["retried"] == 1
    err = json.loads(r.hget(q.messages, info.id))["err"]
    assert err.startswith("HandlerTimeout"), err


def test_sync_handler_timeout_fails_delivery_while_thread_finishes(redis_url: str) -> None:
    """A sync handler cannot be interrupted: on timeout the delivery is failed and scheduled for retry at once,
    the thread keeps its slot until it returns, and whatever it returns is discarded."""
    reg = fleet(redis_url, timeout_s=0.3, max_retry=3)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    clock = FakeClock()
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("shop.order", {"n": 1})
    release = threading.Event()
    returned: list[int] = []
    attempts: list[int] = []
    app = Service("shop")

    def handle(t: router.Task) -> str:
        attempts.append(t.attempt)
        if t.attempt == 1:
            assert release.wait(30), "the test never released the handler"
        returned.append(t.attempt)
        return "ok"

    app.add("shop.order", handle)
    app.add("shop.alert", handle)
    w = worker(reg, app, redis_url, clock)
    runner = threading.Thread(target=w.run, kwargs={"burst": True})
    runner.start()
    try:
        wait_for(lambda: r.zscore(q.retry, info.id) is not None, 10, "the timed-out task to be scheduled for retry")
        assert returned == [] and r.zcard(q.active) == 0
        assert json.loads(r.hget(q.messages, info.id))["err"].startswith("HandlerTimeout")
        assert runner.is_alive(), "burst worker returned while its handler thread still ran"
    finally:
        release.set()
        runner.join(15)
    assert not runner.is_alive()
    assert returned == [1]
    assert w.stats["retried"] == 1 and w.stats["processed"] == 0  # the late return was discarded
    assert qstats(r, q) == {"enqueued": 1, "failed": 1, "retried": 1}
    clock.advance(10)
    w = worker(reg, app, redis_url, clock)
    w.run(burst=True)
    assert attempts == [1, 2] and w.stats["processed"] == 1
    assert qstats(r, q)["processed"] == 1


def test_middleware_before_and_after_are_called(redis_url: str) -> None:
    reg = fleet(redis_url, max_retry=0)
    with router.Client(reg, url=redis_url) as c:
        ok = c.enqueue("shop.order", {"n": 1}).id
        bad = c.enqueue("shop.order", {"n": -1}).id
    calls: list[tuple[str, str, str | None]] = []

    class Recorder:
        def before(self, t: router.Task) -> None:
            calls.append(("before", t.id, None))

        def after(self, t: router.Task, error: BaseException | None) -> None:
            calls.append(("after", t.id, type(error).__name__ if error else None))

    def fail_negative(t: router.Task) -> None:
        if t.payload["n"] < 0:
            raise ValueError("negative")

    seen: list[Any] = []
    w = router.Worker(
        reg, recording_app(seen, fail_negative), url=redis_url, settings=fast_settings(concurrency=1),
        middleware=[Recorder()],
    )
    w.run(burst=True)
    assert calls == [("before", ok, None), ("after", ok, None), ("before", bad, None), ("after", bad, "ValueError")]
    assert w.stats["processed"] == 1 and w.stats["archived"] == 1


# --- retention, pause, heartbeat ----------------------------------------------------------------------------------


def test_retention_keeps_result_in_completed(redis_url: str) -> None:
    reg = fleet(redis_url, retention_s=60)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    clock = FakeClock()
    with router.Client(reg, url=redis_url) as c:
        info = c.enqueue("shop.order", {"n": 42})
    seen: list[Any] = []
    worker(reg, recording_app(seen), redis_url, clock).run(burst=True)
    assert r.zscore(q.completed, info.id) == pytest.approx((clock.now + 60) * 1000)
    stored = json.loads(r.hget(q.messages, info.id))
    assert stored["res"] == {"n": 42} and stored["p"] == {"n": 42}
    assert qstats(r, q)["processed"] == 1
    # Once the retention passes, the next ack trims it.
    clock.advance(61)
    with router.Client(reg, url=redis_url) as c:
        c.enqueue("shop.order", {"n": 1})
    worker(reg, recording_app(seen), redis_url, clock).run(burst=True)
    assert r.zscore(q.completed, info.id) is None and not r.hexists(q.messages, info.id)


def test_paused_queue_is_not_dequeued(redis_url: str) -> None:
    reg = fleet(redis_url)
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    with router.Client(reg, url=redis_url) as c:
        c.enqueue("shop.order", {"n": 1})
        c.enqueue("shop.alert", {"n": 2})
    r.set(q.paused, 1)
    seen: list[Any] = []
    w = worker(reg, recording_app(seen), redis_url)
    w.run(burst=True)
    assert [s[1] for s in seen] == ["shop.alert"], "only the unpaused queue may be served"
    assert r.llen(q.pending) == 1
    r.delete(q.paused)
    worker(reg, recording_app(seen), redis_url).run(burst=True)
    assert [s[1] for s in seen] == ["shop.alert", "shop.order"]


def test_heartbeat_lists_worker_and_handlers(redis_url: str) -> None:
    reg = fleet(redis_url)
    r = raw_client(redis_url)
    keys = sk(reg, "shop")
    seen: list[Any] = []
    w = worker(reg, recording_app(seen), redis_url, heartbeat_s=0.2)
    runner = threading.Thread(target=w.run)
    runner.start()
    try:
        wait_for(lambda: r.zcard(keys.workers) == 1, 10, "the worker's heartbeat in S:workers")
        doc = json.loads(r.get(keys.worker(w.worker_id)))
        assert doc["service"] == "shop"
        assert doc["handlers"] == ["shop.alert", "shop.order"]
        assert sorted(doc["queues"]) == ["critical", "default"]
        assert 0 < r.pttl(keys.worker(w.worker_id)) <= 600
        # The idle worker wakes for new work without polling.
        with router.Client(reg, url=redis_url) as c:
            c.enqueue("shop.order", {"n": 9})
        wait_for(lambda: len(seen) == 1, 10, "the idle worker to pick up a new task")
    finally:
        w.stop()
        runner.join(15)
    assert not runner.is_alive()
    assert r.zcard(keys.workers) == 0 and r.get(keys.worker(w.worker_id)) is None
