"""What a worker process holds in memory: its leased deliveries and where its loop stands.

The main loop owns these values; handler threads touch a :class:`Delivery` only under the worker's claim lock
(``started``, ``finished``), so a delivery handed back at shutdown is never also started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from router.storage.envelope import Envelope
from router.storage.keys import QueueKeys
from router.task import Task


@dataclass(eq=False)
class Delivery:
    """A leased task in this worker: waiting for a handler thread (``started`` None) or running."""

    qk: QueueKeys
    member: str
    task: Task
    envelope: Envelope
    is_async: bool = False
    #: Its lease expired often enough that it may be killing its workers: it runs with no other task leased after
    #: it (see router/worker/leases.py).
    solo: bool = False
    started: float | None = None  # monotonic start time, set by the handler thread when it claims the task
    abandoned: bool = False  # timed out or handed back: never started, or its outcome is discarded
    finished: bool = False  # the handler returned; its outcome is on its way to the main loop
    cancel_requested: bool = False  # someone cancelled the task: an error ends it as cancelled, not retried


@dataclass
class LoopState:
    """Where the main loop stands: what runs, whether it fetches, whether it is stopping."""

    running: dict[str, Delivery] = field(default_factory=dict)
    fetching: bool = True
    maybe_work: bool = True  # False once the queues came back empty, until a wake-up says otherwise
    stopping: bool = False
    stop_deadline: float = 0.0
    immediate: bool = False
    outage_since: float | None = None
