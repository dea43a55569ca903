"""What the Inspector returns: frozen values for Python callers, each with ``to_json()`` giving the JSON shape that
leaves the process (the CLI's ``--format json``, the exporter, later the dashboard).

The JSON shapes are TypedDicts here and JSON Schemas in ``router/schemas/`` (``schemas/`` links to them); a test
keeps the two equal. Times are milliseconds since the epoch (``*_ms``), durations seconds (``*_s``), so a web page
can render them in any zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from router.task import CancelResult, TaskDetail


class WindowJSON(TypedDict):
    """Deliveries that ended in one time window."""

    processed: int
    failed: int
    seconds: int


class QueueJSON(TypedDict):
    """One queue, as ``router queues --format json`` prints each item."""

    service: str
    queue: str
    paused: bool
    paused_since_ms: int | None
    sizes: dict[str, int]
    latency_s: float | None
    processed: int
    failed: int
    last_minute: WindowJSON
    last_hour: WindowJSON
    live_workers: int


@dataclass(frozen=True)
class Window:
    """Deliveries processed (completed) and failed (retried or archived) in the last ``seconds``, read from the
    per-minute counters (whole minutes: the current, unfinished minute is not counted)."""

    processed: int
    failed: int
    seconds: int

    @property
    def processed_per_s(self) -> float:
        return self.processed / self.seconds

    @property
    def failed_per_s(self) -> float:
        return self.failed / self.seconds

    def to_json(self) -> WindowJSON:
        return {"processed": self.processed, "failed": self.failed, "seconds": self.seconds}


@dataclass(frozen=True)
class QueueInfo:
    """One queue of one service: its tasks by state, whether it is paused, its latency and its throughput."""

    service: str
    queue: str
    paused: bool
    #: When the queue was paused (ms), None while it is not.
    paused_since_ms: int | None
    #: Tasks in each state.
    sizes: dict[str, int]
    #: Age of the oldest pending task (the next to run), since it was enqueued; None when nothing is pending.
    #: A retried or delayed task counts from its original enqueue, so it reads older than its wait in pending.
    latency_s: float | None
    #: Deliveries completed, and failed (retried or archived), since the queue was created (Q:stats).
    processed: int
    failed: int
    last_minute: Window
    last_hour: Window
    #: Live workers (by heartbeat) that read this queue.
    live_workers: int

    def to_json(self) -> QueueJSON:
        return {
            "service": self.service, "queue": self.queue, "paused": self.paused,
            "paused_since_ms": self.paused_since_ms, "sizes": dict(self.sizes), "latency_s": self.latency_s,
            "processed": self.processed, "failed": self.failed, "last_minute": self.last_minute.to_json(),
            "last_hour": self.last_hour.to_json(), "live_workers": self.live_workers,
        }


class MinuteJSON(TypedDict):
    minute_ms: int
    processed: int
    failed: int


@dataclass(frozen=True)
class Minute:
    """One minute of a queue's history: deliveries completed and failed in the minute starting at ``minute_ms``."""

    minute_ms: int
    processed: int
    failed: int

    def to_json(self) -> MinuteJSON:
        return {"minute_ms": self.minute_ms, "processed": self.processed, "failed": self.failed}


class TaskJSON(TypedDict):
    """One task of a listing."""

    id: str
    service: str
    queue: str
    state: str
    type: str | None
    payload: Any
    enqueued_at_ms: int | None
    failures: int
    last_error: str | None
    reason: str | None
    at_ms: int | None
    problem: str | None


@dataclass(frozen=True)
class TaskSummary:
    """One task as a listing shows it, decoded from its stored envelope.

    ``at_ms`` depends on the state: when it runs (scheduled, retry), when it was archived (archived), until when
    its result is kept (completed), its lease deadline (active); None for pending. ``problem`` says why the
    envelope could not be decoded (the other fields are then None): a worker archives such a task when it meets it.
    """

    id: str
    service: str
    queue: str
    state: str
    type: str | None
    payload: Any
    enqueued_at_ms: int | None
    failures: int
    last_error: str | None
    reason: str | None
    at_ms: int | None
    problem: str | None = None

    def to_json(self) -> TaskJSON:
        return {
            "id": self.id, "service": self.service, "queue": self.queue, "state": self.state, "type": self.type,
            "payload": self.payload, "enqueued_at_ms": self.enqueued_at_ms, "failures": self.failures,
            "last_error": self.last_error, "reason": self.reason, "at_ms": self.at_ms, "problem": self.problem,
        }


class TaskPageJSON(TypedDict):
    """A page of tasks, as ``router tasks --format json`` prints it."""

    service: str
    queue: str
    state: str
    total: int
    tasks: list[TaskJSON]
    next_cursor: str | None


@dataclass(frozen=True)
class TaskPage:
    """One page of the tasks in a state; pass ``next_cursor`` back for the next (None: this was the last)."""

    service: str
    queue: str
    state: str
    #: Tasks in the state when the page was read.
    total: int
    tasks: list[TaskSummary]
    next_cursor: str | None

    def to_json(self) -> TaskPageJSON:
        return {"service": self.service, "queue": self.queue, "state": self.state, "total": self.total,
                "tasks": [t.to_json() for t in self.tasks], "next_cursor": self.next_cursor}


class RunningJSON(TypedDict):
    id: str
    type: str
    queue: str
    started_ms: int


class WorkerJSON(TypedDict):
    """One live worker process, as ``router workers --format json`` prints each item."""

    id: str
    service: str
    host: str
    pid: int
    queues: list[str]
    handlers: list[str]
    concurrency: int
    active: int
    running: list[RunningJSON]
    started_ms: int | None
    at_ms: int | None


@dataclass(frozen=True)
class RunningTask:
    """A task a worker is running: id, type, queue and when its handler started (ms)."""

    id: str
    type: str
    queue: str
    started_ms: int

    def to_json(self) -> RunningJSON:
        return {"id": self.id, "type": self.type, "queue": self.queue, "started_ms": self.started_ms}


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker process, from its heartbeat: what it reads and handles, and what it runs now."""

    id: str
    service: str
    host: str
    pid: int
    queues: list[str]
    handlers: list[str]
    concurrency: int
    #: Deliveries it holds (running or leased ahead).
    active: int
    #: Tasks whose handler runs now (at most 100 are listed).
    running: list[RunningTask] = field(default_factory=list)
    started_ms: int | None = None
    #: When it last published its heartbeat.
    at_ms: int | None = None

    def to_json(self) -> WorkerJSON:
        return {"id": self.id, "service": self.service, "host": self.host, "pid": self.pid,
                "queues": list(self.queues), "handlers": list(self.handlers), "concurrency": self.concurrency,
                "active": self.active, "running": [r.to_json() for r in self.running],
                "started_ms": self.started_ms, "at_ms": self.at_ms}


class ActionJSON(TypedDict):
    """What an operator's action did, as ``router run|delete|pause|unpause --format json`` prints it."""

    action: str
    service: str
    queue: str
    state: str | None
    done: int
    total: int
    batches: int
    tasks: dict[str, str | None]


@dataclass(frozen=True)
class ActionResult:
    """The outcome of an action: ``done`` of ``total`` tasks acted on (in ``batches`` calls). For actions on named
    tasks, ``tasks`` maps each id to the state it was taken from, or None when it was not in a state the action
    applies to (unknown, finished, running, ...). Pause and unpause report 1 done when they changed the queue."""

    action: str
    service: str
    queue: str
    state: str | None
    done: int
    total: int
    batches: int = 1
    tasks: dict[str, str | None] = field(default_factory=dict)

    @property
    def missed(self) -> list[str]:
        """Named tasks the action could not apply to."""
        return [task_id for task_id, state in self.tasks.items() if state is None]

    def to_json(self) -> ActionJSON:
        return {"action": self.action, "service": self.service, "queue": self.queue, "state": self.state,
                "done": self.done, "total": self.total, "batches": self.batches, "tasks": dict(self.tasks)}


@dataclass(frozen=True)
class Progress:
    """How far a bulk action has come: ``done`` of about ``total`` tasks after ``batches`` calls."""

    done: int
    total: int
    batches: int


@dataclass(frozen=True)
class QueueStatus:
    """How many tasks one queue of one service holds in each state, and who reads it."""

    service: str
    queue: str
    paused: bool
    sizes: dict[str, int]
    #: Live workers (by heartbeat) that read this queue.
    live_workers: int = 0
    #: Tasks are pending and no live worker reads the queue: they wait until one starts ("backlog, no worker").
    backlog_no_worker: bool = False


@dataclass(frozen=True)
class SchedulerStatus:
    """One live cron scheduler, merged from its heartbeats under every service whose entries it fires."""

    id: str
    host: str
    pid: int
    services: list[str]
    entries: list[str]
    started_ms: int
    at_ms: int
    quiet: bool
    stats: dict[str, int]


@dataclass(frozen=True)
class CronEntryStatus:
    """One cron entry of the registry: where it fires, when it last fired and when it fires next."""

    name: str
    task: str
    service: str
    queue: str
    spec: str
    timezone: str
    catch_up: str
    #: The latest fire claimed by any scheduler replica (ms), from its claim in Redis; None if none is remembered.
    last_fire_ms: int | None
    #: The next slot after now (ms), computed from the registry; None if the spec never fires again.
    next_fire_ms: int | None
    #: Live schedulers that fire this entry (0: nobody will fire it).
    schedulers: int


class TaskDetailJSON(TypedDict):
    """One task, as ``router task --format json`` prints it (the fields of :class:`router.TaskDetail`)."""

    id: str
    service: str
    queue: str
    state: str
    finished: bool
    type: str | None
    payload: Any
    result: Any
    result_kept: bool
    error: str | None
    reason: str | None
    failures: int
    enqueued_at_ms: int | None
    next_run_at_ms: int | None
    ended_at_ms: int | None
    result_expires_at_ms: int | None
    deadline_ms: int | None
    group: str | None


def task_json(d: TaskDetail) -> TaskDetailJSON:
    """The JSON shape of a task's detail."""
    return {"id": d.id, "service": d.service, "queue": d.queue, "state": d.state.value, "finished": d.finished,
            "type": d.type, "payload": dict(d.payload) if d.payload is not None else None, "result": d.result,
            "result_kept": d.result_kept, "error": d.error, "reason": d.reason, "failures": d.failures,
            "enqueued_at_ms": d.enqueued_at_ms, "next_run_at_ms": d.next_run_at_ms, "ended_at_ms": d.ended_at_ms,
            "result_expires_at_ms": d.result_expires_at_ms, "deadline_ms": d.deadline_ms, "group": d.group}


class CancelJSON(TypedDict):
    """What cancelling one task did, as ``router cancel --format json`` prints each item."""

    id: str
    service: str
    queue: str
    outcome: str
    state_before: str


def cancel_json(r: CancelResult) -> CancelJSON:
    """The JSON shape of a cancel's outcome."""
    return {"id": r.id, "service": r.service, "queue": r.queue, "outcome": r.outcome.value,
            "state_before": r.state_before}
