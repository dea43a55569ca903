"""The lifecycle on the three-master cluster through subprocess workers: process, retry, archive, kill -9."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from enginekit import (
    PLACEHOLDER_URL,
    Recorder,
    build_registry,
    chaos_env,
    qk,
    raw_client,
    router_url,
    start_worker,
    task,
    wait_for,
    workers,
    write_registry_yaml,
)
from enginekit import stats as qstats
from ledger import Ledger

import router

pytestmark = [pytest.mark.chaos, pytest.mark.cluster]

SERVICES = {
    "chaos": {
        "app": "chaos_app:app",
        "queues": {"default": 1, "critical": 2},
        "tasks": {"chaos.work": task("default", max_retry=3, timeout_s=60)},
    }
}


def test_cluster_lifecycle_with_kill_9_recovery(
    cluster_url: str, redis_url: str, tmp_path: Path, ledger: Ledger
) -> None:
    url = router_url(cluster_url, is_cluster=True)
    reg = build_registry(url, SERVICES)
    path = write_registry_yaml(tmp_path / "services.yaml", SERVICES, PLACEHOLDER_URL)
    r = raw_client(url)
    rec = Recorder(raw_client(redis_url), "cluster")
    env = {**chaos_env(redis_url, "cluster"), **ledger.env()}
    d, crit = qk(reg, "chaos", "default"), qk(reg, "chaos", "critical")
    with router.Client(reg, url=url) as c:
        quick = [c.enqueue("chaos.work", {"i": i}, queue=("critical" if i % 2 else "default")).id for i in range(10)]
        flaky = c.enqueue("chaos.work", {"fail_until": 1}).id
        doomed = c.enqueue("chaos.work", {"fail": True}, max_retry=1, queue="critical").id
    for tid in [*quick, flaky, doomed]:
        ledger.ok(tid)
    with workers() as procs:
        first = start_worker(path, "chaos", url, concurrency=20, lease_s=2.0, maintenance_s=0.5, extra_env=env)
        procs.append(first)
        wait_for(lambda: len(rec.per_task("done")) == 11 and r.zcard(crit.archived) == 1, 30,
                 f"quick tasks done, the flaky one retried, the doomed one archived\n{first.log_tail()}")  # fmt: skip
        assert sorted(rec.per_task("done")) == sorted([*quick, flaky])
        assert [(t, a) for t, _, a in rec.entries("failed")].count((flaky, 1)) == 1
        arch = json.loads(r.hget(crit.messages, doomed))
        assert arch["why"] == "max_retry_exceeded" and arch["n"] == 2
        assert arch["err"] == "RuntimeError: planned failure at attempt 2"
        # kill -9 with tasks in flight on both queues (two slots, on whichever masters they hash to).
        with router.Client(reg, url=url) as c:
            gated = {c.enqueue("chaos.work", {"gate": "g", "i": i}, queue=("critical" if i % 2 else "default")).id
                     for i in range(10)}  # fmt: skip
        for tid in gated:
            ledger.ok(tid)
        wait_for(lambda: gated <= {t for t, _, _ in rec.entries("started")}, 20, "gated tasks running")
        first.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(10)
        rec.open_gate("g")
        second = start_worker(path, "chaos", url, concurrency=20, lease_s=2.0, maintenance_s=0.5, extra_env=env)
        procs.append(second)
        wait_for(lambda: gated <= set(rec.per_task("done")), 20, f"gated tasks recovered\n{second.log_tail()}")
        recovery_s = time.monotonic() - killed_at
        wait_for(lambda: qstats(r, d).get("processed", 0) + qstats(r, crit).get("processed", 0) == 21, 10,
                 "all acks")  # fmt: skip
        second.signal(signal.SIGTERM)
        crashes = int(second.wait(15) != 0)
    v = ledger.check(r, [d, crit])
    print(f"\n[cluster kill -9, 10 parked in flight] lost {len(v.lost)}, duplicated {v.duplicated}, crashes {crashes}, "
          f"recovery {recovery_s:.2f} s after SIGKILL; {v.figures()}")
    assert v.lost == set() and v.duplicated == 0 and crashes == 0 and v.archived == {doomed}
    assert all(n == 1 for n in ledger.completions().values()) and ledger.completed_ids() == {*quick, flaky, *gated}
    assert sum(e["count"] for e in second.find("leases_recovered")) == 10
    sd, sc = qstats(r, d), qstats(r, crit)
    assert sd["recovered"] + sc["recovered"] == 10
    assert sd["enqueued"] + sc["enqueued"] == 22
    assert (sd.get("retried", 0) + sc.get("retried", 0), sc["archived"]) == (2, 1)  # flaky once, doomed once
    for q in (d, crit):
        assert r.llen(q.pending) == r.zcard(q.active) == r.zcard(q.retry) == 0
    r.close()
    rec.client.close()
