"""Corrupt bookkeeping heals instead of stopping a queue (issue 9, items 2 and 3).

Each case used to make every worker of the queue exit at start (4) or with a traceback, or to run a task twice.
Now the bad entry is archived with a reason (``corrupt``, ``orphan``, ``missing_message``), logged and counted, and
the queue goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    Recorder,
    archived,
    build_registry,
    chaos_env,
    fast_settings,
    qk,
    raw_client,
    start_worker,
    task,
    workers,
    write_registry_yaml,
)
from enginekit import stats as qstats

import router
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


def _setup(redis_url: str) -> tuple[router.Registry, Any, Any, list[str], router.Service]:
    reg = build_registry(redis_url, SERVICES)
    ran: list[str] = []
    app = router.Service("svc")
    app.add("svc.job", lambda t: ran.append(t.id))
    return reg, qk(reg, "svc"), raw_client(redis_url), ran, app


def _burst(reg: router.Registry, app: router.Service, url: str) -> router.Worker:
    worker = router.Worker(reg, app, url=url, settings=fast_settings())
    worker.run(burst=True)
    return worker


def test_active_members_that_are_not_deliveries_are_archived_as_corrupt(redis_url: str, tmp_path: Path) -> None:
    """No token suffix (made every worker exit 4 at start), or a token no dequeue issued, far in the future."""
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    reg = build_registry(redis_url, CHAOS_SERVICES)
    q = qk(reg, "chaos")
    r = raw_client(redis_url)
    r.zadd(q.active, {"no-token": 0, "forged:77": 10**15, b"\xff\xfe:1": 1})
    with router.Client(reg, url=redis_url) as client:
        ok = client.enqueue("chaos.work", {}).id
    with workers() as started:
        wp = start_worker(path, "chaos", redis_url, extra_args=("--burst",),
                          extra_env=chaos_env(redis_url, "heal"))
        started.append(wp)
        assert wp.wait(60) == 0, wp.log_tail()
    assert Recorder(r, "heal").per_task("done") == {ok: 1}
    assert r.zcard(q.active) == 0 and r.llen(q.quarantine) == 0
    dead = archived(r, q)
    entries = sorted(d["p"].get("entry", "") for d in dead.values() if d["why"] == "corrupt")
    assert entries == ["forged:77", "no-token"], dead
    # A well-formed member with an expired lease is recovered, then its id (not UTF-8) is archived as malformed.
    assert dead["\udcff\udcfe"]["why"] == "malformed"
    assert qstats(r, q)["corrupt"] >= 2
    assert sum(1 for e in wp.events if e.get("event") == "corrupt_entry_archived") >= 2


def test_a_non_numeric_lost_counter_archives_its_task_as_corrupt(redis_url: str) -> None:
    reg, q, r, ran, app = _setup(redis_url)
    with router.Client(reg, url=redis_url) as client:
        bad, good = client.enqueue("svc.job", {}).id, client.enqueue("svc.job", {}).id
    r.hset(q.lost, bad, "many")
    _burst(reg, app, redis_url)
    assert ran == [good]
    dead = archived(r, q)
    assert dead[bad]["why"] == "corrupt" and "lost-lease counter" in dead[bad]["err"]


def test_a_non_numeric_token_counter_is_reset_and_the_queue_runs(redis_url: str) -> None:
    reg, q, r, ran, app = _setup(redis_url)
    r.set(q.seq, "garbage")
    with router.Client(reg, url=redis_url) as client:
        ids = [client.enqueue("svc.job", {}).id for _ in range(3)]
    _burst(reg, app, redis_url)
    assert sorted(ran) == sorted(ids)
    assert int(r.get(q.seq)) > 10**12  # restarted above every token issued before (milliseconds since the epoch)
    assert qstats(r, q)["corrupt"] == 1


def test_an_id_pushed_twice_onto_pending_runs_once(redis_url: str) -> None:
    reg, q, r, ran, app = _setup(redis_url)
    with router.Client(reg, url=redis_url) as client:
        twice = client.enqueue("svc.job", {}).id
        retrying = client.enqueue("svc.job", {}, process_in=3600).id  # in scheduled
    r.lpush(q.pending, twice, twice, retrying)  # stray copies, in one batch and of a task in another state
    _burst(reg, app, redis_url)
    assert ran == [twice]
    assert r.zscore(q.scheduled, retrying) is not None  # still waiting for its time: the stray copy was dropped
    assert qstats(r, q)["duplicate"] == 3
    # A copy found after the task completed is dropped too (its id is in the completed tombstones).
    r.lpush(q.pending, twice)
    _burst(reg, app, redis_url)
    assert ran == [twice] and not archived(r, q)


def test_an_id_leased_twice_at_once_runs_once(redis_url: str) -> None:
    """The copy arrives while the first delivery still runs (another worker dequeues it)."""
    reg, q, r, _, _ = _setup(redis_url)
    with router.Client(reg, url=redis_url) as client:
        first = client.enqueue("svc.job", {}).id
    broker = SyncBroker(connect(redis_url))
    held = protocol.parse_dequeue(broker.run(protocol.dequeue(q, 30_000, 10))).deliveries
    assert [d.task_id for d in held] == [first]
    r.lpush(q.pending, first)
    again = protocol.parse_dequeue(broker.run(protocol.dequeue(q, 30_000, 10)))
    assert again.deliveries == [] and again.duplicates == [first]
    broker.close()


def test_orphaned_messages_and_missing_ones_are_archived(redis_url: str) -> None:
    reg, q, r, ran, app = _setup(redis_url)
    r.hset(q.messages, "orphan", b'{"v":1,"t":"svc.job","e":1,"p":{}}')
    r.hset(q.messages, "orphan-junk", b"\x00junk")
    r.zadd(q.retry, {"gone-retry": 1})
    r.zadd(q.scheduled, {"gone-later": 10**15})
    r.hset(q.lost, "nobody", 2)  # a counter of an id nothing references: stale, dropped and counted
    _burst(reg, app, redis_url)
    dead = archived(r, q)
    assert {k: v["why"] for k, v in dead.items()} == {
        "orphan": "orphan", "orphan-junk": "orphan", "gone-retry": "missing_message", "gone-later": "missing_message"}
    assert dead["orphan"]["t"] == "svc.job"  # a decodable orphan keeps its envelope (an admin can run it again)
    assert r.hlen(q.lost) == 0 and qstats(r, q)["stale_bookkeeping"] >= 1
    assert ran == []
