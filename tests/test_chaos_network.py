"""The network between workers and Redis: one worker's link black-holed longer than the lease (an in-test TCP proxy,
tests/tcpproxy.py), and a storm of connection resets (``CLIENT KILL TYPE normal`` every second). Subprocess
workers through the CLI, lease 2 s, the ledger (tests/ledger.py) for lost and duplicated."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    Recorder,
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
from ledger import Ledger, Producer, wait_all_settled
from tcpproxy import BLACKHOLE, PASS, TcpProxy

import router
from router.ops.localredis import RedisServer

pytestmark = pytest.mark.chaos

LEASE_S = 2.0
MAINTENANCE_S = 0.5


def _throughput(ends: list[float], start: float, stop: float) -> float:
    return sum(1 for t in ends if start <= t < stop) / (stop - start)


def test_connection_reset_storm_loses_nothing_and_crashes_nothing(
    fresh_redis_server: RedisServer, tmp_path: Path, ledger: Ledger
) -> None:
    """Matrix #11: every client connection of two workers and a producer is killed every second for 30 s, under
    load (a backlog the workers cannot clear, plus a producer). 0 lost, 0 worker crashes, duplicates <= kills,
    throughput reported against the seconds before the storm."""
    url = fresh_redis_server.url
    reg = build_registry(url, CHAOS_SERVICES)
    q = qk(reg, "chaos")
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    r = raw_client(url)
    killer = fresh_redis_server.client()
    storm_s, baseline_s = 30, 3.0
    with router.Client(reg, url=url) as c:  # more than the workers can run in the whole test
        for start in range(0, 16_000, 1000):
            for info in c.enqueue_many([("chaos.work", {"b": i, "sleep_ms": 20}) for i in range(start, start + 1000)]):
                ledger.ok(info.id)
    producer = Producer(reg, url, ledger, 50 * (storm_s + 5), rate_per_s=50, prefix="p",
                        payload=lambda i: {"sleep_ms": 20})  # fmt: skip
    kills: list[int] = []
    pacer = threading.Event()  # never set: paces the kills
    with workers() as procs:
        live = [start_worker(path, "chaos", url, concurrency=4, lease_s=LEASE_S, maintenance_s=MAINTENANCE_S,
                             extra_env=ledger.env()) for _ in range(2)]  # fmt: skip
        procs.extend(live)
        wait_for(lambda: len(ledger.ends()) >= 200, 30, f"the workers in full flow\n{live[0].log_tail()}")
        producer.start()
        base_from = time.time()
        pacer.wait(baseline_s)
        storm_from = time.time()
        for _ in range(storm_s):
            kills.append(int(killer.client_kill_filter(_type="normal", skipme=True)))
            pacer.wait(1.0)
        storm_to = time.time()
        producer.stop()
        producer.join(30)
        assert not producer.is_alive() and producer.error is None, producer.error
        alive = [w.proc.poll() is None for w in live]
        r.set(q.paused, "1")  # the rest of the backlog stays pending; what was leased must finish or come back
        wait_for(lambda: r.zcard(q.active) == 0, LEASE_S + 20,
                 f"what was leased to settle\n{live[0].log_tail()}", interval_s=0.2)  # fmt: skip
        codes = []
        for w in live:
            w.signal(signal.SIGTERM)
            codes.append(w.wait(15))
    killer.close()
    v = ledger.check(r, [q])
    ends = [e.end or 0.0 for e in ledger.ends()]
    base, storm = _throughput(ends, base_from, storm_from), _throughput(ends, storm_from, storm_to)
    crashes = sum(1 for a in alive if not a) + sum(1 for c in codes if c != 0)
    s = qstats(r, q)
    print(f"\n[CLIENT KILL every 1 s for {storm_s} s] lost {len(v.lost)}, duplicated {v.duplicated}, crashes "
          f"{crashes}, {len(kills)} kills ({sum(kills)} connections), throughput {storm:.0f}/s in the storm vs "
          f"{base:.0f}/s before ({storm / base:.0%}), producer unknown outcomes {producer.unknown_outcomes} (all "
          f"repeated), recovered leases {s.get('recovered', 0)}, stale acks {s.get('stale', 0)}; {v.figures()}")
    assert crashes == 0 and all(kills)
    assert v.lost == set() and not v.unknown
    assert v.duplicated <= len(kills)
    assert storm >= 0.5 * base
    r.close()


def test_a_worker_black_holed_past_its_lease_loses_its_tasks_to_another_and_comes_back(
    fresh_redis_server: RedisServer, redis_url: str, tmp_path: Path, ledger: Ledger
) -> None:
    """Matrix #10: worker A reaches Redis through a proxy that black-holes its link (sockets open, nothing
    forwarded) for three lease periods; worker B is connected directly. A's tasks are redelivered to B; A's
    completions, delivered after the heal, are refused as stale; A reconnects within seconds; 0 lost."""
    url = fresh_redis_server.url
    reg = build_registry(url, CHAOS_SERVICES)
    q = qk(reg, "chaos")
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    r = raw_client(url)
    gates = Recorder(redis.Redis.from_url(redis_url), "blackhole")  # gates live on another Redis, off the proxy
    env = {**chaos_env(redis_url, "blackhole"), **ledger.env()}
    held = set()
    with router.Client(reg, url=url) as c:
        for i in range(4):
            tid = c.enqueue("chaos.work", {"gate": "g", "i": i}).id
            ledger.ok(tid)
            held.add(tid)
    producer = Producer(reg, url, ledger, 10_000, rate_per_s=50, prefix="p", payload=lambda i: {"sleep_ms": 5})
    with TcpProxy((fresh_redis_server.host, fresh_redis_server.port)) as proxy, workers() as procs:
        a = start_worker(path, "chaos", proxy.url, concurrency=8, lease_s=LEASE_S, maintenance_s=MAINTENANCE_S,
                         extra_env=env)  # fmt: skip
        procs.append(a)
        wait_for(lambda: {x.id for x in ledger.starts(a.pid)} == held, 30, f"A running the gated tasks\n{a.log_tail()}")
        b = start_worker(path, "chaos", url, concurrency=8, lease_s=LEASE_S, maintenance_s=MAINTENANCE_S,
                         extra_env=env)  # fmt: skip
        procs.append(b)
        wait_for(lambda: b.has_event("worker_started"), 30, f"B to start\n{b.log_tail()}")
        producer.start()
        wait_for(lambda: len(ledger.ends(a.pid)) >= 5, 20, "A in the flow too")
        proxy.set_mode(BLACKHOLE)
        cut_at = time.monotonic()
        gates.open_gate("g")  # A's handlers finish while it is cut off: their acks cannot reach Redis
        wait_for(lambda: held <= {e.id for e in ledger.ends(b.pid)}, LEASE_S + 10,
                 f"B to run A's tasks again\n{b.log_tail()}")  # fmt: skip
        takeover_s = time.monotonic() - cut_at
        pacer = threading.Event()
        pacer.wait(max(0.0, cut_at + 3 * LEASE_S - time.monotonic()))  # keep A cut off for three leases
        proxy.set_mode(PASS)
        healed_at = time.monotonic()
        healed_wall = time.time()
        wait_for(lambda: a.find("redis_available"), 15, f"A to reconnect\n{a.log_tail()}")
        reconnect_s = time.monotonic() - healed_at
        wait_for(lambda: any((e.end or 0) > healed_wall for e in ledger.ends(a.pid)), 15,
                 f"A to complete tasks again\n{a.log_tail()}")  # fmt: skip
        wait_for(lambda: len(a.find("stale_completion_refused")) >= len(held), 10,
                 f"A's late completions refused\n{a.log_tail()}")  # fmt: skip
        producer.stop()
        producer.join(30)
        assert not producer.is_alive() and producer.error is None, producer.error
        wait_for(lambda: wait_all_settled(ledger, r, [q]), LEASE_S + 20, f"the queue drained\n{b.log_tail()}")
        codes = []
        for w in (a, b):
            w.signal(signal.SIGTERM)
            codes.append(w.wait(15))
    gates.client.close()
    v = ledger.check(r, [q])
    s = qstats(r, q)
    twice = {t for t, n in ledger.completions().items() if n > 1}
    print(f"\n[A black-holed {3 * LEASE_S:.0f} s] lost {len(v.lost)}, duplicated {v.duplicated}, crashes "
          f"{sum(1 for c in codes if c)}, recovery (B ran A's tasks) {takeover_s:.2f} s after the cut, A reconnected "
          f"{reconnect_s:.2f} s after the heal, A's stale completions refused {len(a.find('stale_completion_refused'))}"
          f" (stale in Redis's count: {s.get('stale', 0)}); {v.figures()}")
    assert v.lost == set() and not v.unknown and codes == [0, 0]
    assert held <= twice  # A's handlers ended and so did B's: at-least-once, counted
    assert all(ledger.completions()[t] == 2 for t in held)
    assert s.get("stale", 0) >= len(held)
    assert a.has_event("redis_unavailable") and reconnect_s <= 5.0
