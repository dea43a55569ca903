"""Every signal a supervisor or terminal sends has a documented, logged effect, and no child outlives its parent
(issue 9, item 6). Subprocess workers through the CLI, with the chaos handlers (gates, records)."""

from __future__ import annotations

import os
import signal
import time
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
    sk,
    start_worker,
    wait_for,
    workers,
    write_registry_yaml,
)

import router
from router.ops.localredis import RedisServer

pytestmark = pytest.mark.chaos


@pytest.fixture
def chaos(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    r = raw_client(redis_url)
    request.addfinalizer(r.close)
    ns = f"rec-{request.node.name}"
    return {
        "url": redis_url, "reg": build_registry(redis_url, CHAOS_SERVICES), "r": r, "rec": Recorder(r, ns),
        "path": write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL),
        "env": chaos_env(redis_url, ns),
    }


def _spawn(chaos: dict[str, Any], url: str | None = None, **settings: Any) -> WorkerProcess:
    return start_worker(chaos["path"], "chaos", url or chaos["url"], extra_env=chaos["env"], **settings)


def _enqueue(chaos: dict[str, Any], n: int, gate: str, url: str | None = None) -> set[str]:
    with router.Client(chaos["reg"], url=url or chaos["url"]) as c:
        return {i.id for i in c.enqueue_many([("chaos.work", {"gate": gate, "i": i}) for i in range(n)])}


def _report(chaos: dict[str, Any], label: str, ids: set[str], url: str | None = None, **more: Any) -> None:
    """The chaos figures of a signal test: lost (neither done nor queued), duplicated (done twice), crashes (the
    tests assert exit 0, so none get here)."""
    r: Any = raw_client(url) if url else chaos["r"]
    q = qk(chaos["reg"], "chaos")
    queued = {x.decode() for x in r.lrange(q.pending, 0, -1)}
    queued |= {m.decode().rsplit(":", 1)[0] for m in r.zrange(q.active, 0, -1)}
    if url:
        r.close()
    done = chaos["rec"].per_task("done")
    extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in more.items())
    print(f"\n[{label}] lost {len(ids - set(done) - queued)}, duplicated {sum(n - 1 for n in done.values())}, "
          f"crashes 0{extra}")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_sighup_stops_gracefully_like_sigterm(chaos: dict[str, Any]) -> None:
    ids = _enqueue(chaos, 2, "g")
    with workers() as procs:
        w = _spawn(chaos, concurrency=2, shutdown_timeout_s=10)
        procs.append(w)
        wait_for(lambda: chaos["rec"].count("started") == 2, 30, f"two handlers running\n{w.log_tail()}")
        w.signal(signal.SIGHUP)
        wait_for(lambda: w.find("signal_received"), 10, "the HUP to be logged")
        chaos["rec"].open_gate("g")
        assert w.wait(15) == 0, w.log_tail()
    _report(chaos, "SIGHUP", ids)
    assert {t for t, _, _ in chaos["rec"].entries("done")} == ids  # the running tasks finished, as under TERM
    assert w.find("signal_received")[0]["signal"] == "SIGHUP" and w.has_event("worker_stopped")
    assert chaos["r"].zcard(sk(chaos["reg"], "chaos").workers) == 0  # the heartbeat was withdrawn


def test_sigusr1_logs_the_status_and_the_worker_carries_on(chaos: dict[str, Any]) -> None:
    with workers() as procs:
        w = _spawn(chaos, concurrency=2)
        procs.append(w)
        wait_for(lambda: w.has_event("worker_started"), 30, f"the worker to start\n{w.log_tail()}")
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            w.signal(sig)
        wait_for(lambda: len(w.find("worker_status")) == 2, 10, f"two status lines\n{w.log_tail()}")
        ids = _enqueue(chaos, 1, "")
        wait_for(lambda: chaos["rec"].count("done") == 1, 10, "a task after the status signals")
        w.signal(signal.SIGTERM)
        assert w.wait(15) == 0
    _report(chaos, "SIGUSR1/SIGUSR2", ids, status_lines=len(w.find("worker_status")))
    assert {t for t, _, _ in chaos["rec"].entries("done")} == ids
    status = w.find("worker_status")[0]
    assert status["service"] == "chaos" and "running" in status and "processed" in status


def test_sigquit_exits_now_and_requeues_what_runs(chaos: dict[str, Any]) -> None:
    ids = _enqueue(chaos, 2, "g")
    q = qk(chaos["reg"], "chaos")
    with workers() as procs:
        w = _spawn(chaos, concurrency=2, shutdown_timeout_s=60)
        procs.append(w)
        wait_for(lambda: chaos["rec"].count("started") == 2, 30, f"two handlers running\n{w.log_tail()}")
        sent = time.monotonic()
        w.signal(signal.SIGQUIT)
        assert w.wait(15) == 0, w.log_tail()
        exit_s = time.monotonic() - sent
        assert exit_s < 5  # not the 60 s shutdown timeout
    _report(chaos, "SIGQUIT", ids, exit_after=f"{exit_s:.2f} s", requeued=chaos["r"].llen(q.pending))
    assert {x.decode() for x in chaos["r"].lrange(q.pending, 0, -1)} == ids
    assert chaos["r"].zcard(q.active) == 0


def test_a_second_sigterm_does_not_cut_the_graceful_stop_short(chaos: dict[str, Any]) -> None:
    """It used to kill the worker at once (exit -15) before it withdrew its heartbeat and handed tasks back."""
    ids = _enqueue(chaos, 1, "g")
    q = qk(chaos["reg"], "chaos")
    with workers() as procs:
        w = _spawn(chaos, concurrency=1, shutdown_timeout_s=2)
        procs.append(w)
        wait_for(lambda: chaos["rec"].count("started") == 1, 30, f"the handler running\n{w.log_tail()}")
        w.signal(signal.SIGTERM)
        wait_for(lambda: w.find("signal_received"), 10, "the first TERM to be logged")
        w.signal(signal.SIGTERM)
        assert w.wait(15) == 0, w.log_tail()
    _report(chaos, "SIGTERM twice", ids, requeued=chaos["r"].llen(q.pending))
    actions = [e["action"] for e in w.find("signal_received")]
    assert len(actions) == 2 and actions[1].startswith("already stopping")
    assert {x.decode() for x in chaos["r"].lrange(q.pending, 0, -1)} == ids  # requeued after the timeout
    assert chaos["r"].zcard(sk(chaos["reg"], "chaos").workers) == 0


def test_a_group_passes_sighup_on_and_its_children_die_with_it(chaos: dict[str, Any]) -> None:
    with workers() as procs:
        group = _spawn(chaos, concurrency=1, processes=2)
        procs.append(group)
        wait_for(lambda: group.find("worker_group_started"), 30, f"the group\n{group.log_tail()}")
        children = group.find("worker_group_started")[0]["pids"]
        wait_for(lambda: len(group.find("worker_started")) == 2, 30, "both children")
        group.signal(signal.SIGHUP)
        assert group.wait(20) == 0, group.log_tail()
        assert all(_gone(pid) for pid in children)
        # Killed outright, the parent takes no child with it by itself: the children notice and stop.
        group = _spawn(chaos, concurrency=1, processes=2)
        procs.append(group)
        wait_for(lambda: len(group.find("worker_started")) == 2, 30, f"both children\n{group.log_tail()}")
        children = group.find("worker_group_started")[0]["pids"]
        group.signal(signal.SIGKILL)
        wait_for(lambda: all(_gone(pid) for pid in children), 20, "the orphaned children to stop")
    _report(chaos, "SIGHUP to a group, then SIGKILL of the parent", set(), orphans_left=0)


def test_sigterm_while_redis_is_frozen_starts_nothing_more_and_exits_on_time(
    chaos: dict[str, Any], fresh_redis_server: RedisServer
) -> None:
    """Redis frozen (SIGSTOP), not down: prefetched tasks used to start after TERM (8 of 8 ran twice), and the
    worker took about two read timeouts longer than its shutdown timeout to exit."""
    url = fresh_redis_server.url
    shutdown_timeout_s = 2.0
    first = _enqueue(chaos, 1, "g", url)
    queued = _enqueue(chaos, 8, "", url)
    q = qk(chaos["reg"], "chaos")
    r = raw_client(url)
    with workers() as procs:
        w = _spawn(chaos, url, concurrency=1, shutdown_timeout_s=shutdown_timeout_s,
                   extra_args=("--prefetch", "8"))
        procs.append(w)
        wait_for(lambda: chaos["rec"].count("started") == 1, 30, f"the first handler\n{w.log_tail()}")
        wait_for(lambda: r.zcard(q.active) == 9, 10, "the prefetched leases")
        fresh_redis_server.pause()
        try:
            w.signal(signal.SIGTERM)
            sent = time.monotonic()
            chaos["rec"].open_gate("g")  # the running handler ends: its slot frees up while Redis is frozen
            code = w.wait(30)
            exit_s = time.monotonic() - sent
        finally:
            fresh_redis_server.resume()
    started = chaos["rec"].per_task("started")
    _report(chaos, "SIGTERM on a frozen Redis", first | queued, url)
    print(f"\n[frozen Redis] exit {exit_s:.2f} s after SIGTERM (shutdown timeout {shutdown_timeout_s} s); "
          f"started after TERM: {len(set(started) - first)}")
    assert code == 0, w.log_tail()
    assert set(started) == first, "no prefetched task may start after TERM"
    assert exit_s < shutdown_timeout_s + 2.0 + 2.0  # + the shutdown grace, + process margin
    assert queued  # they wait in active until their lease expires, then run once elsewhere
