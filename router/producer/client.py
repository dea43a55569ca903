"""``Client``: enqueueing (guard, then route, then one script call per queue), and reading, waiting for and
cancelling tasks.

Both clients (``AsyncClient`` in :mod:`router.producer.asyncclient`) share the guard, :mod:`~router.producer.batch`,
:mod:`~router.producer.lifecycle` and :mod:`router.storage.protocol`; only the transport differs. An enqueue is
idempotent by task id (the script recognises a byte-identical repeat), so a connection error is retried with the same
id and envelope; if every attempt fails the caller gets ``EnqueueOutcomeUnknown`` carrying the id to repeat with. A
timeout is not retried: it has already waited the producer's read timeout, and a frozen Redis would make each retry
wait as long again (three attempts took 6.2 s instead of 2 s), so the caller hears within one timeout.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from redis.exceptions import TimeoutError as RedisTimeout

from router.clock import Clock, system_clock
from router.errors import BrokerError, TaskNotFound, WaitTimeout
from router.producer import lifecycle
from router.producer.batch import (
    Batch,
    BulkItem,
    finish,
    heartbeats_unreadable,
    outcome_unknown,
    prepare,
    single,
    unreachable,
)
from router.producer.guard import Guard
from router.producer.lifecycle import TaskRef
from router.producer.liveguard import LiveHandlers
from router.registry.model import Registry
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import TRANSIENT_ERRORS, Role, SyncRedis, connect
from router.storage.keys import QueueKeys
from router.task import CancelResult, TaskDetail, TaskInfo
from router.tracing import tracing as tracing_for

T = TypeVar("T")


ATTEMPTS = 3
RETRY_PAUSE_S = 0.05
#: A waiting client is told of the task's end by pub/sub; it also looks again this often, because pub/sub drops
#: messages when a connection resets.
WAIT_RECHECK_S = 2.0


def _dropped(pubsub: Any) -> None:
    """Close a subscription, if any (after an error too)."""
    if pubsub is not None:
        with contextlib.suppress(Exception):  # a connection that already failed may fail again on close
            pubsub.close()


def _await_message(pubsub: Any, task_id: str, timeout_s: float) -> None:
    """Return when the end of ``task_id`` is published on the subscribed channel, or after ``timeout_s``."""
    until = time.monotonic() + timeout_s
    while (left := until - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None and lifecycle.is_end_of(message, task_id):
            return





class Client:
    """Enqueues tasks by type name; the registry decides the service, queue and key prefix."""

    def __init__(
        self,
        registry: Registry,
        url: str | None = None,
        *,
        redis: SyncRedis | None = None,
        clock: Clock = system_clock,
        live_guard: bool = False,
        live_guard_ttl_s: float = 5.0,
        tracing: bool | None = None,
        tracer_provider: Any = None,
    ) -> None:
        """``live_guard`` also refuses types no live worker of their owner handles (``NoLiveWorker``), reading
        the owners' heartbeats at most once per ``live_guard_ttl_s``. ``tracing``: producer spans and trace
        context in the envelope (None: when OpenTelemetry is installed; see :mod:`router.tracing`), with
        ``tracer_provider`` or the global one."""
        self.registry = registry
        self.guard = Guard(registry, clock=clock)
        self._broker = SyncBroker(redis if redis is not None else connect(url or registry.redis_url, Role.PRODUCER))
        self._live = LiveHandlers(registry, live_guard_ttl_s) if live_guard else None
        self._tracing = tracing_for(tracing, tracer_provider)

    def enqueue(self, task_type: str, payload: Mapping[str, Any], **options: Any) -> TaskInfo:
        """Enqueue one task. Options: ``queue``, ``max_retry``, ``timeout_s``, ``task_id``, and a delay:
        ``process_in`` (seconds) or ``process_at`` (aware datetime or epoch seconds).

        Raises a GuardError before touching Redis, ``TaskIdConflict`` if the id exists, or
        ``EnqueueOutcomeUnknown`` if Redis could not be reached reliably.
        """
        if self._tracing is not None:
            with self._tracing.send(task_type) as span:
                route = self.guard.route_options(task_type, payload, options, span.traceparent if span else None)
                if span is not None:
                    span.routed(route.task_id, route.service, route.queue)
                batch = single(route)
                return finish(batch, *self._send(batch))[0]
        # The hot path of a producer: one route, one script call, nothing else.
        batch = single(self.guard.route_options(task_type, payload, options))
        return finish(batch, *self._send(batch))[0]

    def enqueue_many(self, items: Iterable[BulkItem]) -> list[TaskInfo]:
        """Enqueue many tasks in one round trip; every item is guarded before anything is written."""
        if self._tracing is not None:
            with self._tracing.send("batch") as span:
                batch = prepare(self.guard, items, span.traceparent if span else None)
                if span is not None and batch.routes:
                    first = batch.routes[0]
                    span.routed(first.task_id, first.service, first.queue, len(batch.routes))
                return finish(batch, *self._send(batch))
        batch = prepare(self.guard, items)
        return finish(batch, *self._send(batch))

    def _send(self, batch: Batch) -> tuple[list[Any], bool]:
        """Replies to the batch's calls, and whether it took more than one attempt."""
        if self._live is not None:
            now_ms = int(time.time() * 1000)
            try:
                for sk in self._live.stale(batch.routes):
                    self._live.update(sk.service, self._broker.live_workers(sk, now_ms))
            except TRANSIENT_ERRORS as exc:
                raise heartbeats_unreadable(exc) from exc
            self._live.check(batch.routes)
        for attempt in range(ATTEMPTS):
            try:
                return self._broker.run_many(batch.calls), attempt > 0
            except TRANSIENT_ERRORS as exc:
                if attempt == ATTEMPTS - 1 or isinstance(exc, RedisTimeout):
                    raise outcome_unknown(batch, exc) from exc
                time.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    def get_task(self, task: TaskRef, *, service: str | None = None, queue: str | None = None) -> TaskDetail:
        """The task's state now, with its payload, last error and (if kept) result.

        ``task`` is an id or the TaskInfo of its enqueue; without ``service``/``queue`` (or a TaskInfo) every queue
        of the registry is searched. Raises TaskNotFound or AmbiguousTaskId.
        """
        qk, task_id, look = self._find(task, service, queue)
        return lifecycle.detail(qk, task_id, look)

    def cancel(self, task: TaskRef, *, service: str | None = None, queue: str | None = None) -> CancelResult:
        """Cancel a task: one that has not started never runs; a running one is stopped by its worker (see
        :class:`~router.task.CancelOutcome`; an id found nowhere is ``UNKNOWN``). Safe to repeat."""
        try:
            qk, task_id, look = self._find(task, service, queue)
        except TaskNotFound:
            return lifecycle.not_found(task, service, queue)
        call = lifecycle.cancel_call(qk, task_id, look, int(time.time() * 1000))
        return lifecycle.cancel_result(qk, task_id, self._retrying(lambda: self._broker.run(call)))

    def wait(self, task: TaskRef, timeout_s: float | None = None, *, service: str | None = None,
             queue: str | None = None) -> TaskDetail:
        """Block until the task has ended (completed, archived or cancelled) and return it; raises WaitTimeout
        after ``timeout_s`` (None: no limit; zero or less: look once). The task's end is pushed to the client
        (pub/sub), not polled; a connection lost meanwhile (Redis restarted) is re-established until the timeout."""
        limit = lifecycle.wait_timeout(timeout_s)
        qk, task_id, look = self._find(task, service, queue)
        current = lifecycle.detail(qk, task_id, look)
        if current.finished:
            return current
        until = None if limit is None else time.monotonic() + limit
        pubsub: Any = None
        entered = False
        pause = RETRY_PAUSE_S
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = self._broker.client.pubsub(  # type: ignore[no-untyped-call]
                            ignore_subscribe_messages=True)
                        pubsub.subscribe(qk.waiters)  # before the look, so the end cannot slip between them
                    current = self._look(qk, task_id, "" if entered else protocol.WAIT_ENTER)
                    entered = True
                    if current.finished:
                        return current
                    left = lifecycle.seconds_left(until)
                    if left is not None and left <= 0:
                        raise WaitTimeout(task_id, limit or 0.0, current.state.value)
                    _await_message(pubsub, task_id, WAIT_RECHECK_S if left is None else min(left, WAIT_RECHECK_S))
                    pause = RETRY_PAUSE_S
                except TRANSIENT_ERRORS:
                    # The connection reset (Redis restarted, a failover): subscribe and look again, as the end may
                    # have been published meanwhile; the timeout still bounds the whole wait.
                    _dropped(pubsub)
                    pubsub = None
                    left = lifecycle.seconds_left(until)
                    if left is not None and left <= 0:
                        raise WaitTimeout(task_id, limit or 0.0, current.state.value) from None
                    time.sleep(pause if left is None else min(pause, left))
                    pause = min(pause * 2, WAIT_RECHECK_S)
        finally:
            # Leave even after seeing the end: an end that was not published (or not yet) leaves our count behind.
            if entered:
                with contextlib.suppress(*TRANSIENT_ERRORS, BrokerError):
                    self._broker.run(protocol.lookup(qk, task_id, protocol.WAIT_LEAVE))
            _dropped(pubsub)

    def _look(self, qk: QueueKeys, task_id: str, mode: str) -> TaskDetail:
        """One look (no retry: :meth:`wait` rides out connection errors itself); TaskNotFound when it is gone."""
        look = protocol.parse_lookup(self._broker.run(protocol.lookup(qk, task_id, mode)))
        if look.state == "unknown":
            raise TaskNotFound(task_id, f"{qk.service}/{qk.queue}")
        return lifecycle.detail(qk, task_id, look)

    def _find(self, task: TaskRef, service: str | None, queue: str | None) -> tuple[QueueKeys, str, protocol.Lookup]:
        task_id, queues = lifecycle.candidates(self.registry, task, service, queue)
        replies = self._retrying(lambda: self._broker.run_many(lifecycle.lookups(task_id, queues)))
        qk, look = lifecycle.pick(task_id, queues, replies)
        return qk, task_id, look

    @staticmethod
    def _retrying(fn: Callable[[], T]) -> T:
        """``fn()`` (an idempotent read or cancel), tried again on a transient error; BrokerError at the end."""
        for attempt in range(ATTEMPTS):
            try:
                return fn()
            except TRANSIENT_ERRORS as exc:
                if attempt == ATTEMPTS - 1:
                    raise unreachable(exc) from exc
                time.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection pool."""
        self._broker.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
