"""Worker processes killed, frozen and stopped mid-work (subprocess workers through the CLI, lease 2 s).

Every test keeps the ledger (tests/ledger.py): acknowledged enqueues on the producer side, handler starts and ends
in files on the worker side, and reports lost, duplicated (counted: at-least-once), crashes and recovery time.
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    Recorder,
    WorkerProcess,
    build_registry,
    chaos_env,
    qk,
    raw_client,
    start_worker,
    wait_for,
    workers,
    write_registry_yaml,
)
from enginekit import stats as qstats
from ledger import Ledger, Producer, Record, wait_all_settled

import router
from router.storage.keys import QueueKeys

pytestmark = pytest.mark.chaos

LEASE_S = 2.0
MAINTENANCE_S = 0.5
GRACE_S = 0.2


@pytest.fixture
def chaos(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest, ledger: Ledger) -> dict[str, Any]:
    r = raw_client(redis_url)
    request.addfinalizer(r.close)
    ns = f"rec-{request.node.name}"
    return {
        "url": redis_url,
        "reg": build_registry(redis_url, CHAOS_SERVICES),
        "path": write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL),
        "r": r,
        "rec": Recorder(r, ns),
        "env": {**chaos_env(redis_url, ns), **ledger.env()},
        "ledger": ledger,
    }


def spawn(chaos: dict[str, Any], concurrency: int, **settings: Any) -> WorkerProcess:
    return start_worker(chaos["path"], "chaos", chaos["url"], concurrency=concurrency, lease_s=LEASE_S,
                        maintenance_s=MAINTENANCE_S, recovery_grace_s=GRACE_S, extra_env=chaos["env"], **settings)


def test_kill_9_with_50_in_flight_recovers_all(chaos: dict[str, Any]) -> None:
    """Matrix #1: every handler is parked at a gate when the worker dies, so none had finished: the 50 run again
    elsewhere and none twice (the window where duplicates arise is the flow test's below)."""
    url, reg, r, rec, ledger = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"], chaos["ledger"]
    q = qk(reg, "chaos")
    with router.Client(reg, url=url) as c:
        for info in c.enqueue_many([("chaos.work", {"gate": "g", "i": i}) for i in range(50)]):
            ledger.ok(info.id)
    ids = ledger.ids("ok")
    with workers() as procs:
        first = spawn(chaos, 50)
        procs.append(first)
        wait_for(lambda: len(ledger.starts()) == 50, 30,
                 f"50 handlers running in the first worker\n{first.log_tail()}")  # fmt: skip
        assert r.zcard(q.active) == 50
        first.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert first.wait(10) == -signal.SIGKILL
        rec.open_gate("g")
        second = spawn(chaos, 50)
        procs.append(second)
        budget = LEASE_S + MAINTENANCE_S + GRACE_S + 6.0  # + process start-up and margin
        wait_for(lambda: len(ledger.ends()) >= 50, budget, f"all 50 tasks completed again\n{second.log_tail()}")
        recovery_s = time.monotonic() - killed_at
        wait_for(lambda: qstats(r, q).get("processed") == 50, 10, "the second worker's acks")
        second.signal(signal.SIGTERM)
        crashes = int(second.wait(15) != 0)
    v = ledger.check(r, [q])
    started = Counter(x.id for x in ledger.starts())
    print(f"\n[kill -9, 50 parked in flight] lost {len(v.lost)}, duplicated {v.duplicated}, crashes {crashes}, "
          f"recovery {recovery_s:.2f} s after SIGKILL (lease {LEASE_S} s); {v.figures()}")
    assert v.lost == set() and v.completed == 50 and v.acked == 50 and crashes == 0
    assert v.duplicated == 0  # none had finished before the kill: nothing can have run twice
    assert Counter(started.values()) == {2: 50}  # each one delivery in the killed worker, one after recovery
    assert {e.attempt for e in ledger.ends()} == {2}  # the lost lease counts as an attempt
    assert {e.pid for e in ledger.ends()} == {second.pid}
    assert sum(e["count"] for e in second.find("leases_recovered")) == 50
    s = qstats(r, q)
    assert (s["enqueued"], s["processed"], s["recovered"], s.get("stale", 0)) == (50, 50, 50, 0)
    assert r.llen(q.pending) == r.zcard(q.active) == r.hlen(q.lost) == r.hlen(q.messages) == 0
    assert set(started) == ids
    assert recovery_s < budget


def _recovery_after(kill: tuple[int, float], ends: list[Record], starts: list[Record]) -> float | None:
    """Seconds from a kill until every task its victim left unsettled (running, or finished but not acked) had
    completed elsewhere; None when one never did."""
    pid, at = kill
    finished_there = {e.id for e in ends if e.pid == pid}
    later: dict[str, float] = {}
    for e in ends:
        if e.pid != pid and e.end is not None and e.end > at:
            later[e.id] = min(later.get(e.id, e.end), e.end)
    unfinished = {x.id for x in starts if x.pid == pid} - finished_there
    run_again = {t for t in finished_there if t in later}
    if not unfinished <= set(later):
        return None
    return max((later[t] - at for t in unfinished | run_again), default=0.0)


def _frozen(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def _finished_unacked(r: Any, q: QueueKeys, ledger: Ledger, pid: int) -> set[str]:
    """Tasks a frozen worker's handlers finished whose ack has not landed (still leased in Redis)."""
    r.ping()  # one round trip first: whatever the worker sent before it froze has now been executed
    active = {m.decode().rsplit(":", 1)[0] for m in r.zrange(q.active, 0, -1)}
    return {e.id for e in ledger.ends(pid)} & active


def test_kill_9_under_a_steady_flow_counts_the_duplicates_it_causes(chaos: dict[str, Any]) -> None:
    """kill -9 while short tasks stream through two workers (no gates), landing each kill in the window between a
    handler's end and its ack: the worker is frozen (SIGSTOP) at random moments until it holds a finished task
    whose ack has not landed, then killed. Those tasks run again (at-least-once): the duplicates are exactly them,
    counted; nothing acknowledged is lost."""
    url, reg, r, ledger = chaos["url"], chaos["reg"], chaos["r"], chaos["ledger"]
    q = qk(reg, "chaos")
    concurrency, kills, backlog, n = 8, 4, 3000, 3000
    with router.Client(reg, url=url) as c:  # a backlog keeps both workers busy, then a steady producer
        for start in range(0, backlog, 500):
            for info in c.enqueue_many([("chaos.work", {"b": i}) for i in range(start, start + 500)]):
                ledger.ok(info.id)
    producer = Producer(reg, url, ledger, n, rate_per_s=600)
    killed: list[tuple[int, float]] = []
    stranded: list[set[str]] = []
    freezes = 0
    pacer = threading.Event()  # never set: paces the fault injection
    with workers() as procs:
        live = [spawn(chaos, concurrency) for _ in range(2)]
        procs.extend(live)
        wait_for(lambda: all(w.has_event("worker_started") for w in live), 30, "two workers")
        producer.start()
        for k in range(kills):
            victim = live[k % 2]

            def in_flow(pid: int = victim.pid) -> bool:
                return len(ledger.ends(pid)) >= 20

            def frozen(pid: int = victim.pid) -> bool:
                return _frozen(pid)

            wait_for(in_flow, 20, f"the victim in full flow\n{victim.log_tail()}", interval_s=0.05)
            for _ in range(500):
                victim.signal(signal.SIGSTOP)
                freezes += 1
                wait_for(frozen, 5, "the victim to freeze", interval_s=0.001)
                found = _finished_unacked(r, q, ledger, victim.pid)
                if found:
                    break
                victim.signal(signal.SIGCONT)
                pacer.wait(random.uniform(0.001, 0.02))
            victim.signal(signal.SIGKILL)
            killed.append((victim.pid, time.time()))
            stranded.append(found)
            assert victim.wait(10) == -signal.SIGKILL
            live[k % 2] = spawn(chaos, concurrency)
            procs.append(live[k % 2])
        producer.join(60)
        assert not producer.is_alive() and producer.error is None, producer.error
        wait_for(lambda: wait_all_settled(ledger, r, [q]), LEASE_S + 30,
                 f"every acknowledged task completed\n{live[0].log_tail()}", interval_s=0.2)  # fmt: skip
        codes = []
        for w in live:
            w.signal(signal.SIGTERM)
            codes.append(w.wait(15))
    v = ledger.check(r, [q])
    ends, starts = ledger.ends(), ledger.starts()
    recoveries = [x for k in killed if (x := _recovery_after(k, ends, starts)) is not None]
    twice = {t for t, c in ledger.completions().items() if c > 1}
    crashes = sum(1 for c in codes if c != 0)
    print(f"\n[kill -9 x{kills} under a flow of {backlog + n} short tasks] lost {len(v.lost)}, duplicated "
          f"{v.duplicated} (finished but unacked at the kills: {[len(s) for s in stranded]}, found in {freezes} "
          f"freezes), crashes {crashes}, recovery {max(recoveries, default=0.0):.2f} s (worst of {len(recoveries)} "
          f"kills); {v.figures()}")
    assert v.lost == set() and v.acked == v.created == v.completed == backlog + n and crashes == 0
    assert v.queued == 0 and not v.archived
    assert all(stranded), "a kill did not land between a handler's end and its ack"
    # Exactly the tasks finished but unacked at a kill ran twice, each once more: nothing else is duplicated.
    assert twice == set().union(*stranded) and v.duplicated == sum(len(s) for s in stranded)
    assert len(recoveries) == kills and max(recoveries) < LEASE_S + MAINTENANCE_S + GRACE_S + 8.0


def test_lease_extension_keeps_a_healthy_second_worker_off_a_long_handler(chaos: dict[str, Any]) -> None:
    """Matrix #5: handlers that run for four lease periods keep their leases; a second, healthy worker sweeping
    for expired leases every half second never starts them."""
    url, reg, r, rec, ledger = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"], chaos["ledger"]
    q = qk(reg, "chaos")
    with router.Client(reg, url=url) as c:
        ids = {c.enqueue("chaos.work", {"gate": "long", "i": i}).id for i in range(3)}
    with workers() as procs:
        first = spawn(chaos, 3)
        procs.append(first)
        wait_for(lambda: len(ledger.starts()) == 3, 30, f"three long handlers\n{first.log_tail()}")
        second = spawn(chaos, 3)
        procs.append(second)
        wait_for(lambda: second.has_event("worker_started"), 30, f"the second worker\n{second.log_tail()}")
        deadlines: list[float] = []
        until = time.monotonic() + 4 * LEASE_S
        while time.monotonic() < until:  # watch, not wait: the fault here is time passing
            now_ms = float(r.time()[0]) * 1000
            scores = [score for _, score in r.zrange(q.active, 0, -1, withscores=True)]
            assert len(scores) == 3 and min(scores) > now_ms, "a lease ran out while its handler ran"
            assert {x.pid for x in ledger.starts()} == {first.pid}
            deadlines.append(min(scores))
            time.sleep(0.1)
        rec.open_gate("long")
        wait_for(lambda: qstats(r, q).get("processed") == 3, 10, "the long tasks' acks")
        codes = []
        for w in (first, second):
            w.signal(signal.SIGTERM)
            codes.append(w.wait(15))
    v = ledger.check(r, [q])
    extended = sum(1 for a, b in itertools.pairwise(deadlines) if b > a)
    s = qstats(r, q)
    print(f"\n[lease extension] handlers ran {4 * LEASE_S:.0f} s (lease {LEASE_S} s): started by the second worker "
          f"{sum(1 for x in ledger.starts() if x.pid == second.pid)}, lost {len(v.lost)}, duplicated {v.duplicated}, "
          f"crashes {sum(1 for c in codes if c)}, deadlines pushed forward {extended} times, "
          f"recovered {s.get('recovered', 0)}")
    assert {x.pid for x in ledger.starts()} == {first.pid} and len(ledger.starts()) == 3
    assert {e.id for e in ledger.ends()} == ids and v.duplicated == 0 and codes == [0, 0]
    assert (s["processed"], s.get("recovered", 0), s.get("stale", 0)) == (3, 0, 0)
    assert extended >= 3 * 4 - 2  # about every lease_s / 3
    assert not first.find("lease_lost") and not second.find("leases_recovered")


def test_sigstop_past_lease_then_sigcont_completion_is_refused(chaos: dict[str, Any]) -> None:
    """Matrix #6: a zombie worker (frozen past its lease) finishes its handler after the task was redelivered;
    its completion is refused (token mismatch). The handler ran twice: a duplicate, counted."""
    url, reg, r, rec, ledger = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"], chaos["ledger"]
    q = qk(reg, "chaos")
    with router.Client(reg, url=url) as c:
        tid = c.enqueue("chaos.work", {"gate": "g"}).id
        ledger.ok(tid)
    with workers() as procs:
        first = spawn(chaos, 1)
        procs.append(first)
        wait_for(lambda: rec.count("started") == 1, 30, f"the first worker to start the task\n{first.log_tail()}")
        first.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        second = spawn(chaos, 1)
        procs.append(second)
        wait_for(lambda: rec.count("started") == 2, LEASE_S + 10,
                 f"the second worker to take over\n{second.log_tail()}")  # fmt: skip
        takeover_s = time.monotonic() - stopped_at
        rec.open_gate("g", tokens=2)  # the frozen worker's BLPOP is first in line for one of them
        wait_for(lambda: qstats(r, q).get("processed") == 1, 10, "the second worker's completion")
        first.signal(signal.SIGCONT)
        wait_for(lambda: first.has_event("stale_completion_refused"), 15,
                 f"the first worker's completion to be refused\n{first.log_tail()}")  # fmt: skip
        codes = []
        for wp in (first, second):
            wp.signal(signal.SIGTERM)
            codes.append(wp.wait(15))
    v = ledger.check(r, [q])
    print(f"\n[SIGSTOP past the lease] lost {len(v.lost)}, duplicated {v.duplicated} (the zombie's handler ran to "
          f"its end), crashes {sum(1 for c in codes if c)}, recovery (takeover) {takeover_s:.2f} s after SIGSTOP; "
          f"zombie: lease_lost={len(first.find('lease_lost'))} stale_completion_refused="
          f"{len(first.find('stale_completion_refused'))}")
    assert codes == [0, 0] and v.lost == set() and v.duplicated == 1
    assert [(t, pid) for t, pid, _ in rec.entries("started")] == [(tid, first.pid), (tid, second.pid)]
    # Both handler calls ran to the end (a side effect twice: at-least-once), but the task completed once.
    assert sorted(pid for _, pid, _ in rec.entries("done")) == sorted([first.pid, second.pid])
    s = qstats(r, q)
    assert (s["processed"], s["stale"], s["recovered"]) == (1, 1, 1)
    assert r.llen(q.pending) == r.zcard(q.active) == r.zcard(q.retry) == r.zcard(q.archived) == 0
    assert takeover_s >= LEASE_S  # never taken over while the lease was valid


def test_sigterm_finishes_short_tasks_and_requeues_long_ones(chaos: dict[str, Any]) -> None:
    """Matrix #2: the short tasks finish within the shutdown timeout; the long ones go back to pending at exit
    (not after their lease)."""
    url, reg, r, rec, ledger = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"], chaos["ledger"]
    q = qk(reg, "chaos")
    shutdown_timeout_s = 2.0
    with router.Client(reg, url=url) as c:
        short = {c.enqueue("chaos.work", {"gate": "short", "i": i}).id for i in range(3)}
        long = {c.enqueue("chaos.work", {"gate": "long", "i": i}).id for i in range(3)}
    for tid in short | long:
        ledger.ok(tid)
    with workers() as procs:
        w = spawn(chaos, 6, shutdown_timeout_s=shutdown_timeout_s)
        procs.append(w)
        wait_for(lambda: rec.count("started") == 6, 30, f"six handlers running\n{w.log_tail()}")
        w.signal(signal.SIGTERM)
        sent_at = time.monotonic()
        rec.open_gate("short")
        code = w.wait(shutdown_timeout_s + 10)
        exit_s = time.monotonic() - sent_at
        pending = {x.decode() for x in r.lrange(q.pending, 0, -1)}  # right after exit, before anything else
    v = ledger.check(r, [q])
    print(f"\n[SIGTERM] lost {len(v.lost)}, duplicated {v.duplicated}, crashes {int(code != 0)}, exit {exit_s:.2f} s "
          f"after SIGTERM (shutdown_timeout_s {shutdown_timeout_s}), requeued {len(pending)} long task(s) at exit")
    assert code == 0 and v.lost == set() and v.duplicated == 0
    assert exit_s <= shutdown_timeout_s + 2.0
    assert {t for t, _, _ in rec.entries("done")} == short and rec.count("done") == 3
    assert pending == long
    assert r.zcard(q.active) == 0
    s = qstats(r, q)
    assert (s["processed"], s["requeued"], s.get("failed", 0)) == (3, 3, 0)
    names = w.event_names()
    assert "signal_received" in names and "worker_stopped" in names
    assert [e["count"] for e in w.find("tasks_requeued_at_shutdown")] == [3]


def test_sigkill_during_graceful_shutdown_loses_nothing(chaos: dict[str, Any]) -> None:
    """Matrix #3 (sidekiq#4715): SIGTERM, then SIGKILL one second into the graceful stop. The prefetched tasks went
    back at the TERM; the running ones come back by lease and run once elsewhere; nothing hangs or is lost."""
    url, reg, r, rec, ledger = chaos["url"], chaos["reg"], chaos["r"], chaos["rec"], chaos["ledger"]
    q = qk(reg, "chaos")
    with router.Client(reg, url=url) as c:
        for info in c.enqueue_many([("chaos.work", {"gate": "g", "i": i}) for i in range(8)]):
            ledger.ok(info.id)
        for info in c.enqueue_many([("chaos.work", {"i": i}) for i in range(40)]):
            ledger.ok(info.id)
    with workers() as procs:
        first = spawn(chaos, 4, shutdown_timeout_s=30)
        procs.append(first)
        wait_for(lambda: len(ledger.starts()) == 4 and r.zcard(q.active) == 8, 30,
                 f"four handlers running, four prefetched\n{first.log_tail()}")  # fmt: skip
        first.signal(signal.SIGTERM)
        wait_for(lambda: first.find("tasks_requeued_at_shutdown"), 10, "the prefetched tasks handed back")
        pacer = threading.Event()
        pacer.wait(1.0)  # one second into the graceful stop (the handlers are still parked at their gate)
        first.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert first.wait(10) == -signal.SIGKILL
        rec.open_gate("g")
        second = spawn(chaos, 8)
        procs.append(second)
        wait_for(lambda: wait_all_settled(ledger, r, [q]), LEASE_S + 20,
                 f"every task completed\n{second.log_tail()}")  # fmt: skip
        recovery_s = time.monotonic() - killed_at
        second.signal(signal.SIGTERM)
        crashes = int(second.wait(15) != 0)
    v = ledger.check(r, [q])
    s = qstats(r, q)
    handed_back = sum(e["count"] for e in first.find("tasks_requeued_at_shutdown"))
    print(f"\n[SIGKILL 1 s into a graceful stop] lost {len(v.lost)}, duplicated {v.duplicated}, crashes {crashes}, "
          f"recovery {recovery_s:.2f} s after SIGKILL (lease {LEASE_S} s), handed back at TERM "
          f"{handed_back}, recovered by lease {s.get('recovered', 0)}; "
          f"{v.figures()}")
    assert v.lost == set() and v.completed == v.acked == 48 and crashes == 0
    assert v.duplicated == 0  # the killed handlers were parked at their gate: none had finished
    assert handed_back == 4  # the prefetched ones, at once
    assert s["recovered"] == 4 and s["processed"] == 48
    assert {e.pid for e in ledger.ends()} == {second.pid}
    assert recovery_s < LEASE_S + MAINTENANCE_S + GRACE_S + 8.0
