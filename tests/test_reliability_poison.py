"""One bad message must never take a service down (issue 9, items 1 and 3).

Each message here decodes as JSON but used to crash every worker of its queue whenever the worker had to write it
back (archive, failure, result), or was trusted although the envelope schema refuses it. Now each ends archived with
a reason, the worker exits 0, and the valid tasks around it run exactly once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    archived,
    build_registry,
    fast_settings,
    qk,
    raw_client,
    start_worker,
    task,
    workers,
    write_registry_yaml,
)

import router
from router.storage.envelope import decode

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {
    "svc.job": task(retention_s=60, max_retry=1,
                    schema={"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}),
}}}


def _inject(r: Any, q: router.storage.keys.QueueKeys, task_id: str, envelope: bytes) -> None:
    r.hset(q.messages, task_id, envelope)
    r.lpush(q.pending, task_id)


@pytest.mark.parametrize("payload", [rb'{"s":"\ud800"}', rb'{"n":1e999}', rb'{"s":"\udfff\ud800"}'])
def test_a_message_that_cannot_be_written_back_is_archived_and_every_worker_exits_0(
    redis_url: str, tmp_path: Path, payload: bytes
) -> None:
    """The issue's repro: a lone surrogate or an overflowing number under a type nobody owns, then burst workers."""
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    reg = build_registry(redis_url, CHAOS_SERVICES)
    q = qk(reg, "chaos")
    r = raw_client(redis_url)
    _inject(r, q, "poison", b'{"v":1,"t":"nobody.x","e":1,"p":' + payload + b"}")
    with workers() as started:
        for _ in range(2):  # the first worker used to crash, and every later one the same way
            wp = start_worker(path, "chaos", redis_url, extra_args=("--burst",))
            started.append(wp)
            assert wp.wait(60) == 0, wp.log_tail()
            assert "Traceback" not in wp.log_tail(200)
    dead = archived(r, q)
    assert set(dead) == {"poison"} and dead["poison"]["why"] == "malformed", dead
    assert r.zcard(q.active) == 0 and r.llen(q.pending) == 0


def test_results_and_errors_that_json_or_utf8_cannot_carry_are_stored_safely(redis_url: str) -> None:
    """A result or an exception message holding a lone surrogate or NaN is written back as valid UTF-8 JSON."""
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    outcomes: dict[int, Any] = {1: "\ud800 result", 2: math.nan, 3: ValueError("bad \udc80 input")}
    app = router.Service("svc")

    def handle(t: router.Task) -> Any:
        outcome = outcomes[t.payload["n"]]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    app.add("svc.job", handle)
    with router.Client(reg, url=redis_url) as client:
        ids = {n: client.enqueue("svc.job", {"n": n}).id for n in outcomes}
    worker = router.Worker(reg, app, url=redis_url, settings=fast_settings())
    worker.run(burst=True)  # failed once (max_retry 1): a retry is scheduled with the error recorded
    assert worker.stats["processed"] == 2 and worker.stats["retried"] == 1
    stored = {n: r.hget(q.messages, i) for n, i in ids.items()}
    for raw in stored.values():
        decode(raw)  # every stored envelope decodes again: nothing unencodable reached Redis
    assert json.loads(stored[1])["res"] == "? result"
    assert json.loads(stored[3])["err"] == "ValueError: bad ? input"


def test_a_producer_payload_with_a_lone_surrogate_is_payload_invalid(redis_url: str) -> None:
    reg = build_registry(redis_url, {"svc": {"tasks": {"svc.any": task()}}})
    with router.Client(reg, url=redis_url) as client, pytest.raises(router.PayloadInvalid, match="surrogate"):
        client.enqueue("svc.any", {"s": "\ud800"})
    assert raw_client(redis_url).dbsize() == 0


def test_a_payload_its_schema_refuses_is_archived_not_run(redis_url: str) -> None:
    """Another client wrote a payload the task's schema refuses: workers archive it (payload_invalid)."""
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    _inject(r, q, "wrong", b'{"v":1,"t":"svc.job","e":1,"p":{"n":"not a number"}}')
    ran: list[str] = []
    app = router.Service("svc")
    app.add("svc.job", lambda t: ran.append(t.id))
    router.Worker(reg, app, url=redis_url, settings=fast_settings()).run(burst=True)
    assert ran == []
    dead = archived(r, q)
    assert dead["wrong"]["why"] == "payload_invalid"
    assert "'not a number' is not of type 'integer'" in dead["wrong"]["err"]


@pytest.mark.parametrize(("field", "value"), [
    ("r", 1_000_000),  # retries forever
    ("r", -1),
    ("n", -3),  # a negative failure counter
    ("v", True),  # true == 1 in Python, not in the envelope schema
    ("e", 1.5),
    ("to", 0),
    ("to", 1e308),
    ("dl", "soon"),
    ("err", 42),
])
def test_envelope_fields_outside_the_schema_are_malformed(redis_url: str, field: str, value: Any) -> None:
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    doc: dict[str, Any] = {"v": 1, "t": "svc.job", "e": 1, "p": {"n": 1}, field: value}
    _inject(r, q, "odd", json.dumps(doc).encode())
    ran: list[str] = []
    app = router.Service("svc")
    app.add("svc.job", lambda t: ran.append(t.id))
    router.Worker(reg, app, url=redis_url, settings=fast_settings()).run(burst=True)
    assert ran == [] and archived(r, q)["odd"]["why"] == "malformed"
