"""Fetching: what a worker leases, from which queue first, and how much.

Queue order follows the service's priority mode (Asynq's two):

* **strict**: queues in descending weight; a lower queue is read only when every higher one came back short.
* **weighted**: every fetch draws the first queue at random in proportion to the weights, then the rest in
  weighted random order, so a heavy queue cannot starve a light one.

How much: a worker holds at most ``concurrency + prefetch`` leases. The main loop fetches in batches in the same
round trip as its acks, reserving the slots it asks for. On a single server an idle worker's one wake-up thread
pipelines a dequeue behind its blocking pop (the first task after idle costs one round trip), reserving the slots
that dequeue may fill. With one wake-up thread per cluster slot, the threads only wake the main loop, which then
fetches: a thread blocked on one queue must not hold slots that another queue's tasks could use. While it holds a
task that lost its lease repeatedly (leased alone: it may be what kills its workers, see
:mod:`~router.worker.leases`), a worker leases nothing more.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence

import structlog

from router.errors import BrokerError
from router.registry.model import PriorityMode
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.keys import QueueKeys
from router.worker.dispatch import Dispatcher
from router.worker.execution import Job
from router.worker.leases import SOLO_FROM_LOST_LEASES, Leases
from router.worker.settings import WorkerSettings
from router.worker.settlement import Settlements
from router.worker.state import LoopState
from router.worker.waker import Fetch, Fetched, requeue_fetched

log = structlog.get_logger(__name__)


class QueueOrder:
    """The order in which to fetch from ``queues`` (with their ``weights``) under ``mode``."""

    def __init__(self, queues: Sequence[QueueKeys], weights: Sequence[int], mode: PriorityMode) -> None:
        self._pairs = list(zip(queues, weights))
        self._strict = mode is PriorityMode.STRICT or len(self._pairs) == 1
        self._by_weight = [qk for qk, _ in sorted(self._pairs, key=lambda p: -p[1])]

    def __call__(self) -> list[QueueKeys]:
        if self._strict:
            return self._by_weight
        order: list[QueueKeys] = []
        pool = list(self._pairs)
        while pool:
            pick = random.choices(range(len(pool)), weights=[w for _, w in pool])[0]
            order.append(pool.pop(pick)[0])
        return order


class Fetcher:
    """Leases work for one worker run: in batches from its main loop, or behind the waker's blocking pops, never
    more than ``concurrency + prefetch`` at once; and hands what it leased to the dispatcher and the runner."""

    def __init__(self, queues: Sequence[QueueKeys], order: QueueOrder, settings: WorkerSettings, state: LoopState,
                 broker: SyncBroker, outcomes: Settlements, dispatcher: Dispatcher, leases: Leases,
                 submit: Callable[[list[Job]], None], pipelined_wakeups: bool = True) -> None:
        self._queues = list(queues)
        self._order = order
        self._concurrency = settings.concurrency
        self.capacity = settings.concurrency + (
            settings.concurrency if settings.prefetch is None else settings.prefetch)
        self._state = state
        self._broker = broker
        self._outcomes = outcomes
        self._dispatcher = dispatcher
        self._leases = leases
        self._submit = submit
        self._pipelined = pipelined_wakeups
        self._reserve_lock = threading.Lock()
        self.reserved = 0  # handler slots that fetches in flight may fill

    def free_slots(self) -> int:
        """Deliveries this worker may still lease: capacity minus what it holds and wake-ups may bring."""
        with self._reserve_lock:
            return self._room()

    def _room(self) -> int:
        """Under the reserve lock: the free slots, none while a task that must run alone is held."""
        running = self._state.running
        if any(run.solo for run in list(running.values())):
            return 0
        return self.capacity - len(running) - self.reserved

    def settle_and_fetch(self) -> tuple[int, bool]:
        """Send pending acks and, in the same round trip, fetch for free slots. Returns (fetched, all empty).

        Each call of the round trip is settled on its own reply: a refused ack stays queued while the tasks the
        dequeue leased still start (they would otherwise wait for their lease to expire); the first failure is
        raised once everything that succeeded has been taken in.
        """
        st = self._state
        ack_calls = self._outcomes.calls()
        free = self.free_slots()
        # Fetch in batches: wait until half the prefetch room is free, unless the handlers are running dry.
        room = max(1, (self.capacity - self._concurrency) // 2)
        if st.running and free < room and len(st.running) > self._concurrency:
            free = 0
        if not st.maybe_work or not st.fetching or st.stopping or free <= 0:
            if ack_calls:
                _raise(self._outcomes.apply(ack_calls, self._broker.run_each(ack_calls)))
            return 0, not st.maybe_work
        fetched = 0
        for qk in self._order():
            with self._reserve_lock:  # a wake-up thread planning meanwhile must not count these slots as free
                free = min(free, self._room())
                if free <= 0:
                    return fetched, False
                self.reserved += free
            try:
                calls = [*ack_calls, protocol.dequeue(qk, self._leases.lease_ms, free, SOLO_FROM_LOST_LEASES)]
                replies = self._broker.run_each(calls)
                error = self._outcomes.apply(ack_calls, replies[:-1])
                ack_calls = []
                if isinstance(replies[-1], Exception):
                    raise replies[-1]
                dequeued = protocol.parse_dequeue(replies[-1])
                self.start(qk, dequeued)  # what it leased now counts as running
            finally:
                with self._reserve_lock:
                    self.reserved -= free
            _raise(error)
            fetched += len(dequeued.deliveries)
            free -= len(dequeued.deliveries)
            if free <= 0:
                return fetched, False
        st.maybe_work = False  # every queue came back short: nothing more until a wake-up
        return fetched, fetched == 0

    def wake_plan(self, group: Sequence[QueueKeys]) -> list[Fetch]:
        """Waker thread: the dequeues to pipeline behind its next blocking pop, reserving the slots they may fill
        (none with one thread per cluster slot: see the module docstring)."""
        if not self._pipelined:
            return []
        queues = [qk for qk in self._order() if qk in group]
        with self._reserve_lock:
            shares = _split(self._room(), len(queues))
            self.reserved += sum(shares)
        lease_ms = self._leases.lease_ms
        return [Fetch(qk, n, protocol.dequeue(qk, lease_ms, n, SOLO_FROM_LOST_LEASES))
                for qk, n in zip(queues, shares) if n]

    def release(self, plan: Sequence[Fetch]) -> None:
        """Give back the slots ``plan`` reserved."""
        with self._reserve_lock:
            self.reserved -= sum(f.limit for f in plan)

    def take_woken(self, fetched: Fetched) -> None:
        """Run what a wake-up leased; look for more only if some queue filled the whole request."""
        st = self._state
        try:
            if st.stopping or not st.fetching:  # leased while the signal was on its way: straight back to pending
                requeue_fetched(self._broker, fetched)
                return
            st.maybe_work = st.maybe_work or not fetched  # a bare wake-up: the loop fetches when it has room
            error: Exception | None = None
            for fetch, reply in fetched:
                if isinstance(reply, Exception):
                    # A refusal ends the worker (after the others started, so the shutdown hands them back); a
                    # transient failure only means the loop should look again (and will meet the outage itself).
                    error = error or (reply if isinstance(reply, BrokerError) else None)
                    st.maybe_work = True
                    continue
                dequeued = protocol.parse_dequeue(reply)
                if len(dequeued.deliveries) >= fetch.limit:
                    st.maybe_work = True
                self.start(fetch.qk, dequeued)
            _raise(error)
        finally:
            self.release([fetch for fetch, _ in fetched])

    def start(self, qk: QueueKeys, dequeued: protocol.Dequeued) -> None:
        """Hand freshly leased deliveries of one queue to the runner (dead-lettering what cannot run)."""
        if dequeued.duplicates:
            log.warning("duplicate_reference_dropped", queue=qk.queue, ids=dequeued.duplicates[:20],
                        count=len(dequeued.duplicates), note="a pending id of a task already leased or in another "
                        "state; the task runs once")
        if dequeued.seq_reset is not None:
            log.warning("token_counter_reset", queue=qk.queue, value=dequeued.seq_reset,
                        note="the delivery token counter was not a number")
        jobs: list[Job] = []
        cancelled = set(dequeued.cancelled)
        for raw in dequeued.deliveries:
            if raw.task_id in cancelled:
                self._dispatcher.cancel(qk, raw)  # settled as cancelled with the next round trip, never run
                continue
            found = self._dispatcher.dispatch(qk, raw)
            if found is not None:
                run, entry = found
                self._state.running[run.member] = run
                jobs.append((run, entry, run.task))
        if jobs:
            self._submit(jobs)


def _raise(error: Exception | None) -> None:
    if error is not None:
        raise error


def _split(total: int, parts: int) -> list[int]:
    """``total`` slots shared among ``parts`` queues as evenly as possible (none when there is no room)."""
    if total <= 0 or parts <= 0:
        return [0] * parts
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
