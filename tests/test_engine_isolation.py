"""Two services on one Redis with same-named queues and overlapping handler code: routing keeps them apart."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from enginekit import archived, build_registry, fast_settings, qk, task
from enginekit import stats as qstats

import router
from router.service import Service
from router.storage.envelope import encode_new

N = 20


def two_services(url: str) -> router.Registry:
    return build_registry(
        url,
        {
            svc: {
                "queues": {"default": 1, "critical": 2},
                "tasks": {f"{svc}.sync": task("default", max_retry=3), f"{svc}.urgent": task("critical", max_retry=3)},
            }
            for svc in ("alpha", "beta")
        },
    )


def apps(log: list[tuple[str, str, str]]) -> tuple[Service, Service]:
    """alpha's code also carries a handler for beta.sync (the Asynq trap): only routing can keep it idle."""
    alpha, beta = Service("alpha"), Service("beta")
    for app, types in ((alpha, ("alpha.sync", "alpha.urgent", "beta.sync")), (beta, ("beta.sync", "beta.urgent"))):
        for t in types:
            app.add(t, lambda task, who=app.name: log.append((who, task.type, task.id)))
    return alpha, beta


def test_each_worker_processes_only_its_own_services_tasks(target: tuple[str, Any]) -> None:
    url, r = target
    reg = two_services(url)
    with router.Client(reg, url=url) as c:
        infos = c.enqueue_many([(t, {"i": i}) for i in range(N) for t in ("alpha.sync", "alpha.urgent", "beta.sync",
                                                                          "beta.urgent")])
    owner = {i.id: i.service for i in infos}
    for svc in ("alpha", "beta"):
        for queue in ("default", "critical"):
            assert r.llen(qk(reg, svc, queue).pending) == N
    log: list[tuple[str, str, str]] = []
    alpha_app, beta_app = apps(log)
    alpha = router.Worker(reg, alpha_app, url=url, settings=fast_settings(), allow_handler_mismatch=True)
    beta = router.Worker(reg, beta_app, url=url, settings=fast_settings())
    threads = [threading.Thread(target=w.run, kwargs={"burst": True}) for w in (alpha, beta)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    wrong = [(who, typ) for who, typ, tid in log if owner[tid] != who]
    assert wrong == [], f"{len(wrong)} tasks processed by the wrong service"
    assert sorted(tid for _, _, tid in log) == sorted(owner), "every task exactly once"
    assert alpha.stats["processed"] == beta.stats["processed"] == 2 * N
    assert [typ for who, typ, _ in log if who == "alpha" and typ == "beta.sync"] == []
    for svc in ("alpha", "beta"):
        for queue in ("default", "critical"):
            assert qstats(r, qk(reg, svc, queue)) == {"enqueued": N, "processed": N}


def test_foreign_message_in_a_queue_is_archived_unknown_type_never_retried(target: tuple[str, Any]) -> None:
    url, r = target
    reg = two_services(url)
    q = qk(reg, "alpha", "default")
    # A raw beta.sync message in alpha's queue (a misrouted producer that bypassed the guard).
    r.hset(q.messages, "stray", encode_new("beta.sync", '{"i":1}', 1_700_000_000_000))
    r.lpush(q.pending, "stray")
    with router.Client(reg, url=url) as c:
        mine = c.enqueue("alpha.sync", {"i": 2}).id
    log: list[tuple[str, str, str]] = []
    alpha_app, _ = apps(log)
    w = router.Worker(reg, alpha_app, url=url, settings=fast_settings(), allow_handler_mismatch=True)
    w.run(burst=True)
    assert log == [("alpha", "alpha.sync", mine)], "alpha's handler for beta.sync must never run"
    arch = archived(r, q)
    assert list(arch) == ["stray"]
    assert arch["stray"]["why"] == "unknown_type" and "beta" in arch["stray"]["err"]
    assert arch["stray"]["t"] == "beta.sync" and arch["stray"]["p"] == {"i": 1}
    assert r.zcard(q.retry) == 0 and r.llen(q.pending) == 0 and r.zcard(q.active) == 0
    assert w.stats == {**w.stats, "processed": 1, "archived": 1, "retried": 0}
    assert qstats(r, q) == {"enqueued": 1, "processed": 1, "failed": 1, "archived": 1}
    # beta's queues were never touched.
    assert r.exists(*[getattr(qk(reg, "beta", name), k) for name in ("default", "critical")
                      for k in ("pending", "messages", "stats")]) == 0  # fmt: skip


def test_worker_refuses_to_start_when_handlers_disagree(redis_url: str) -> None:
    reg = two_services(redis_url)
    log: list[tuple[str, str, str]] = []
    alpha_app, _ = apps(log)
    with pytest.raises(router.HandlerMismatch, match=r"beta\.sync"):
        router.Worker(reg, alpha_app, url=redis_url)
    missing = Service("beta")
    missing.add("beta.sync", lambda t: None)
    with pytest.raises(router.HandlerMismatch, match=r"beta\.urgent"):
        router.Worker(reg, missing, url=redis_url)
    undeclared = Service("beta")
    for t in ("beta.sync", "beta.urgent", "beta.ghost"):
        undeclared.add(t, lambda t: None)
    with pytest.raises(router.HandlerMismatch, match=r"beta\.ghost"):
        router.Worker(reg, undeclared, url=redis_url)
