"""Stopping the tasks someone cancelled while this worker held them.

``Client.cancel`` ends a task that has not started at once (lua/cancel.lua); for a leased one it leaves a request in
``Q:cancelreq``. The worker looks for requests naming its deliveries every :data:`CANCEL_POLL_S` while it holds
any (one HMGET per queue). A delivery still waiting for a handler slot never starts and ends as cancelled; a
running one has ``task.cancelled`` set, and an ``async def`` handler is cancelled outright. Its outcome then
settles it: an error (:class:`~router.errors.TaskCancelled`, the asyncio cancellation, anything) ends it as
cancelled (lua/cancelled.lua), a normal return completes it. If the worker dies first, the task's next dequeue
finds the request and ends it instead of running it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import structlog

from router.storage.broker import SyncBroker
from router.storage.keys import QueueKeys
from router.worker.state import Delivery

log = structlog.get_logger(__name__)

#: How often a worker holding tasks looks for cancel requests: the longest a cancelled running task goes unnoticed.
CANCEL_POLL_S = 1.0


class Cancellations:
    """Finds cancel requests for this worker's deliveries and acts on them."""

    def __init__(self, claim_lock: threading.Lock, stop_async: Callable[[Delivery], None],
                 end_unstarted: Callable[[Delivery], None]) -> None:
        self._claim_lock = claim_lock
        self._stop_async = stop_async
        self._end_unstarted = end_unstarted

    def poll(self, broker: SyncBroker, held: Iterable[Delivery]) -> None:
        """Look for requests naming the ``held`` deliveries and stop those tasks."""
        by_queue: dict[QueueKeys, list[str]] = {}
        index: dict[tuple[QueueKeys, str], Delivery] = {}
        for run in held:
            if not (run.abandoned or run.cancel_requested):
                by_queue.setdefault(run.qk, []).append(run.task.id)
                index[(run.qk, run.task.id)] = run
        for qk, task_id in broker.cancel_requests(by_queue):
            self.stop(index[(qk, task_id)])

    def stop(self, run: Delivery) -> None:
        """Stop one delivery: unstarted, it never starts; running, its handler is told (async ones cancelled)."""
        with self._claim_lock:  # ordered with the handler thread's claim: it either starts now or never
            run.cancel_requested = True
            unstarted = run.started is None and not run.finished
            if unstarted:
                run.abandoned = True
        log.info("task_cancel_requested", task_id=run.task.id, type=run.task.type, queue=run.qk.queue,
                 started=not unstarted)
        if unstarted:
            self._end_unstarted(run)
            return
        run.task.cancelled.set()
        if run.is_async:
            self._stop_async(run)
