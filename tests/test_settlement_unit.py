"""Settlements without Redis: handler outcomes become ack, retry and archive calls, and replies become counters.

The calls are inspected as data (script, keys, arguments) and the replies the worker would hand back are built
here, so every rule of router/worker/settlement.py is pinned without a server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from enginekit import PLACEHOLDER_URL, FakeClock, build_registry, task

from router.errors import SkipRetry
from router.registry.model import Registry
from router.storage import protocol
from router.storage.envelope import Envelope, decode
from router.storage.keys import QueueKeys
from router.storage.taskids import member
from router.task import Task
from router.worker.settlement import ArchivePolicy, Settlements
from router.worker.state import Delivery

NOW_S = 1_700_000_000.0
NOW_MS = int(NOW_S * 1000)
SERVICES = {
    "shop": {
        "queues": {"default": 1, "critical": 2},
        "tasks": {
            "shop.order": task("default", max_retry=2),
            "shop.keep": task("critical", retention_s=60),
        },
    }
}
POLICY = ArchivePolicy(max_size=50, max_age_s=3600.0)
TOMBSTONES = protocol.Tombstones(window_ms=1234, cap=99)


@pytest.fixture
def registry() -> Registry:
    return build_registry(PLACEHOLDER_URL, SERVICES)


class RecordingBackoff:
    """A deterministic backoff: 10 s per failure so far, remembering what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []

    def __call__(self, failures: int, error: BaseException) -> float:
        self.asked.append((failures, str(error)))
        return 10.0 * failures


def settlements(registry: Registry, backoff: RecordingBackoff | None = None) -> Settlements:
    return Settlements(registry, "shop/w-1", FakeClock(NOW_S), backoff or RecordingBackoff(), POLICY, TOMBSTONES)


def delivery(registry: Registry, task_type: str = "shop.order", *, attempt: int = 1, token: int = 7,
             task_id: str = "t1", failures: int = 0) -> Delivery:
    spec = registry.tasks[task_type]
    qk = QueueKeys.for_queue("shop", "shop", spec.queue)
    env = Envelope(type=task_type, payload={"n": 1}, enqueued_at_ms=NOW_MS - 5000, failures=failures)
    t = Task(task_id, task_type, {"n": 1}, "shop", spec.queue, attempt, spec.max_retry, spec.timeout_s, NOW_MS - 5000)
    return Delivery(qk, member(task_id, token), t, env)


def test_complete_without_retention_is_a_bare_ack(registry: Registry) -> None:
    s = settlements(registry)
    run = delivery(registry)
    s.complete(run, {"ignored": True})
    [call] = s.calls()
    assert call.script is protocol.ACK
    assert call.keys == (run.qk.active, run.qk.messages, run.qk.lost, run.qk.completed, run.qk.stats, run.qk.done,
                         run.qk.leased, run.qk.waiters, run.qk.cancel_requests, run.qk.minutes(NOW_MS // 3_600_000))
    # now, tombstone window, tombstone cap, then (member, retain-until 0: delete now, no envelope)
    assert call.args == (NOW_MS, 1234, 99, "t1:7", 0, "", 0)  # ..., unique lock index 0: none


def test_complete_with_retention_keeps_result_and_completer(registry: Registry) -> None:
    s = settlements(registry)
    run = delivery(registry, "shop.keep")
    s.complete(run, {"total": 3})
    [call] = s.calls()
    member, keep_until, env, _ = call.args[3:]
    assert (member, keep_until) == ("t1:7", NOW_MS + 60_000)
    stored = decode(env)
    assert (stored.result, stored.completed_by, stored.payload) == ({"total": 3}, "shop/w-1", {"n": 1})


def test_unencodable_result_is_kept_as_its_repr(registry: Registry) -> None:
    s = settlements(registry)
    s.complete(delivery(registry, "shop.keep"), {1, 2})
    env = decode(s.calls()[0].args[5])
    assert env.result == "{1, 2}"


def test_completions_are_one_ack_call_per_queue(registry: Registry) -> None:
    s = settlements(registry)
    s.complete(delivery(registry, task_id="a"), None)
    s.complete(delivery(registry, "shop.keep", task_id="b"), None)
    s.complete(delivery(registry, task_id="c"), None)
    calls = s.calls()
    assert [c.script for c in calls] == [protocol.ACK, protocol.ACK]
    by_queue = {c.keys[0]: [c.args[i] for i in range(3, len(c.args), 4)] for c in calls}
    assert by_queue == {"shop:{shop:default}:active": ["a:7", "c:7"], "shop:{shop:critical}:active": ["b:7"]}


def test_failure_within_max_retry_is_a_retry_with_backoff(registry: Registry) -> None:
    backoff = RecordingBackoff()
    s = settlements(registry, backoff)
    run = delivery(registry, attempt=2)  # max_retry 2: the second failure still retries
    s.fail(run, RuntimeError("boom"))
    [call] = s.calls()
    assert call.script is protocol.RETRY
    assert backoff.asked == [(2, "boom")]
    member, retry_at, env, now_ms = call.args
    assert (member, retry_at, now_ms) == ("t1:7", NOW_MS + 20_000, NOW_MS)
    stored = decode(env)
    assert (stored.failures, stored.last_error) == (2, "RuntimeError: boom")
    assert call.keys == (run.qk.active, run.qk.retry, run.qk.messages, run.qk.lost, run.qk.stats, run.qk.leased,
                         run.qk.minutes(NOW_MS // 3_600_000))


@pytest.mark.parametrize(("attempt", "error", "reason"), [
    (1, SkipRetry("bad input"), "skip_retry"),
    (3, RuntimeError("still down"), "max_retry_exceeded"),
])
def test_skip_retry_and_exhausted_retries_archive(
    registry: Registry, attempt: int, error: BaseException, reason: str
) -> None:
    backoff = RecordingBackoff()
    s = settlements(registry, backoff)
    s.fail(delivery(registry, attempt=attempt), error)
    [call] = s.calls()
    assert call.script is protocol.ARCHIVE
    member, now_ms, env, max_size, older_than_ms = call.args
    assert (member, now_ms, max_size, older_than_ms) == ("t1:7", NOW_MS, 50, NOW_MS - 3_600_000)
    stored = decode(env)
    assert (stored.reason, stored.failures) == (reason, attempt)
    assert stored.last_error == f"{type(error).__name__}: {error}"
    assert backoff.asked == [], "an archived failure asks for no retry delay"


def test_long_errors_are_bounded(registry: Registry) -> None:
    s = settlements(registry)
    s.fail(delivery(registry), RuntimeError("x" * 5000))
    stored = decode(s.calls()[0].args[2])
    assert stored.last_error is not None and len(stored.last_error) == 2000


def test_archive_raw_keeps_the_undecodable_bytes(registry: Registry) -> None:
    s = settlements(registry)
    qk = QueueKeys.for_queue("shop", "shop", "default")
    raw = b'{"v": 1, "t": \xff\xfe'
    s.archive_raw(qk, protocol.RawDelivery("junk", 3, raw, 0), "malformed", "not JSON")
    [call] = s.calls()
    member, _, env, _, _ = call.args
    assert member == "junk:3"
    stored = json.loads(env)
    assert stored["t"] == "<undecodable>" and stored["why"] == "malformed" and stored["err"] == "not JSON"
    assert stored["p"] == {"raw": raw.decode("utf-8", "backslashreplace"), "raw_bytes": len(raw)}
    assert "\\xff\\xfe" in stored["p"]["raw"]


def test_calls_put_retries_and_archives_before_acks_in_the_order_they_came(registry: Registry) -> None:
    s = settlements(registry)
    s.complete(delivery(registry, task_id="ok1"), None)
    s.fail(delivery(registry, task_id="r1"), RuntimeError("again"))
    s.fail(delivery(registry, task_id="a1"), SkipRetry("no"))
    s.complete(delivery(registry, task_id="ok2"), None)
    calls = s.calls()
    assert [(c.script.name, c.args[0] if c.script is not protocol.ACK else c.args[3::4]) for c in calls] == [
        ("retry", "r1:7"), ("archive", "a1:7"), ("ack", ("ok1:7", "ok2:7"))]
    assert s.calls() == calls, "outcomes stay queued until a round trip succeeds"


def test_apply_counts_what_landed_and_what_was_stale(registry: Registry) -> None:
    s = settlements(registry)
    s.fail(delivery(registry, task_id="r1"), RuntimeError("again"))
    s.fail(delivery(registry, task_id="r2"), RuntimeError("again"))
    s.fail(delivery(registry, task_id="a1"), SkipRetry("no"))
    for tid in ("ok1", "ok2", "ok3"):
        s.complete(delivery(registry, task_id=tid), None)
    calls = s.calls()
    # r1 landed, r2 lost its lease, a1 landed; the ack refused ok2 as stale.
    replies: list[Any] = [1, 0, 1, [b"ok2:7"]]
    s.apply(calls, replies)
    assert s.stats == {"processed": 2, "failed": 2, "retried": 1, "archived": 1, "cancelled": 0, "stale": 2,
                       "requeued": 0}
    assert s.calls() == [], "applied outcomes are forgotten"
    s.apply([], [])
    assert s.stats["processed"] == 2


def test_a_failed_round_trip_keeps_everything_for_the_next(registry: Registry) -> None:
    s = settlements(registry)
    s.complete(delivery(registry, task_id="ok1"), None)
    first = s.calls()
    # The worker's round trip raised: apply() was never called; the next calls() still holds the ack.
    s.complete(delivery(registry, task_id="ok2"), None)
    [again] = s.calls()
    assert again.args[3::4] == ("ok1:7", "ok2:7") and first[0].args[3::4] == ("ok1:7",)
    s.apply([again], [[]])
    assert s.stats["processed"] == 2
