"""Garbage written straight into a queue, between valid tasks: every bad message is dead-lettered with the right
reason, every valid task is processed, and the worker keeps running."""

from __future__ import annotations

import json
import threading
from typing import Any

from enginekit import archived, build_registry, fast_settings, qk, raw_client, task, wait_for
from enginekit import stats as qstats

import router
from router.service import Service
from router.storage.envelope import encode_new

GOOD_ENV = encode_new("shop.order", '{"n":1}', 1_700_000_000_000)


def envelope(**fields: Any) -> bytes:
    doc = {"v": 1, "t": "shop.order", "e": 1_700_000_000_000, "p": {"n": 1}}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


#: task id -> (stored message or None for no message at all, expected archive reason)
BAD: dict[str, tuple[bytes | None, str]] = {
    "not-json": (b"{not json", "malformed"),
    "json-array": (b"[1, 2, 3]", "malformed"),
    "json-string": (b'"hello"', "malformed"),
    "empty": (b"", "malformed"),
    "version-99": (envelope(v=99), "malformed"),
    "no-version": (envelope(v=...), "malformed"),
    "type-not-string": (envelope(t=5), "malformed"),
    "payload-array": (envelope(p=[1, 2]), "malformed"),
    "payload-missing": (envelope(p=...), "malformed"),
    "enqueued-string": (envelope(e="yesterday"), "malformed"),
    "enqueued-bool": (envelope(e=True), "malformed"),
    "retry-string": (envelope(r="5"), "malformed"),
    "timeout-negative": (envelope(to=-1), "malformed"),
    "unknown-type": (envelope(t="nobody.task"), "unknown_type"),
    "undecodable-bytes": (b"\xff\xfe\x00garbage\x80", "malformed"),
    "blob-2mb": (b"\xff" + b"x" * (2 * 1024 * 1024), "malformed"),
    "brace{d}": (GOOD_ENV, "malformed"),
    "x" * 200: (GOOD_ENV, "malformed"),
    "no-message": (None, "missing_message"),
}


def test_garbage_is_archived_with_reasons_and_valid_tasks_still_run(redis_url: str) -> None:
    reg = build_registry(redis_url, {"shop": {"tasks": {"shop.order": task(max_retry=5)}}})
    r = raw_client(redis_url)
    q = qk(reg, "shop")
    valid: list[str] = []
    with router.Client(reg, url=redis_url) as c:
        for i, (bad_id, (raw, _)) in enumerate(BAD.items()):
            valid.append(c.enqueue("shop.order", {"n": i}).id)
            if raw is not None:
                r.hset(q.messages, bad_id, raw)
            r.lpush(q.pending, bad_id)
        valid.append(c.enqueue("shop.order", {"n": -1}).id)
    done: list[str] = []
    app = Service("shop")
    app.add("shop.order", lambda t: done.append(t.id))
    w = router.Worker(reg, app, url=redis_url, settings=fast_settings(concurrency=2))
    runner = threading.Thread(target=w.run)
    runner.start()
    try:
        wait_for(lambda: r.zcard(q.archived) == len(BAD) and len(done) == len(valid), 30,
                 "every bad message archived and every valid task processed")
        assert runner.is_alive(), "the worker died on bad input"
        with router.Client(reg, url=redis_url) as c:
            late = c.enqueue("shop.order", {"n": 99}).id
        wait_for(lambda: late in done, 10, "a task enqueued after the garbage to be processed")
        assert runner.is_alive()
    finally:
        w.stop()
        runner.join(15)
    assert not runner.is_alive()
    assert sorted(done) == sorted([*valid, late]) and len(done) == len(valid) + 1
    arch = archived(r, q)
    assert set(arch) == set(BAD)
    reasons = {tid: env["why"] for tid, env in arch.items()}
    assert reasons == {tid: why for tid, (_, why) in BAD.items()}
    for tid, (raw, why) in BAD.items():
        env = arch[tid]
        assert env["err"], tid
        if why == "malformed" and tid not in ("brace{d}", "x" * 200):
            assert env["t"] == "<undecodable>" and env["p"]["raw_bytes"] == len(raw or b""), tid
    # The original bytes are kept (bounded) so an operator can inspect them.
    assert arch["not-json"]["p"]["raw"] == "{not json"
    assert len(arch["blob-2mb"]["p"]["raw"]) <= 1_000_000
    assert arch["unknown-type"]["t"] == "nobody.task"
    assert r.zcard(q.retry) == 0 and r.llen(q.pending) == 0 and r.zcard(q.active) == 0
    assert w.stats == {**w.stats, "processed": len(valid) + 1, "archived": len(BAD), "retried": 0}
    assert qstats(r, q) == {"enqueued": len(valid) + 1, "processed": len(valid) + 1, "failed": len(BAD),
                            "archived": len(BAD)}  # fmt: skip
