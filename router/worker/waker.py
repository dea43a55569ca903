"""Idle wake-ups without polling: threads that block on the queues' wake lists and fetch the moment work arrives.

Enqueue scripts push one token to ``Q:wake`` when it is empty; an idle worker blocks there (BLPOP, at most
``block_s`` at a time) instead of polling. Behind each BLPOP the thread pipelines the dequeue calls of the same
queues, so Redis leases the new tasks the moment the token arrives and the first task costs one round trip, not
two. One BLPOP covers all of a service's queues on a single server; in Redis Cluster each queue is its own slot, so
keys are grouped by slot and each group gets its own thread and connection. A thread only blocks while the main
loop has armed it (found nothing to do), so a busy worker sends no blocking commands; an idle one sends one BLPOP
and one dequeue per queue every ``block_s``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.crc import key_slot

from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import TRANSIENT_ERRORS
from router.storage.keys import QueueKeys

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Fetch:
    """One queue's dequeue pipelined behind a wake-up: the queue, how many tasks it asks for, and the call."""

    qk: QueueKeys
    limit: int
    call: protocol.Call


#: Builds the fetches for a group of queues, in fetch order, right before each blocking round trip, reserving
#: the handler slots they may fill.
Plan = Callable[[Sequence[QueueKeys]], list[Fetch]]
#: Gives back the slots a plan reserved when nothing it fetched reaches the worker.
Release = Callable[[Sequence[Fetch]], None]
#: Receives what a wake-up fetched: each fetch with its raw dequeue reply (possibly empty, or the exception of a
#: dequeue that failed while the others of the round trip went through).
Fetched = list[tuple[Fetch, Any]]
OnWake = Callable[[Fetched], None]


def requeue_fetched(broker: SyncBroker, fetched: Fetched) -> None:
    """Put what a wake-up leased back at the front of pending (it arrived after its worker stopped fetching)."""
    calls = [protocol.requeue(f.qk, members) for f, reply in fetched if not isinstance(reply, Exception)
             and (members := [d.member for d in protocol.parse_dequeue(reply).deliveries])]
    if not calls:
        return
    try:
        broker.run_many(calls)
    except TRANSIENT_ERRORS as exc:
        log.warning("requeue_failed", error=str(exc), hint="the tasks return when their lease expires")


class Waker:
    """Blocks on wake lists while armed, fetches behind each wake-up and hands the result to ``on_wake``."""

    def __init__(
        self,
        queues: Sequence[QueueKeys],
        cluster: bool,
        block_s: float,
        broker_factory: Callable[[], SyncBroker],
        plan: Plan,
        release: Release,
        on_wake: OnWake,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        groups = _groups(queues, cluster)
        self._block_s = block_s
        self._plan = plan
        self._release = release
        self._armed = threading.Event()
        self._lock = threading.Lock()
        self._brokers: list[SyncBroker] = []
        self._stopped = threading.Event()
        self._on_wake = on_wake
        self._on_fatal = on_fatal
        self._threads = [
            threading.Thread(target=self._main, args=(group, broker_factory), name="router-waker", daemon=True)
            for group in groups.values()
        ]

    @staticmethod
    def thread_count(queues: Sequence[QueueKeys], cluster: bool) -> int:
        """How many wake-up threads (one per cluster slot the queues' wake lists hash to) a worker runs."""
        return len(_groups(queues, cluster))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def arm(self) -> None:
        """Ask the threads to block until work may be there."""
        self._armed.set()

    def halt(self) -> bool:
        """Stop without waiting: a blocked pop is cut short (Redis drops the client, so the dequeue behind it
        never runs). False when some pop cannot be cut short (a cluster client) and must be waited out."""
        self._stopped.set()
        self._armed.set()
        with self._lock:
            brokers = list(self._brokers)
        return all(b.interrupt() for b in brokers)

    def stop(self) -> None:
        """Halt and wait for the threads, so nothing is leased behind the worker's back once it hands back its
        tasks (a waker that got a reply after the halt requeues what it leased)."""
        waited_out = not self.halt()
        for t in self._threads:
            if t.is_alive():
                t.join(self._block_s + 1.0 if waited_out else 1.0)

    def _main(self, group: list[QueueKeys], broker_factory: Callable[[], SyncBroker]) -> None:
        try:
            broker = broker_factory()
            with self._lock:
                self._brokers.append(broker)
            wake_keys = [qk.wake for qk in group]
            backoff = 0.05
            while not self._stopped.is_set():
                self._armed.wait()
                if self._stopped.is_set():
                    break
                plan = self._plan(group)
                try:
                    woke, replies = broker.wait_wake_then(wake_keys, self._block_s, [f.call for f in plan])
                    backoff = 0.05
                except TRANSIENT_ERRORS:
                    # The main loop logs the outage; here we only avoid spinning.
                    self._release(plan)
                    self._stopped.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                fetched = list(zip(plan, replies))
                if self._stopped.is_set() or isinstance(woke, Exception):
                    requeue_fetched(broker, fetched)
                    self._release(plan)
                    if isinstance(woke, TRANSIENT_ERRORS):
                        # Refused for now (a failover under way: NOREPLICAS, READONLY): look again after a pause.
                        self._stopped.wait(backoff)
                        backoff = min(backoff * 2, 2.0)
                    elif isinstance(woke, Exception):
                        raise woke  # the pop itself was refused (ACL): this thread cannot go on
                elif woke or any(isinstance(r, Exception) or len(r) > 1 or r[0] for _, r in fetched):
                    self._armed.clear()
                    self._on_wake(fetched)  # a reply is [notes, *deliveries]
                else:
                    self._release(plan)
            broker.close()
        except BaseException as exc:
            self._on_fatal(exc)


def _groups(queues: Sequence[QueueKeys], cluster: bool) -> dict[int, list[QueueKeys]]:
    groups: dict[int, list[QueueKeys]] = {}
    for qk in queues:
        groups.setdefault(key_slot(qk.wake.encode()) if cluster else 0, []).append(qk)
    return groups
