"""The worker's heartbeat: who it is, what it handles and runs, published under its service's keys with a TTL.

``router status``, the live guard (producers refusing types no live worker handles) and operators read these
documents; a worker that dies simply stops refreshing its entry, which expires after three periods.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable

from router.clock import Clock, to_ms
from router.storage.broker import SyncBroker
from router.storage.keys import ServiceKeys
from router.worker.state import Delivery

#: Expired entries of the service's worker index are pruned on every this-many-th beat (readers filter anyway).
PRUNE_EVERY = 12
#: Running task ids listed per heartbeat, at most.
MAX_LISTED_TASKS = 100


class Heartbeat:
    """Publishes one worker's heartbeat document."""

    def __init__(self, keys: ServiceKeys, worker_id: str, queues: list[str], handlers: Iterable[str],
                 concurrency: int, period_s: float, clock: Clock) -> None:
        self._keys = keys
        self._worker_id = worker_id
        self._static = {
            "id": worker_id,
            "service": keys.service,
            "queues": queues,
            "handlers": sorted(handlers),
            "concurrency": concurrency,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        self._ttl_ms = to_ms(period_s * 3)
        self._clock = clock
        self._beats = 0
        self._static["started_ms"] = to_ms(clock())

    def beat(self, broker: SyncBroker, running: Iterable[Delivery]) -> None:
        """Publish the document now (running: the worker's leased deliveries)."""
        now_ms = to_ms(self._clock())
        runs = list(running)
        started = [r for r in runs if r.started is not None][:MAX_LISTED_TASKS]
        now_m = time.monotonic()
        doc = {
            **self._static,
            "pid": os.getpid(),
            "active": len(runs),
            "active_tasks": [r.task.id for r in started],
            # What runs now, for the Inspector (router workers): a handler's start time in the wall clock.
            "running": [{"id": r.task.id, "type": r.task.type, "queue": r.task.queue,
                         "started_ms": now_ms - to_ms(now_m - (r.started or now_m))} for r in started],
            "at_ms": now_ms,
        }
        self._beats += 1
        prune = self._beats % PRUNE_EVERY == 1
        broker.heartbeat(self._keys, self._worker_id, json.dumps(doc), now_ms, self._ttl_ms, prune)

    def withdraw(self, broker: SyncBroker) -> None:
        """Remove the entry at a clean exit."""
        broker.remove_worker(self._keys, self._worker_id)
