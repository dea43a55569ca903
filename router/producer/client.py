"""Enqueueing: guard, then route, then one script call per queue (``Client`` sync, ``AsyncClient`` asyncio).

Both clients share the guard and :mod:`router.storage.protocol`; only the transport differs. An enqueue is idempotent by
task id (the script recognises a byte-identical repeat), so a connection error is retried with the same id and
envelope; if every attempt fails the caller gets ``EnqueueOutcomeUnknown`` carrying the id to repeat with. A timeout
is not retried: it has already waited the producer's read timeout, and a frozen Redis would make each retry wait as
long again (three attempts took 6.2 s instead of 2 s), so the caller hears within one timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import TimeoutError as RedisTimeout

from router.clock import Clock, system_clock
from router.errors import BrokerError, DuplicateTask, EnqueueOutcomeUnknown, TaskIdConflict, TaskNotFound, WaitTimeout
from router.producer import lifecycle
from router.producer.guard import Guard, Route
from router.producer.lifecycle import TaskRef
from router.producer.liveguard import LiveHandlers
from router.registry.model import Registry
from router.storage import protocol
from router.storage.broker import AsyncBroker, SyncBroker
from router.storage.connection import TRANSIENT_ERRORS, AsyncRedis, Role, SyncRedis, connect, connect_async
from router.storage.keys import QueueKeys
from router.task import CancelResult, TaskDetail, TaskInfo, TaskState

T = TypeVar("T")

#: An item of ``enqueue_many``: (type, payload) or (type, payload, options).
BulkItem = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]

ATTEMPTS = 3
RETRY_PAUSE_S = 0.05
#: A waiting client is told of the task's end by pub/sub; it also looks again this often, because pub/sub drops
#: messages when a connection resets.
WAIT_RECHECK_S = 2.0


@dataclass(frozen=True)
class _Batch:
    routes: list[Route]
    calls: list[protocol.Call]
    slots: list[list[int]]  # for each call, the indexes of its routes


def _prepare(guard: Guard, items: Iterable[BulkItem]) -> _Batch:
    """Guard every item first (so a refused item writes nothing), then group them into one call per queue."""
    routes: list[Route] = []
    for item in items:
        options: Mapping[str, Any] = item[2] if len(item) == 3 else {}
        routes.append(guard.route_options(item[0], item[1], options))
    groups: dict[QueueKeys, list[int]] = {}
    for i, route in enumerate(routes):
        groups.setdefault(route.keys, []).append(i)
    calls = [protocol.enqueue(qk, [routes[i].item() for i in idx]) for qk, idx in groups.items()]
    return _Batch(routes, calls, list(groups.values()))


def _single(route: Route) -> _Batch:
    return _Batch([route], [protocol.enqueue(route.keys, [route.item()])], [[0]])


def _finish(batch: _Batch, replies: Sequence[Any], retried: bool = False) -> list[TaskInfo]:
    """TaskInfos for the batch, or the first refusal in item order (``TaskIdConflict``, ``DuplicateTask``) carrying
    the others, which were enqueued. After a retry, a conflict on an id the client generated can only be its own
    earlier attempt, which landed (and may even have run already): that is success."""
    infos: list[TaskInfo] = []
    refused: list[tuple[Route, str | None]] = []  # (route, the lock holder of a duplicate, or None: an id conflict)
    outcome: dict[int, tuple[int, str]] = {}
    for idx, reply in zip(batch.slots, replies):
        for i, result in zip(idx, protocol.parse_enqueue(reply)):
            outcome[i] = result
    for i, route in enumerate(batch.routes):
        code, holder = outcome[i]
        if code == protocol.ENQUEUE_CONFLICT and not (retried and route.generated_id):
            refused.append((route, None))
        elif code == protocol.ENQUEUE_DUPLICATE:
            refused.append((route, holder))
        else:
            infos.append(TaskInfo(route.task_id, route.task_type, route.service, route.queue, _state_of(route)))
    if refused:
        first, lock_holder = refused[0]
        if lock_holder is None:
            raise TaskIdConflict(first.task_id, first.service, first.queue, infos)
        raise DuplicateTask(first.task_type, lock_holder, first.service, first.queue, infos)
    return infos


def _state_of(route: Route) -> TaskState:
    if route.group is not None:
        return TaskState.AGGREGATING
    return TaskState.SCHEDULED if route.run_at_ms else TaskState.PENDING


def _heartbeats_unreadable(cause: BaseException) -> BrokerError:
    return BrokerError(f"live guard could not read worker heartbeats ({cause}); nothing was enqueued, "
                       "retry when Redis is reachable")


def _unreachable(cause: BaseException) -> BrokerError:
    return BrokerError(f"Redis could not be reached ({cause}); nothing was changed, retry when it is reachable")


def _await_message(pubsub: Any, task_id: str, timeout_s: float) -> None:
    """Return when the end of ``task_id`` is published on the subscribed channel, or after ``timeout_s``."""
    until = time.monotonic() + timeout_s
    while (left := until - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None and _names(message, task_id):
            return


async def _await_message_async(pubsub: Any, task_id: str, timeout_s: float) -> None:
    until = time.monotonic() + timeout_s
    while (left := until - time.monotonic()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None and _names(message, task_id):
            return


def _left(until: float | None) -> float | None:
    """Seconds left until the monotonic time ``until`` (None: no limit)."""
    return None if until is None else until - time.monotonic()


def _dropped(pubsub: Any) -> None:
    """Close a subscription, if any (after an error too)."""
    if pubsub is not None:
        with contextlib.suppress(Exception):  # a connection that already failed may fail again on close
            pubsub.close()


async def _dropped_async(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(Exception):
            await pubsub.aclose()


def _names(message: Mapping[str, Any], task_id: str) -> bool:
    data = message.get("data")
    return isinstance(data, bytes) and data.decode("utf-8", "surrogateescape") == task_id


def _unknown(batch: _Batch, cause: BaseException) -> EnqueueOutcomeUnknown:
    return EnqueueOutcomeUnknown(batch.routes[0].task_id, cause, [r.task_id for r in batch.routes])


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
    ) -> None:
        """``live_guard`` also refuses types no live worker of their owner handles (``NoLiveWorker``), reading
        the owners' heartbeats at most once per ``live_guard_ttl_s``."""
        self.registry = registry
        self.guard = Guard(registry, clock=clock)
        self._broker = SyncBroker(redis if redis is not None else connect(url or registry.redis_url, Role.PRODUCER))
        self._live = LiveHandlers(registry, live_guard_ttl_s) if live_guard else None

    def enqueue(self, task_type: str, payload: Mapping[str, Any], **options: Any) -> TaskInfo:
        """Enqueue one task. Options: ``queue``, ``max_retry``, ``timeout_s``, ``task_id``, and a delay:
        ``process_in`` (seconds) or ``process_at`` (aware datetime or epoch seconds).

        Raises a GuardError before touching Redis, ``TaskIdConflict`` if the id exists, or
        ``EnqueueOutcomeUnknown`` if Redis could not be reached reliably.
        """
        # The hot path of a producer: one route, one script call, nothing else.
        batch = _single(self.guard.route_options(task_type, payload, options))
        return _finish(batch, *self._send(batch))[0]

    def enqueue_many(self, items: Iterable[BulkItem]) -> list[TaskInfo]:
        """Enqueue many tasks in one round trip; every item is guarded before anything is written."""
        batch = _prepare(self.guard, items)
        return _finish(batch, *self._send(batch))

    def _send(self, batch: _Batch) -> tuple[list[Any], bool]:
        """Replies to the batch's calls, and whether it took more than one attempt."""
        if self._live is not None:
            now_ms = int(time.time() * 1000)
            try:
                for sk in self._live.stale(batch.routes):
                    self._live.update(sk.service, self._broker.live_workers(sk, now_ms))
            except TRANSIENT_ERRORS as exc:
                raise _heartbeats_unreadable(exc) from exc
            self._live.check(batch.routes)
        for attempt in range(ATTEMPTS):
            try:
                return self._broker.run_many(batch.calls), attempt > 0
            except TRANSIENT_ERRORS as exc:
                if attempt == ATTEMPTS - 1 or isinstance(exc, RedisTimeout):
                    raise _unknown(batch, exc) from exc
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
                    left = _left(until)
                    if left is not None and left <= 0:
                        raise WaitTimeout(task_id, limit or 0.0, current.state.value)
                    _await_message(pubsub, task_id, WAIT_RECHECK_S if left is None else min(left, WAIT_RECHECK_S))
                    pause = RETRY_PAUSE_S
                except TRANSIENT_ERRORS:
                    # The connection reset (Redis restarted, a failover): subscribe and look again, as the end may
                    # have been published meanwhile; the timeout still bounds the whole wait.
                    _dropped(pubsub)
                    pubsub = None
                    left = _left(until)
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
                    raise _unreachable(exc) from exc
                time.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection pool."""
        self._broker.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of :class:`Client`, sharing its guard and protocol."""

    def __init__(
        self,
        registry: Registry,
        url: str | None = None,
        *,
        redis: AsyncRedis | None = None,
        clock: Clock = system_clock,
        live_guard: bool = False,
        live_guard_ttl_s: float = 5.0,
    ) -> None:
        self.registry = registry
        self.guard = Guard(registry, clock=clock)
        client = redis if redis is not None else connect_async(url or registry.redis_url, Role.PRODUCER)
        self._broker = AsyncBroker(client)
        self._live = LiveHandlers(registry, live_guard_ttl_s) if live_guard else None

    async def enqueue(self, task_type: str, payload: Mapping[str, Any], **options: Any) -> TaskInfo:
        """Enqueue one task; see :meth:`Client.enqueue`."""
        batch = _single(self.guard.route_options(task_type, payload, options))
        return _finish(batch, *(await self._send(batch)))[0]

    async def enqueue_many(self, items: Iterable[BulkItem]) -> list[TaskInfo]:
        """Enqueue many tasks in one round trip; see :meth:`Client.enqueue_many`."""
        batch = _prepare(self.guard, items)
        return _finish(batch, *(await self._send(batch)))

    async def _send(self, batch: _Batch) -> tuple[list[Any], bool]:
        if self._live is not None:
            now_ms = int(time.time() * 1000)
            try:
                for sk in self._live.stale(batch.routes):
                    self._live.update(sk.service, await self._broker.live_workers(sk, now_ms))
            except TRANSIENT_ERRORS as exc:
                raise _heartbeats_unreadable(exc) from exc
            self._live.check(batch.routes)
        for attempt in range(ATTEMPTS):
            try:
                return await self._broker.run_many(batch.calls), attempt > 0
            except TRANSIENT_ERRORS as exc:
                if attempt == ATTEMPTS - 1 or isinstance(exc, RedisTimeout):
                    raise _unknown(batch, exc) from exc
                await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    async def get_task(self, task: TaskRef, *, service: str | None = None, queue: str | None = None) -> TaskDetail:
        """The task's state now; see :meth:`Client.get_task`."""
        qk, task_id, look = await self._find(task, service, queue)
        return lifecycle.detail(qk, task_id, look)

    async def cancel(self, task: TaskRef, *, service: str | None = None, queue: str | None = None) -> CancelResult:
        """Cancel a task; see :meth:`Client.cancel`."""
        try:
            qk, task_id, look = await self._find(task, service, queue)
        except TaskNotFound:
            return lifecycle.not_found(task, service, queue)
        call = lifecycle.cancel_call(qk, task_id, look, int(time.time() * 1000))
        return lifecycle.cancel_result(qk, task_id, await self._retrying(lambda: self._broker.run(call)))

    async def wait(self, task: TaskRef, timeout_s: float | None = None, *, service: str | None = None,
                   queue: str | None = None) -> TaskDetail:
        """Wait until the task has ended and return it; see :meth:`Client.wait`."""
        limit = lifecycle.wait_timeout(timeout_s)
        qk, task_id, look = await self._find(task, service, queue)
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
                        pubsub = self._broker.client.pubsub(ignore_subscribe_messages=True)
                        await pubsub.subscribe(qk.waiters)
                    current = await self._look(qk, task_id, "" if entered else protocol.WAIT_ENTER)
                    entered = True
                    if current.finished:
                        return current
                    left = _left(until)
                    if left is not None and left <= 0:
                        raise WaitTimeout(task_id, limit or 0.0, current.state.value)
                    await _await_message_async(pubsub, task_id,
                                               WAIT_RECHECK_S if left is None else min(left, WAIT_RECHECK_S))
                    pause = RETRY_PAUSE_S
                except TRANSIENT_ERRORS:
                    await _dropped_async(pubsub)  # see Client.wait
                    pubsub = None
                    left = _left(until)
                    if left is not None and left <= 0:
                        raise WaitTimeout(task_id, limit or 0.0, current.state.value) from None
                    await asyncio.sleep(pause if left is None else min(pause, left))
                    pause = min(pause * 2, WAIT_RECHECK_S)
        finally:
            if entered:
                with contextlib.suppress(*TRANSIENT_ERRORS, BrokerError):
                    await self._broker.run(protocol.lookup(qk, task_id, protocol.WAIT_LEAVE))
            await _dropped_async(pubsub)

    async def _look(self, qk: QueueKeys, task_id: str, mode: str) -> TaskDetail:
        look = protocol.parse_lookup(await self._broker.run(protocol.lookup(qk, task_id, mode)))
        if look.state == "unknown":
            raise TaskNotFound(task_id, f"{qk.service}/{qk.queue}")
        return lifecycle.detail(qk, task_id, look)

    async def _find(self, task: TaskRef, service: str | None,
                    queue: str | None) -> tuple[QueueKeys, str, protocol.Lookup]:
        task_id, queues = lifecycle.candidates(self.registry, task, service, queue)
        replies = await self._retrying(lambda: self._broker.run_many(lifecycle.lookups(task_id, queues)))
        qk, look = lifecycle.pick(task_id, queues, replies)
        return qk, task_id, look

    @staticmethod
    async def _retrying(fn: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(ATTEMPTS):
            try:
                return await fn()
            except TRANSIENT_ERRORS as exc:
                if attempt == ATTEMPTS - 1:
                    raise _unreachable(exc) from exc
                await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the connection pool."""
        await self._broker.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
