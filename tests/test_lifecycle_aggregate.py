"""Aggregation: members enqueued with ``group=`` wait in their group until it is full (max_size), quiet for grace_s,
or max_delay_s old; then one task of the ``into`` type runs with ``{"group", "items"}``. A flush is one atomic
swap, so concurrent or interrupted flushes lose and duplicate nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from enginekit import build_registry, fast_settings, qk, raw_client, stats, task, wait_for

import router
from router.registry.model import AggregateSpec
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect


def _services(size: int = 3, grace_s: float = 60.0, max_delay_s: float = 600.0) -> dict[str, Any]:
    return {"svc": {"tasks": {
        "svc.item": task(aggregate=AggregateSpec("svc.batch", grace_s=grace_s, max_delay_s=max_delay_s,
                                                 max_size=size)),
        "svc.note": task(aggregate=AggregateSpec("svc.notes", grace_s=grace_s, max_delay_s=max_delay_s,
                                                 max_size=size)),
        "svc.batch": task(), "svc.notes": task(),
    }}}


def _worker(reg: router.Registry, url: str, batches: list[dict[str, Any]]) -> router.Worker:
    app = router.Service("svc")
    app.add("svc.batch", lambda t: batches.append({"type": t.type, **t.payload}))
    app.add("svc.notes", lambda t: batches.append({"type": t.type, **t.payload}))
    return router.Worker(reg, app, url=url, settings=fast_settings())


def test_a_full_group_is_flushed_into_one_task(target: tuple[str, Any]) -> None:
    url, r = target
    reg = build_registry(url, _services(size=3))
    batches: list[dict[str, Any]] = []
    with router.Client(reg, url=url) as c:
        infos = [c.enqueue("svc.item", {"n": i}, group="daily") for i in range(4)]
        assert {i.state for i in infos} == {router.TaskState.AGGREGATING}
        assert c.get_task(infos[0]).state is router.TaskState.AGGREGATING
        _worker(reg, url, batches).run(burst=True)
        assert batches == [{"type": "svc.batch", "group": "daily", "items": [{"n": 0}, {"n": 1}, {"n": 2}]}]
        assert c.get_task(infos[0]).state is router.TaskState.COMPLETED  # its work went into the batch
        assert c.get_task(infos[3]).state is router.TaskState.AGGREGATING  # the fourth waits for more
    assert stats(r, qk(reg, "svc"))["aggregating"] == 1
    r.close()


def test_grace_flushes_a_quiet_group_and_types_never_share_a_group(redis_url: str) -> None:
    reg = build_registry(redis_url, _services(size=100, grace_s=0.3))
    batches: list[dict[str, Any]] = []
    worker = _worker(reg, redis_url, batches)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        with router.Client(reg, url=redis_url) as c:
            c.enqueue("svc.item", {"n": 1}, group="g")
            c.enqueue("svc.note", {"n": 2}, group="g")  # same group name, other member type
            c.enqueue("svc.item", {"n": 3}, group="h")
            wait_for(lambda: len(batches) == 3, 10, "three flushes after the grace")
    finally:
        worker.stop()
        thread.join(10)
    got = sorted((b["type"], b["group"], tuple(i["n"] for i in b["items"])) for b in batches)
    assert got == [("svc.batch", "g", (1,)), ("svc.batch", "h", (3,)), ("svc.notes", "g", (2,))]


def test_max_delay_bounds_a_busy_group(redis_url: str) -> None:
    reg = build_registry(redis_url, _services(size=1000, grace_s=60, max_delay_s=0.5))
    batches: list[dict[str, Any]] = []
    worker = _worker(reg, redis_url, batches)
    thread = threading.Thread(target=worker.run)
    thread.start()
    stop = threading.Event()

    def feed() -> None:  # keeps the group from ever being quiet for grace_s
        with router.Client(reg, url=redis_url) as c:
            n = 0
            while not stop.wait(0.05):
                c.enqueue("svc.item", {"n": n}, group="busy")
                n += 1

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait_for(lambda: batches, 10, "a flush by max delay")
    finally:
        stop.set()
        feeder.join(10)
        worker.stop()
        thread.join(10)
    assert batches[0]["items"][0] == {"n": 0}


def test_concurrent_flushes_neither_lose_nor_duplicate(redis_url: str) -> None:
    reg = build_registry(redis_url, _services(size=7, grace_s=0.05))
    with router.Client(reg, url=redis_url) as c:
        c.enqueue_many([("svc.item", {"n": i}, {"group": f"g{i % 5}"}) for i in range(200)])
    batches: list[dict[str, Any]] = []
    workers = [_worker(reg, redis_url, batches) for _ in range(3)]
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(len(b["items"]) for b in batches) >= 200, 20, "every member aggregated")
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(10)
    items = sorted(i["n"] for b in batches for i in b["items"])
    assert items == list(range(200))
    assert all(len(b["items"]) <= 7 and {i["n"] % 5 for i in b["items"]} == {int(b["group"][1:])} for b in batches)


def test_a_flush_is_all_or_nothing(redis_url: str) -> None:
    """A flush built from a head another worker changed meanwhile does nothing; repeated after it landed (a worker
    that lost the reply), it does nothing either."""
    reg = build_registry(redis_url, _services(size=3))
    q = qk(reg, "svc")
    broker = SyncBroker(connect(redis_url))
    r = raw_client(redis_url)
    try:
        with router.Client(reg, url=redis_url) as c:
            ids = [c.enqueue("svc.item", {"n": i}, group="g").id for i in range(2)]
        flush = protocol.Flush("svc.item:g", ids, "agg-1", b'{"v":1,"t":"svc.batch","e":1,"p":{}}')
        wrong = protocol.Flush("svc.item:g", list(reversed(ids)), "agg-0", b"{}")
        assert broker.run(protocol.flush(q, wrong, 1, 1000, 3)) == 0
        assert r.lrange(q.group("svc.item:g"), 0, -1) == [i.encode() for i in ids]
        assert broker.run(protocol.flush(q, flush, 1, 1000, 3)) == 1
        assert broker.run(protocol.flush(q, flush, 1, 1000, 3)) == 0
        assert r.lrange(q.pending, 0, -1) == [b"agg-1"] and r.zcard(q.groups) == 0
        assert stats(r, q)["aggregating"] == 0 and stats(r, q)["enqueued"] == 3
    finally:
        broker.close()
        r.close()


def test_an_unreadable_member_is_archived_and_the_rest_aggregated(redis_url: str) -> None:
    reg = build_registry(redis_url, _services(size=2))
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    batches: list[dict[str, Any]] = []
    with router.Client(reg, url=redis_url) as c:
        bad = c.enqueue("svc.item", {"n": 1}, group="g")
        r.hset(q.messages, bad.id, b"\xff not json")
        c.enqueue("svc.item", {"n": 2}, group="g")
        _worker(reg, redis_url, batches).run(burst=True)
        assert batches == [{"type": "svc.batch", "group": "g", "items": [{"n": 2}]}]
        assert c.get_task(bad).state is router.TaskState.ARCHIVED
    r.close()


def test_cancelling_a_member_takes_it_out_of_its_group(redis_url: str) -> None:
    reg = build_registry(redis_url, _services(size=2))
    batches: list[dict[str, Any]] = []
    with router.Client(reg, url=redis_url) as c:
        gone = c.enqueue("svc.item", {"n": 1}, group="g")
        result = c.cancel(gone)
        assert (result.outcome, result.state_before) == (router.CancelOutcome.CANCELLED, "aggregating")
        c.enqueue("svc.item", {"n": 2}, group="g")
        c.enqueue("svc.item", {"n": 3}, group="g")
        _worker(reg, redis_url, batches).run(burst=True)
    assert batches == [{"type": "svc.batch", "group": "g", "items": [{"n": 2}, {"n": 3}]}]


@pytest.mark.parametrize(("options", "needle"), [
    ({}, "give group="),
    ({"group": "a:b"}, "group"),
    ({"group": "g", "process_in": 5}, "drop process_in"),
    ({"group": "g", "deadline": 2e9}, "deadline"),
])
def test_bad_group_options_are_refused(redis_url: str, options: dict[str, Any], needle: str) -> None:
    reg = build_registry(redis_url, _services())
    with router.Client(reg, url=redis_url) as c, pytest.raises(router.InvalidOption, match=needle):
        c.enqueue("svc.item", {}, **options)
    with router.Client(reg, url=redis_url) as c, pytest.raises(router.InvalidOption, match="does not aggregate"):
        c.enqueue("svc.batch", {"group": "g", "items": [{}]}, group="g")
