"""Finding a task by id, reading its state and result, and cancelling it: what the sync and asyncio clients share.

Pure code, no I/O: the clients run the :mod:`router.storage.protocol` calls built here and hand the replies back.
Task ids are unique per queue, so a task is found by looking in the queues it may be in (every queue of the
registry, unless the caller names a service or queue) in one round trip; one hit is the task, none is
:class:`~router.errors.TaskNotFound`, several are :class:`~router.errors.AmbiguousTaskId`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from router.errors import AmbiguousTaskId, InvalidOption, TaskNotFound
from router.registry.model import Registry
from router.storage import protocol
from router.storage.envelope import Envelope, MalformedMessage, decode
from router.storage.keys import QueueKeys, group_id_of, queue_keys
from router.storage.taskids import check_task_id
from router.task import CancelOutcome, CancelResult, TaskDetail, TaskInfo, TaskState

#: A task as callers name it: its id, or the TaskInfo its enqueue returned (which also says where it went).
TaskRef = str | TaskInfo

_STATES = {"active": TaskState.ACTIVE, "scheduled": TaskState.SCHEDULED, "retry": TaskState.RETRY,
           "archived": TaskState.ARCHIVED, "completed": TaskState.COMPLETED, "cancelled": TaskState.CANCELLED,
           "done": TaskState.COMPLETED}


def candidates(registry: Registry, task: TaskRef, service: str | None,
               queue: str | None) -> tuple[str, list[QueueKeys]]:
    """The task id and the queues to look for it in."""
    if isinstance(task, TaskInfo):
        task_id, service, queue = task.id, service or task.service, queue or task.queue
    else:
        task_id = task
    try:
        check_task_id(task_id)
    except ValueError as exc:
        raise InvalidOption("task_id", str(exc)) from None
    specs = [registry.service(service)] if service is not None else list(registry.services.values())
    found = [queue_keys(spec, q.name) for spec in specs for q in spec.queues if queue is None or q.name == queue]
    if not found:
        names = sorted({q.name for spec in specs for q in spec.queues})
        scope = f"service {service!r}" if service else "the registry"
        raise InvalidOption("queue", f"no queue {queue!r} in {scope}; use one of: {', '.join(names)}")
    return task_id, found


def lookups(task_id: str, queues: Sequence[QueueKeys], waiter: str = "") -> list[protocol.Call]:
    """One lookup call per queue."""
    return [protocol.lookup(qk, task_id, waiter) for qk in queues]


def pick(task_id: str, queues: Sequence[QueueKeys], replies: Sequence[Any]) -> tuple[QueueKeys, protocol.Lookup]:
    """The one queue that holds the task, with what the lookup found there."""
    found = [(qk, look) for qk, look in zip(queues, map(protocol.parse_lookup, replies)) if look.state != "unknown"]
    if not found:
        where = f"{queues[0].service}/{queues[0].queue}" if len(queues) == 1 else f"{len(queues)} queues"
        raise TaskNotFound(task_id, where)
    if len(found) > 1:
        raise AmbiguousTaskId(task_id, [f"{qk.service}/{qk.queue}" for qk, _ in found])
    return found[0]


def detail(qk: QueueKeys, task_id: str, look: protocol.Lookup) -> TaskDetail:
    """The :class:`TaskDetail` of what a lookup found (``look.state`` must not be ``unknown``)."""
    env: Envelope | None = None
    unreadable: str | None = None
    if look.envelope is not None:
        try:
            env = decode(look.envelope)
        except MalformedMessage as exc:
            unreadable = f"the stored message is unreadable ({exc}); the worker archives it as corrupt"
    if look.state == "pending":
        state = TaskState.AGGREGATING if env is not None and env.group else TaskState.PENDING
    else:
        state = _STATES[look.state]
    at = _ms(look.detail)
    kept = look.state == "completed"
    return TaskDetail(
        id=task_id, service=qk.service, queue=qk.queue, state=state,
        type=env.type if env else None, payload=env.payload if env else None,
        result=env.result if env and kept else None, result_kept=kept,
        error=env.last_error if env else unreadable, reason=env.reason if env else None,
        failures=env.failures if env else 0, enqueued_at_ms=env.enqueued_at_ms if env else None,
        next_run_at_ms=at if look.state in ("scheduled", "retry") else None,
        ended_at_ms=(env.completed_at_ms if env and env.completed_at_ms else None) if kept else
        (at if look.state in ("archived", "cancelled", "done") else None),
        result_expires_at_ms=at if kept else None,
        deadline_ms=env.deadline_ms if env else None, group=env.group if env else None,
    )


def wait_timeout(timeout_s: object) -> float | None:
    """``wait``'s ``timeout_s`` checked: None (no limit) or a number of seconds; zero or less looks once. NaN is
    refused: every comparison with it is false, so it would neither time out nor pause between looks."""
    if timeout_s is None:
        return None
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or math.isnan(timeout_s):
        raise InvalidOption("timeout_s", f"must be a number of seconds or None (no limit), got {timeout_s!r}")
    return None if math.isinf(timeout_s) and timeout_s > 0 else float(timeout_s)


def cancel_call(qk: QueueKeys, task_id: str, look: protocol.Lookup, now_ms: int) -> protocol.Call:
    """The cancel call for a task a lookup found (its message names its group and unique lock, if any)."""
    group_id = lock = None
    if look.envelope is not None:
        try:
            env = decode(look.envelope)
        except MalformedMessage:
            env = None
        if env is not None and env.group:
            group_id = group_id_of(env.type, env.group)
        if env is not None and env.unique:
            lock = qk.unique(env.unique)
    return protocol.cancel(qk, task_id, now_ms, protocol.ARCHIVE_MAX_SIZE, int(protocol.ARCHIVE_MAX_AGE_S * 1000),
                           group_id, lock)


def cancel_result(qk: QueueKeys, task_id: str, reply: Any) -> CancelResult:
    """What a cancel call did."""
    outcome, before = protocol.parse_cancel(reply)
    return CancelResult(task_id, qk.service, qk.queue, CancelOutcome(outcome), before)


def not_found(task: TaskRef, service: str | None, queue: str | None) -> CancelResult:
    """The cancel result for a task found in none of the queues searched."""
    if isinstance(task, TaskInfo):
        return CancelResult(task.id, task.service, task.queue, CancelOutcome.UNKNOWN, "unknown")
    return CancelResult(task, service or "", queue or "", CancelOutcome.UNKNOWN, "unknown")


def _ms(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def is_end_of(message: Mapping[str, Any], task_id: str) -> bool:
    """Whether a pub/sub message on a queue's waiters channel announces the end of ``task_id``."""
    data = message.get("data")
    return isinstance(data, bytes) and data.decode("utf-8", "surrogateescape") == task_id


def seconds_left(until: float | None) -> float | None:
    """Seconds left until the monotonic time ``until`` (None: no limit)."""
    return None if until is None else until - time.monotonic()
