"""The scheduler against a real Redis (single server and three-master cluster), driven by ``tick(now)`` on a fake
clock: each slot enqueued once across replicas, both DST transitions in two zones, catch-up after downtime (also
longer than the completed-task tombstone window), the guard at fire time, the no-live-worker warning, heartbeats
and the inspector's view."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from enginekit import FakeClock, fast_settings, qk, sk
from schedkit import cron_registry, entry, queue_ids

from router.ops.inspector import Inspector
from router.registry.model import CatchUp, Registry
from router.scheduler import Scheduler, SchedulerSettings
from router.scheduler.cron import CronSchedule
from router.scheduler.entries import cron_task_id
from router.scheduler.scheduler import TickResult
from router.service import Service
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect
from router.storage.envelope import encode_new
from router.task import Task
from router.worker import Worker
from router.worker.heartbeat import Heartbeat

T0 = 1_717_243_200  # 2024-06-01T12:00:00Z, a whole hour

Item = protocol.EnqueueItem


@pytest.fixture
def schedulers() -> Iterator[list[Scheduler]]:
    """Schedulers a test made, closed at the end."""
    made: list[Scheduler] = []
    yield made
    for s in made:
        s.close()


def new_scheduler(made: list[Scheduler], registry: Registry, url: str, clock: Any = None,
                  **settings: Any) -> Scheduler:
    s = Scheduler(registry, url=url, clock=clock or FakeClock(T0), settings=SchedulerSettings(**settings))
    made.append(s)
    return s


def ids(entry_name: str, slots: list[int]) -> list[str]:
    return [cron_task_id(entry_name, s) for s in slots]


def test_each_slot_is_enqueued_once_whichever_replica_fires_it(target: tuple[str, Any],
                                                              schedulers: list[Scheduler]) -> None:
    """Two replicas tick the same 30 slots, alternating who comes first: 30 tasks, none twice, and each replica
    sees the other's claims as claimed."""
    url, client = target
    registry = cron_registry(url, entry("every-second", "* * * * * *", payload={"n": 7}))
    a, b = new_scheduler(schedulers, registry, url), new_scheduler(schedulers, registry, url)
    a.tick(T0), b.tick(T0)  # first ticks: a new entry starts now, it does not fire its past
    results: dict[str, list[TickResult]] = {"a": [], "b": []}
    for i in range(1, 31):
        first, second = (a, b) if i % 2 else (b, a)
        results["a" if first is a else "b"].append(first.tick(T0 + i + 0.1))
        results["a" if second is a else "b"].append(second.tick(T0 + i + 0.2))
    q = qk(registry, "svc")
    assert queue_ids(client, q) == {i: 1 for i in ids("every-second", list(range(T0 + 1, T0 + 31)))}
    assert int(client.hget(q.stats, "enqueued")) == 30
    assert a.stats["fired"] == b.stats["fired"] == 15
    assert a.stats["claimed_elsewhere"] == b.stats["claimed_elsewhere"] == 15
    env = json.loads(client.hget(q.messages, cron_task_id("every-second", T0 + 1)))
    assert (env["t"], env["p"], env["e"]) == ("svc.tick", {"n": 7}, (T0 + 1) * 1000 + 100)  # the tick's "now"


@pytest.mark.parametrize(("tz", "spec", "start", "expected"), [
    # Spring: a named hour inside the gap fires once at the end of the gap; an every-hour entry skips the gap.
    ("Europe/Paris", "30 2 * * *", "2024-03-30T22:00:00+00:00", ["2024-03-31T01:00:00+00:00"]),
    ("Europe/Paris", "0 * * * *", "2024-03-30T23:30:00+00:00",
     ["2024-03-31T00:00:00+00:00", "2024-03-31T01:00:00+00:00", "2024-03-31T02:00:00+00:00"]),
    ("America/New_York", "30 2 * * *", "2024-03-10T05:00:00+00:00", ["2024-03-10T07:00:00+00:00"]),
    ("America/New_York", "0 * * * *", "2024-03-10T05:30:00+00:00",
     ["2024-03-10T06:00:00+00:00", "2024-03-10T07:00:00+00:00", "2024-03-10T08:00:00+00:00"]),
    # Autumn: a named hour inside the overlap fires at its first occurrence only; an every-hour entry fires twice.
    ("Europe/Paris", "30 2 * * *", "2024-10-26T23:00:00+00:00", ["2024-10-27T00:30:00+00:00"]),
    ("Europe/Paris", "0 * * * *", "2024-10-26T23:30:00+00:00",
     ["2024-10-27T00:00:00+00:00", "2024-10-27T01:00:00+00:00", "2024-10-27T02:00:00+00:00"]),
    ("America/New_York", "30 1 * * *", "2024-11-03T04:00:00+00:00", ["2024-11-03T05:30:00+00:00"]),
    ("America/New_York", "0 * * * *", "2024-11-03T04:30:00+00:00",
     ["2024-11-03T05:00:00+00:00", "2024-11-03T06:00:00+00:00", "2024-11-03T07:00:00+00:00"]),
], ids=["paris-spring-named", "paris-spring-hourly", "ny-spring-named", "ny-spring-hourly", "paris-autumn-named",
        "paris-autumn-hourly", "ny-autumn-named", "ny-autumn-hourly"])
def test_dst_transitions_fire_by_the_documented_rules(target: tuple[str, Any], schedulers: list[Scheduler],
                                                      tz: str, spec: str, start: str, expected: list[str]) -> None:
    """A scheduler ticking every 20 s through the night of each change enqueues exactly the expected instants."""
    url, client = target
    registry = cron_registry(url, entry("dst", spec, tz))
    begin = int(datetime.fromisoformat(start).timestamp())
    s = new_scheduler(schedulers, registry, url, FakeClock(begin))
    for i in range(0, 3 * 3600 + 1, 20):
        s.tick(begin + i)
    fired = sorted(int(i.split(":")[-1]) // 1000 for i in queue_ids(client, qk(registry, "svc")))
    assert fired == [int(datetime.fromisoformat(e).timestamp()) for e in expected]


@pytest.mark.parametrize(("policy", "fired_after_downtime"), [
    (CatchUp.LATEST, [T0 + 5 * 3600]), (CatchUp.ALL, [T0 + h * 3600 for h in range(1, 6)]), (CatchUp.NONE, []),
])
def test_catch_up_after_downtime_follows_the_entry_policy(target: tuple[str, Any], schedulers: list[Scheduler],
                                                          policy: CatchUp, fired_after_downtime: list[int]) -> None:
    """An hourly entry fires at 12:00; every scheduler is down until 17:30; the one that starts then fires what the
    entry's catch_up says, and the 18:00 slot on time under every policy."""
    url, client = target
    registry = cron_registry(url, entry("hourly", "0 * * * *", catch_up=policy))
    first = new_scheduler(schedulers, registry, url)
    first.tick(T0 - 60)
    assert first.tick(T0 + 5).fired == [("hourly", T0)]
    first.close()  # down from 12:00:05 to 17:30
    later = new_scheduler(schedulers, registry, url)
    result = later.tick(T0 + 5 * 3600 + 1800)
    assert result.fired == [("hourly", t) for t in fired_after_downtime]
    assert result.skipped.get("hourly", 0) == 5 - len(fired_after_downtime)
    assert later.tick(T0 + 6 * 3600 + 1).fired == [("hourly", T0 + 6 * 3600)]
    assert sorted(queue_ids(client, qk(registry, "svc"))) == sorted(
        ids("hourly", [T0, *fired_after_downtime, T0 + 6 * 3600]))


def test_catch_up_window_bounds_how_far_back_and_how_long_claims_live(target: tuple[str, Any],
                                                                       schedulers: list[Scheduler]) -> None:
    """With a two-hour window, catch_up all after five hours down fires only the last two slots; each claim is
    kept the window past the entry's next slot."""
    url, client = target
    registry = cron_registry(url, entry("hourly", "0 * * * *", catch_up=CatchUp.ALL))
    first = new_scheduler(schedulers, registry, url, catch_up_window_s=7200)
    first.tick(T0 - 60)
    first.tick(T0 + 5)
    pttl_ms = client.pttl(qk(registry, "svc").cron("hourly"))
    assert 7200_000 + 3594_000 <= pttl_ms <= 7200_000 + 3595_000  # window + (13:00 - 12:00:05)
    later = new_scheduler(schedulers, registry, url, catch_up_window_s=7200)
    assert later.tick(T0 + 5 * 3600 + 1800).fired == [("hourly", T0 + 4 * 3600), ("hourly", T0 + 5 * 3600)]


def test_a_new_entry_starts_now_and_does_not_fire_its_past(target: tuple[str, Any],
                                                          schedulers: list[Scheduler]) -> None:
    """No claim in Redis: the entry is new, so its first tick fires nothing (not 'the latest missed slot')."""
    url, _ = target
    registry = cron_registry(url, entry("hourly", "0 * * * *", catch_up=CatchUp.ALL))
    s = new_scheduler(schedulers, registry, url)
    assert s.tick(T0 + 1800).fired == []
    assert s.tick(T0 + 3600).fired == [("hourly", T0 + 3600)]


def test_downtime_longer_than_the_tombstone_window_never_fires_a_claimed_slot_again(
        target: tuple[str, Any], schedulers: list[Scheduler]) -> None:
    """Replica A fires 12:00 and a worker completes it; ten minutes later (tombstones last 5) replica B, whose last
    tick was before 12:00, catches up with catch_up all: 12:00 is refused by its claim, the ten later slots fire.
    A task id derived from entry and fire time alone would have run 12:00 twice: its tombstone is gone."""
    url, client = target
    registry = cron_registry(url, entry("minutely", "* * * * *", catch_up=CatchUp.ALL))
    clock = FakeClock(T0 - 30)
    a, b = new_scheduler(schedulers, registry, url, clock), new_scheduler(schedulers, registry, url, clock)
    a.tick(T0 - 30), b.tick(T0 - 30)
    assert a.tick(T0 + 1).fired == [("minutely", T0)]
    done: list[str] = []
    app = Service("svc")

    @app.handler("svc.tick")
    def tick(task: Task) -> None:
        done.append(task.id)

    @app.handler("svc.alert")
    def alert(task: Task) -> None:
        done.append(task.id)

    worker_clock = FakeClock(T0 + 2)
    worker = Worker(registry, app, url=url, clock=worker_clock, settings=fast_settings(dedupe_window_s=300))
    worker.run(burst=True)
    q = qk(registry, "svc")
    first_id = cron_task_id("minutely", T0)
    assert done == [first_id] and client.zscore(q.done, first_id) is not None  # completed, tombstone written
    a.close()  # replica A dies right after 12:00
    # Ten minutes on: another completion prunes tombstones older than the 300 s window.
    worker_clock.advance(600)
    broker = SyncBroker(connect(url))
    try:
        broker.run(protocol.enqueue(q, [Item("later", encode_new("svc.tick", '{"n":1}', (T0 + 602) * 1000))]))
        worker.run(burst=True)
        assert done == [first_id, "later"] and client.zscore(q.done, first_id) is None  # the id alone is unprotected
        result = b.tick(T0 + 600 + 5)
        assert ("minutely", T0) in result.claimed_elsewhere and ("minutely", T0) not in result.fired
        assert result.fired == [("minutely", T0 + 60 * m) for m in range(1, 11)]
        assert client.hget(q.messages, first_id) is None and first_id not in queue_ids(client, q)
        # The plain enqueue of that id would be accepted now: only the claim stood between 12:00 and a second run.
        assert protocol.parse_enqueue(broker.run(protocol.enqueue(q, [Item(first_id, "{}")]))) == [(1, "")]
    finally:
        broker.close()


def test_a_payload_the_guard_refuses_at_fire_time_is_logged_counted_and_not_fatal(
        target: tuple[str, Any], schedulers: list[Scheduler]) -> None:
    """Entries built past the loader: one payload breaks the schema, one is too large. Both are refused by the
    guard at every fire (logged, counted); the good entry fires all the same."""
    url, client = target
    registry = cron_registry(url, entry("good", "* * * * * *"), entry("bad", "* * * * * *", payload={"n": "x"}),
                             entry("big", "* * * * * *", payload={"n": 10**250}), max_payload_bytes=200)
    s = new_scheduler(schedulers, registry, url)
    s.tick(T0)
    with structlog.testing.capture_logs() as logs:
        first, second = s.tick(T0 + 1), s.tick(T0 + 2)
    assert first.fired == [("good", T0 + 1)] and second.fired == [("good", T0 + 2)]
    assert sorted(first.refused) == [("bad", T0 + 1), ("big", T0 + 1)]
    refused = {e["entry"]: e["error"] for e in logs if e["event"] == "cron_payload_refused"}
    assert [e["entry"] for e in logs if e["event"] == "cron_payload_refused"] == ["bad", "big"] * 2
    assert "'x' is not of type 'integer'" in refused["bad"] and "200" in refused["big"]
    assert s.stats["refused"] == 4 and s.stats["fired"] == 2
    assert sorted(queue_ids(client, qk(registry, "svc"))) == sorted(ids("good", [T0 + 1, T0 + 2]))


def test_no_live_worker_is_logged_once_per_entry_per_minute_and_status_shows_the_backlog(
        target: tuple[str, Any], schedulers: list[Scheduler]) -> None:
    """An every-second entry with nobody reading its queue: one warning per minute, not one per tick; status says
    "backlog, no worker". Once a worker of the service reads the queue, the warning stops; an entry on a queue
    that worker does not read still warns."""
    url, _ = target
    registry = cron_registry(url, entry("tick", "* * * * * *"), entry("alert", "* * * * * 0", task_type="svc.alert"))
    clock = FakeClock(T0)
    s = new_scheduler(schedulers, registry, url, clock)
    s.tick(T0)
    with structlog.testing.capture_logs() as logs:
        for i in range(1, 91):
            clock.now = T0 + i
            s.tick()
    warned = [(e["entry"], e["queue"]) for e in logs if e["event"] == "no_live_worker"]
    assert warned == [("tick", "default"), ("alert", "critical"), ("tick", "default")]  # at 12:00:01, :01:00, :01:01
    inspector = Inspector(registry, url, clock=clock)
    try:
        default = next(q for q in inspector.queues() if q.queue == "default")
        assert default.backlog_no_worker and default.live_workers == 0 and default.sizes["pending"] == 90
        broker = SyncBroker(connect(url))
        Heartbeat(sk(registry, "svc"), "w1", ["default"], ["svc.tick"], 1, 600.0, clock).beat(broker, [])
        broker.close()
        with structlog.testing.capture_logs() as logs:
            for i in range(91, 200):
                clock.now = T0 + i
                s.tick()
        warned = [(e["entry"], e["queue"]) for e in logs if e["event"] == "no_live_worker"]
        assert warned == [("alert", "critical"), ("alert", "critical")]  # 12:02:00 and 12:03:00: nobody reads it
        default = next(q for q in inspector.queues() if q.queue == "default")
        assert not default.backlog_no_worker and default.live_workers == 1
    finally:
        inspector.close()
    assert s.stats["no_live_worker"] == 5


def test_heartbeats_and_the_inspector_show_schedulers_with_each_entrys_last_and_next_fire(
        target: tuple[str, Any], schedulers: list[Scheduler]) -> None:
    """The inspector lists the live scheduler (merged over services), and per entry the last fire claimed by any
    replica (from Redis) and the next slot; a withdrawn scheduler disappears."""
    url, _ = target
    now = float(int(time.time()))  # heartbeats expire by Redis time, so this clock starts at the real time
    clock = FakeClock(now)
    registry = cron_registry(url, entry("tick", "* * * * * */10"), entry("nightly", "30 2 * * *", "Europe/Paris"))
    s = new_scheduler(schedulers, registry, url, clock)
    s.tick(now)
    slot = (int(now) // 10 + 1) * 10
    s.tick(slot)
    inspector = Inspector(registry, url, clock=clock)
    try:
        (live,) = inspector.schedulers()
        assert (live.id, live.services, live.entries, live.quiet) == (s.scheduler_id, ["svc"], ["tick", "nightly"],
                                                                      False)
        assert live.stats["fired"] == 1
        clock.now = slot + 3
        by_name = {c.name: c for c in inspector.cron_entries()}
        assert by_name["tick"].last_fire_ms == slot * 1000 and by_name["tick"].schedulers == 1
        assert by_name["tick"].next_fire_ms == (slot + 10) * 1000
        nightly = by_name["nightly"]
        assert nightly.last_fire_ms is None and (nightly.queue, nightly.catch_up) == ("default", "latest")
        assert nightly.next_fire_ms == CronSchedule("30 2 * * *", "Europe/Paris").next_after(slot + 3) * 1000
        s.withdraw()
        assert inspector.schedulers() == []
        assert {c.schedulers for c in inspector.cron_entries()} == {0}
    finally:
        inspector.close()
