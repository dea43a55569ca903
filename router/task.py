"""What a handler receives (:class:`Task`) and what an enqueue returns (:class:`TaskInfo`)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TaskState(str, Enum):
    """The state machine of a task; each task id is in exactly one state's structure at a time.

    This is the one list of states: the key schema names one key per state (``Q:<state>``), and status output
    lists them in this order.
    """

    PENDING = "pending"
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    ARCHIVED = "archived"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    AGGREGATING = "aggregating"


@dataclass(frozen=True)
class Task:
    """One delivery of a task to a handler.

    ``attempt`` starts at 1 and counts deliveries that ended in failure or a lost lease, plus this one.
    ``timeout_s`` is what the handler may take (its task's timeout, shortened to reach no further than its
    ``deadline_ms``). ``cancelled`` is set when someone cancels the task while it runs: a sync handler that can
    stop early checks it (``task.cancelled.is_set()``); an ``async def`` handler is cancelled outright.
    """

    id: str
    type: str
    payload: Mapping[str, Any]
    service: str
    queue: str
    attempt: int
    max_retry: int
    timeout_s: float
    enqueued_at_ms: int
    deadline_ms: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    #: The W3C traceparent the producer sent with the task (None when it traced nothing).
    traceparent: str | None = None


@dataclass(frozen=True)
class TaskInfo:
    """Where an enqueued task went and the state it is in."""

    id: str
    type: str
    service: str
    queue: str
    state: TaskState


#: The states a task can end in: ``wait`` returns once the task is in one of them.
FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.ARCHIVED, TaskState.CANCELLED})


@dataclass(frozen=True)
class TaskDetail:
    """A task as stored now (``Client.get_task``, ``Client.wait``).

    ``result`` is the handler's return value when the task type keeps results (``retention_s``) and it completed;
    ``result_kept`` says whether it was (a completed task whose result is not kept is remembered only by id, for
    the dedupe window, with no payload). ``error`` is the last failure, ``reason`` why it was archived or cancelled.
    Times are ms since the epoch: ``next_run_at_ms`` of a scheduled or retrying task, ``ended_at_ms`` of an ended
    one, ``result_expires_at_ms`` of a kept result.
    """

    id: str
    service: str
    queue: str
    state: TaskState
    type: str | None = None
    payload: Mapping[str, Any] | None = None
    result: Any = None
    result_kept: bool = False
    error: str | None = None
    reason: str | None = None
    failures: int = 0
    enqueued_at_ms: int | None = None
    next_run_at_ms: int | None = None
    ended_at_ms: int | None = None
    result_expires_at_ms: int | None = None
    deadline_ms: int | None = None
    group: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the task has ended (completed, archived or cancelled)."""
        return self.state in FINAL_STATES


class CancelOutcome(str, Enum):
    """What ``Client.cancel`` did."""

    #: It had not started (pending, scheduled, retrying or aggregating): it is cancelled now and will not run.
    CANCELLED = "cancelled"
    #: It is running: its worker was asked to stop it (an ``async def`` handler is cancelled, a sync one sees
    #: ``task.cancelled``); it ends as cancelled unless it completes first.
    REQUESTED = "requested"
    #: It was cancelled before.
    ALREADY_CANCELLED = "already_cancelled"
    #: It had already ended (completed or archived): nothing changed.
    FINISHED = "finished"
    #: No such task in the queues searched (never enqueued, or ended so long ago it was forgotten).
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CancelResult:
    """The outcome of a cancel, and the state the task was in when it was asked."""

    id: str
    service: str
    queue: str
    outcome: CancelOutcome
    state_before: str
