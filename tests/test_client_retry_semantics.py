"""After a retried send, a conflict on an id the client generated is its own earlier attempt: success.
A conflict on an id the caller chose stays a TaskIdConflict (it may be someone else's task)."""

from __future__ import annotations

import pytest
from enginekit import build_registry, task

import router
from router.producer.batch import finish, prepare
from router.producer.guard import Guard
from router.storage import protocol

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


def _conflict_replies(batch: object) -> list[list[int | bytes]]:
    """The enqueue script's replies, as Redis returns them: a (code, detail) pair per item."""
    return [[protocol.ENQUEUE_CONFLICT, b""] * len(idx) for idx in batch.slots]  # type: ignore[attr-defined]


def test_conflict_after_retry_is_success_only_for_generated_ids() -> None:
    guard = Guard(build_registry("redis://127.0.0.1:1/0", SERVICES))
    generated = prepare(guard, [("svc.job", {})])
    assert len(finish(generated, _conflict_replies(generated), retried=True)) == 1
    with pytest.raises(router.TaskIdConflict):
        finish(generated, _conflict_replies(generated), retried=False)
    chosen = prepare(guard, [("svc.job", {}, {"task_id": "order-7"})])
    with pytest.raises(router.TaskIdConflict) as err:
        finish(chosen, _conflict_replies(chosen), retried=True)
    assert err.value.task_id == "order-7"
