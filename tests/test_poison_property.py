"""Property: whatever bytes or JSON sit in a queue's structures, a burst worker survives, every valid task around
the garbage runs exactly once, and every bad entry ends archived with a reason, never dropped silently and never
left in pending or active (issue 9, "a poison-message property test").

Hypothesis writes into the message hash, pending, active, retry, scheduled, the lost-lease counters and the token
counter: arbitrary bytes, arbitrary JSON (lone surrogates, huge and non-finite numbers, deep nesting), and
envelopes with a wrong type in every field. Examples per run: ``ROUTER_POISON_EXAMPLES`` (default 500, what CI
runs; the nightly profile in docs/testing.md runs 20,000).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis
from enginekit import build_registry, fast_settings, qk, task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import router
from router.ops.localredis import RedisServer

EXAMPLES = int(os.environ.get("ROUTER_POISON_EXAMPLES", "500"))
SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {
    "svc.job": task(schema={"type": "object", "properties": {"n": {"type": "integer"}}}),
}}}

# -- what garbage looks like ----------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["\ud800", "x\udfffy", "\ud83d\ude00"]),
)
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)


def _text_of(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


_special = st.sampled_from([
    b'{"v":1,"t":"svc.job","e":1,"p":{"n":1e999}}',
    b'{"v":1,"t":"svc.job","e":1,"p":{"n":NaN}}',
    b'{"v":1,"t":"svc.job","e":1,"p":{"s":"\\ud800"}}',
    b'{"v":1,"t":"svc.job","e":1,"p":' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"v":1,"t":"svc.job","e":1,"p":{"n":"not an int"}}',
    b'{"v":1,"t":"nobody.x","e":1,"p":{}}',
    b"\xff\xfe\x00garbage", b"", b"null", b"[]",
])
_envelope_fields = st.fixed_dictionaries(
    {"v": st.one_of(st.just(1), _json), "t": st.one_of(st.just("svc.job"), _json),
     "e": st.one_of(st.just(1), _json), "p": st.one_of(st.just({}), _json)},
    optional={k: _json for k in ("r", "to", "dl", "n", "err", "why", "res", "by")},
)
_message = st.one_of(st.binary(max_size=60), _json.map(_text_of), _envelope_fields.map(_text_of), _special)
_suffix = st.one_of(st.binary(min_size=0, max_size=8), st.text(max_size=8).map(lambda t: t.encode("utf-8")))
_score = st.one_of(st.integers(min_value=0, max_value=1_000_000), st.just(10**15))  # long past, or far future

#: One garbage entry: (structure, its detail). Ids are made unique per example by the test.
_entry = st.one_of(
    st.tuples(st.just("msg+pending"), _message),  # a message and its id pushed on pending
    st.tuples(st.just("pending"), st.just(b"")),  # an id with no message
    st.tuples(st.just("orphan"), _message),  # a message nothing references
    st.tuples(st.just("active"), st.tuples(st.booleans(), _score)),  # (with a ":<token>" suffix?, lease deadline)
    st.tuples(st.just("retry"), st.tuples(st.booleans(), _message)),  # (has a message?, message), due now
    st.tuples(st.just("scheduled"), st.tuples(st.booleans(), _message)),
    st.tuples(st.just("lost"), _message),  # a lost-lease counter for an id nothing else references
)


@pytest.mark.timeout(max(120, EXAMPLES // 4))  # about 30 ms an example: a nightly run needs longer than 120 s
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(entries=st.lists(st.tuples(_entry, _suffix), min_size=1, max_size=8), seq=st.one_of(st.none(), _message),
       valid_before=st.integers(0, 2), valid_after=st.integers(0, 2))
def test_garbage_in_every_structure_ends_archived_and_valid_tasks_run_once(
    redis_server: RedisServer, entries: list[tuple[tuple[str, Any], bytes]], seq: bytes | None,
    valid_before: int, valid_after: int,
) -> None:
    url = redis_server.url
    r = redis.Redis.from_url(url)
    r.flushall()
    reg = build_registry(url, SERVICES)
    q = qk(reg, "svc")
    ran: list[str] = []
    app = router.Service("svc")
    app.add("svc.job", lambda t: ran.append(t.id))
    with router.Client(reg, url=url) as client:
        valid = [client.enqueue("svc.job", {"n": i}).id for i in range(valid_before)]
        expected_archived: set[bytes] = set()
        corrupt_members: set[bytes] = set()
        for i, ((kind, detail), suffix) in enumerate(entries):
            gid = b"g%d-" % i + suffix
            if kind in ("msg+pending", "pending"):
                if kind == "msg+pending":
                    r.hset(q.messages, gid, detail)
                r.lpush(q.pending, gid)
                expected_archived.add(gid)
            elif kind == "orphan":
                r.hset(q.messages, gid, detail)
                expected_archived.add(gid)
            elif kind == "active":
                with_token, score = detail
                member = gid + b":7" if with_token else gid + b"~"
                r.zadd(q.active, {member: score})
                if with_token and score < 10**15:
                    expected_archived.add(gid)  # its lease expired: recovered, then archived as undeliverable
                else:
                    corrupt_members.add(member)
            elif kind in ("retry", "scheduled"):
                has_message, message = detail
                if has_message:
                    r.hset(q.messages, gid, message)
                r.zadd(q.retry if kind == "retry" else q.scheduled, {gid: 1})
                expected_archived.add(gid)
            else:
                r.hset(q.lost, gid, detail)
        if seq is not None:
            r.set(q.seq, seq)
        valid += [client.enqueue("svc.job", {"n": i}).id for i in range(valid_after)]
    worker = router.Worker(reg, app, url=url, settings=fast_settings(concurrency=2, lease_s=2))
    worker.run(burst=True)  # never raises: that is the first property

    assert len(ran) == len(set(ran)), "no task runs twice"
    assert set(valid) <= set(ran), "every valid task runs"
    assert r.llen(q.pending) == 0 and r.zcard(q.active) == 0 and r.llen(q.quarantine) == 0
    archived = set(r.zrange(q.archived, 0, -1))
    # An injected entry that happens to be a valid task (the generator can write one) runs instead.
    missing = expected_archived - archived - {i.encode("utf-8", "surrogateescape") for i in ran}
    assert not missing, f"bad entries neither archived nor run: {missing!r}"
    for task_id in archived:  # ...each with a reason
        doc = json.loads(r.hget(q.messages, task_id))
        assert doc["why"], doc
    recorded = {json.loads(r.hget(q.messages, a))["p"]["entry"] for a in archived if a.startswith(b"corrupt-")}
    assert {_as_recorded(m) for m in corrupt_members} <= recorded, "every corrupt active member is archived"
    stray = set(r.hkeys(q.messages)) - archived - set(r.zrange(q.completed, 0, -1)) - set(r.zrange(q.scheduled, 0, -1))
    assert not stray, f"messages left that nothing references: {stray!r}"
    assert r.hlen(q.lost) == 0
    r.close()


def _as_recorded(member: bytes) -> str:
    """A member as the archive records it: bytes that are not UTF-8 become '?' (the envelope is valid UTF-8)."""
    return member.decode("utf-8", "surrogateescape").encode("utf-8", "replace").decode("utf-8")
