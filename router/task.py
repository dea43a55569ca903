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


@dataclass(frozen=True)
class TaskInfo:
    """Where an enqueued task went and the state it is in."""

    id: str
    type: str
    service: str
    queue: str
    state: TaskState
