"""``AsyncClient``: the asyncio twin of :class:`~router.producer.client.Client`, sharing its guard, batching and
protocol; only the transport (redis-py's asyncio client) differs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
from router.producer.client import ATTEMPTS, RETRY_PAUSE_S, WAIT_RECHECK_S
from router.producer.guard import Guard
from router.producer.lifecycle import TaskRef
from router.producer.liveguard import LiveHandlers
from router.registry.model import Registry
from router.storage import protocol
from router.storage.broker import AsyncBroker
from router.storage.connection import TRANSIENT_ERRORS, AsyncRedis, Role, connect_async
from router.storage.keys import QueueKeys
from router.task import CancelResult, TaskDetail, TaskInfo
from router.tracing import tracing as tracing_for

T = TypeVar("T")


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
        tracing: bool | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.registry = registry
        self.guard = Guard(registry, clock=clock)
        client = redis if redis is not None else connect_async(url or registry.redis_url, Role.PRODUCER)
        self._broker = AsyncBroker(client)
        self._live = LiveHandlers(registry, live_guard_ttl_s) if live_guard else None
        self._tracing = tracing_for(tracing, tracer_provider)

    async def enqueue(self, task_type: str, payload: Mapping[str, Any], **options: Any) -> TaskInfo:
        """Enqueue one task; see :meth:`Client.enqueue`."""
        if self._tracing is not None:
            with self._tracing.send(task_type) as span:
                route = self.guard.route_options(task_type, payload, options, span.traceparent if span else None)
                if span is not None:
                    span.routed(route.task_id, route.service, route.queue)
                batch = single(route)
                return finish(batch, *(await self._send(batch)))[0]
        batch = single(self.guard.route_options(task_type, payload, options))
        return finish(batch, *(await self._send(batch)))[0]

    async def enqueue_many(self, items: Iterable[BulkItem]) -> list[TaskInfo]:
        """Enqueue many tasks in one round trip; see :meth:`Client.enqueue_many`."""
        if self._tracing is not None:
            with self._tracing.send("batch") as span:
                batch = prepare(self.guard, items, span.traceparent if span else None)
                if span is not None and batch.routes:
                    first = batch.routes[0]
                    span.routed(first.task_id, first.service, first.queue, len(batch.routes))
                return finish(batch, *(await self._send(batch)))
        batch = prepare(self.guard, items)
        return finish(batch, *(await self._send(batch)))

    async def _send(self, batch: Batch) -> tuple[list[Any], bool]:
        if self._live is not None:
            now_ms = int(time.time() * 1000)
            try:
                for sk in self._live.stale(batch.routes):
                    self._live.update(sk.service, await self._broker.live_workers(sk, now_ms))
            except TRANSIENT_ERRORS as exc:
                raise heartbeats_unreadable(exc) from exc
            self._live.check(batch.routes)
        for attempt in range(ATTEMPTS):
            try:
                return await self._broker.run_many(batch.calls), attempt > 0
            except TRANSIENT_ERRORS as exc:
                if attempt == ATTEMPTS - 1 or isinstance(exc, RedisTimeout):
                    raise outcome_unknown(batch, exc) from exc
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
                    left = lifecycle.seconds_left(until)
                    if left is not None and left <= 0:
                        raise WaitTimeout(task_id, limit or 0.0, current.state.value)
                    await _await_message_async(pubsub, task_id,
                                               WAIT_RECHECK_S if left is None else min(left, WAIT_RECHECK_S))
                    pause = RETRY_PAUSE_S
                except TRANSIENT_ERRORS:
                    await _dropped_async(pubsub)  # see Client.wait
                    pubsub = None
                    left = lifecycle.seconds_left(until)
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
                    raise unreachable(exc) from exc
                await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the connection pool."""
        await self._broker.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _await_message_async(pubsub: Any, task_id: str, timeout_s: float) -> None:
    until = time.monotonic() + timeout_s
    while (left := until - time.monotonic()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None and lifecycle.is_end_of(message, task_id):
            return


async def _dropped_async(pubsub: Any) -> None:
    """Close a subscription, if any (after an error too)."""
    if pubsub is not None:
        with contextlib.suppress(Exception):  # a connection that already failed may fail again on close
            await pubsub.aclose()
