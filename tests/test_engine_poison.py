"""Messages that used to crash a worker over and over: NaN in a payload, JSON nested too deep, an id that is not
UTF-8, and a handler result JSON cannot carry. Each ends archived (or completed), never stuck in active."""

from __future__ import annotations

import math

from enginekit import build_registry, fast_settings, qk, raw_client, task

import router

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task(retention_s=60)}}}


def test_poison_messages_are_archived_and_the_worker_carries_on(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    deep = '{"v":1,"t":"svc.job","e":1,"p":{"x":' + "[" * 50_000 + "]" * 50_000 + "}}"
    raw = {
        b"nan": b'{"v":1,"t":"svc.job","e":1,"p":{"x":NaN}}',
        b"deep": deep.encode(),
        b"\xff\xfe": b'{"v":1,"t":"svc.job","e":1,"p":{}}',
    }
    for task_id, envelope in raw.items():
        r.hset(q.messages, task_id, envelope)
        r.lpush(q.pending, task_id)
    results = {"nan": math.nan, "set": {1, 2}}
    app = router.Service("svc")
    app.add("svc.job", lambda t: results.get(t.payload.get("kind", ""), "ok"))
    with router.Client(reg, url=redis_url) as client:
        ok = [client.enqueue("svc.job", {"kind": k}).id for k in ("nan", "set", "plain")]
    worker = router.Worker(reg, app, url=redis_url, settings=fast_settings())
    worker.run(burst=True)
    assert r.zcard(q.active) == 0
    assert set(r.zrange(q.archived, 0, -1)) == set(raw)
    assert {i.encode() for i in ok} <= set(r.zrange(q.completed, 0, -1))
    assert worker.stats["processed"] == 3 and worker.stats["archived"] == 3
    r.close()
