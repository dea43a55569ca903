"""The operators' actions of the Inspector, each one Lua transition per call and bounded in work: pause and unpause a
queue, run (archived, retrying or scheduled tasks made pending now) and delete tasks, by id or all of a state in
batches, and one task's detail and cancel (the client's, on the Inspector's connection).

:class:`Actions` is a base of :class:`~router.ops.inspector.Inspector`; it needs the registry, a broker and a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from router.clock import Clock, to_ms
from router.errors import TaskNotFound, UnknownQueue
from router.ops.views import ActionResult, Progress
from router.producer import lifecycle
from router.registry.model import Registry
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.envelope import MalformedMessage, decode, encode
from router.storage.keys import QueueKeys, queue_keys
from router.task import CancelResult, TaskDetail, TaskState

#: Tasks per call of a bulk action ("run all", "delete all"): each call's work in Redis is bounded by it.
BATCH = 1000

ProgressCallback = Callable[[Progress], None]


def state_key(qk: QueueKeys, state: TaskState) -> tuple[str, str]:
    """(kind for page.lua, key) of the structure holding the tasks in ``state``."""
    if state is TaskState.PENDING:
        return "l", qk.pending
    if state is TaskState.ACTIVE:
        return "a", qk.active
    if state is TaskState.AGGREGATING:
        raise ValueError("aggregating tasks wait in one list per group and cannot be paged; their count is in "
                         "the queue's sizes")
    return "z", qk.of_state(state)


class Actions:
    """What an operator can do to a fleet's queues and tasks."""

    registry: Registry
    _broker: SyncBroker
    _clock: Clock

    def queue_keys(self, service: str, queue: str) -> QueueKeys:
        """The keys of ``queue`` of ``service``; UnknownService or UnknownQueue when the registry lacks them."""
        spec = self.registry.service(service)
        if spec.queue(queue) is None:
            raise UnknownQueue(service, queue, [q.name for q in spec.queues])
        return queue_keys(spec, queue)

    # -- one task -----------------------------------------------------------------------------------------------------
    def task(self, task_id: str, service: str | None = None, queue: str | None = None) -> TaskDetail:
        """One task's state, payload, last error and kept result, looked up in ``service``'s queues (or ``queue``
        of it), else in every queue; TaskNotFound or AmbiguousTaskId when it is in none or several."""
        qk, look = self._find(task_id, service, queue)
        return lifecycle.detail(qk, task_id, look)

    def cancel(self, task_id: str, service: str | None = None, queue: str | None = None) -> CancelResult:
        """Cancel one task as ``Client.cancel`` does (an id found nowhere is the ``UNKNOWN`` outcome)."""
        try:
            qk, look = self._find(task_id, service, queue)
        except TaskNotFound:
            return lifecycle.not_found(task_id, service, queue)
        call = lifecycle.cancel_call(qk, task_id, look, to_ms(self._clock()))
        return lifecycle.cancel_result(qk, task_id, self._broker.run(call))

    def _find(self, task_id: str, service: str | None, queue: str | None) -> tuple[QueueKeys, protocol.Lookup]:
        if service is not None and queue is not None:
            self.queue_keys(service, queue)  # UnknownService / UnknownQueue, as every action says it
        elif service is not None:
            self.registry.service(service)
        task_id, queues = lifecycle.candidates(self.registry, task_id, service, queue)
        return lifecycle.pick(task_id, queues, self._broker.run_many(lifecycle.lookups(task_id, queues)))

    # -- queues and tasks in bulk -----------------------------------------------------------------------------------
    def pause(self, service: str, queue: str) -> ActionResult:
        """Pause a queue: workers lease nothing from it (running tasks finish, producers still enqueue) until
        :meth:`unpause`. Persisted in Redis; ``done`` is 0 when it was already paused."""
        qk = self.queue_keys(service, queue)
        changed = int(self._broker.run(protocol.pause(qk, to_ms(self._clock()))))
        return ActionResult("pause", service, queue, None, changed, 1)

    def unpause(self, service: str, queue: str) -> ActionResult:
        """Unpause a queue; an idle worker wakes at once. ``done`` is 0 when it was not paused."""
        qk = self.queue_keys(service, queue)
        changed = int(self._broker.run(protocol.unpause(qk)))
        return ActionResult("unpause", service, queue, None, changed, 1)

    def run(self, service: str, queue: str, task_ids: Sequence[str], state: str = "*") -> ActionResult:
        """Make the named tasks pending now if they are archived, retrying or scheduled (or only those in
        ``state``). An archived task gets a fresh set of retries. ``tasks`` says where each came from (None: it was
        in no such state)."""
        qk = self.queue_keys(service, queue)
        ids = list(dict.fromkeys(task_ids))
        envelopes = self._broker.messages(qk, ids) if state in ("*", "archived") else [None] * len(ids)
        items = [(i, _fresh_retries(env) if env is not None else "") for i, env in zip(ids, envelopes)]
        # Only an archived task's envelope is replaced: the script ignores the others'.
        moved = protocol.parse_run(self._broker.run(protocol.run(qk, state, items))) if items else []
        tasks = {i: (m or None) for i, m in zip(ids, moved)}
        return ActionResult("run", service, queue, state, sum(1 for m in moved if m), len(ids), 1, tasks)

    def run_all(self, service: str, queue: str, state: str, *, batch: int = BATCH,
                progress: ProgressCallback | None = None) -> ActionResult:
        """Make every task in ``state`` (archived, retry or scheduled) pending, ``batch`` per call, calling
        ``progress`` after each. Tasks that join the state meanwhile may be left for another run."""
        done = Progress(0, 0, 0)
        for done in self.run_all_steps(service, queue, state, batch=batch):
            if progress is not None:
                progress(done)
        return ActionResult("run", service, queue, state, done.done, done.total, done.batches)

    def run_all_steps(self, service: str, queue: str, state: str, *, batch: int = BATCH) -> Iterator[Progress]:
        """:meth:`run_all` as a generator yielding :class:`Progress` after each batch (for a streaming page)."""
        qk = self.queue_keys(service, queue)
        if state not in protocol.RUNNABLE:
            raise ValueError(f"cannot run tasks that are {state}; runnable states: {', '.join(protocol.RUNNABLE)}")
        key = qk.of_state(TaskState(state))
        batch = max(1, int(batch))
        total = self._size(qk, state)
        done = batches = 0
        while done < total:
            raw = protocol.parse_page(self._broker.run(protocol.page(qk, key, "z", min(batch, total - done), 0)))
            if not raw.entries:
                break
            items = [(e.member, _fresh_retries(e.envelope) if state == "archived" else "") for e in raw.entries]
            moved = protocol.parse_run(self._broker.run(protocol.run(qk, state, items)))
            batches += 1
            done += sum(1 for m in moved if m)
            yield Progress(done, max(total, done), batches)
            if not any(moved):
                break

    def delete(self, service: str, queue: str, task_ids: Sequence[str], state: str = "*") -> ActionResult:
        """Delete the named tasks, from ``state`` or wherever each is (pending, scheduled, retry, archived,
        completed). A running task is refused (``tasks`` maps it to None, as an unknown id): cancel it instead."""
        qk = self.queue_keys(service, queue)
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return ActionResult("delete", service, queue, state, 0, 0)
        count, where = protocol.parse_delete(self._broker.run(protocol.delete(qk, state, ids)))
        tasks = {i: (w if w and w != "active" else None) for i, w in zip(ids, where)}
        return ActionResult("delete", service, queue, state, count, len(ids), 1, tasks)

    def delete_all(self, service: str, queue: str, state: str, *, batch: int = BATCH,
                   progress: ProgressCallback | None = None) -> ActionResult:
        """Delete every task in ``state`` (pending: the oldest first), ``batch`` per call, calling ``progress``
        after each. Tasks that join the state meanwhile may be left."""
        done = Progress(0, 0, 0)
        for done in self.delete_all_steps(service, queue, state, batch=batch):
            if progress is not None:
                progress(done)
        return ActionResult("delete", service, queue, state, done.done, done.total, done.batches)

    def delete_all_steps(self, service: str, queue: str, state: str, *, batch: int = BATCH) -> Iterator[Progress]:
        """:meth:`delete_all` as a generator yielding :class:`Progress` after each batch."""
        qk = self.queue_keys(service, queue)
        if state not in protocol.DELETABLE:
            raise ValueError(f"cannot delete tasks that are {state}; deletable states: "
                             f"{', '.join(protocol.DELETABLE)}")
        batch = max(1, int(batch))
        total = self._size(qk, state)
        done = batches = 0
        while done < total:
            count, _ = protocol.parse_delete(
                self._broker.run(protocol.delete_batch(qk, state, min(batch, total - done))))
            if count == 0:
                break
            batches += 1
            done += count
            yield Progress(done, max(total, done), batches)

    def _size(self, qk: QueueKeys, state: str) -> int:
        shape = [(state, state_key(qk, TaskState(state))[1], state == TaskState.PENDING.value)]
        return protocol.parse_overview(shape, self._broker.run(protocol.overview(qk, shape, []))).sizes[state]


def _fresh_retries(raw: bytes | None) -> bytes | str:
    """An archived envelope rewritten for running again: no archive reason, a fresh set of retries (the last
    error is kept). ``""`` (keep what is stored) when it does not decode: the worker dead-letters it again."""
    try:
        env = decode(raw)
    except MalformedMessage:
        return ""
    return encode(replace(env, failures=0, reason=None))
