"""The trap Asynq users fall into: a scheduler that fires happily into a queue no worker reads.

After firing, the scheduler asks whether any live worker of the entry's service reads the entry's queue (workers
publish their service and queues in their heartbeats). If none does, it logs ``no_live_worker`` at most once per
entry per ``no_worker_warn_s`` (not once per tick: an every-second entry would drown the log) and counts it.
``router status`` shows the same condition per queue as "backlog, no worker".
"""

from __future__ import annotations

import json

import structlog

from router.clock import to_ms
from router.scheduler.entries import Entry
from router.storage.broker import SyncBroker
from router.storage.keys import service_keys

log = structlog.get_logger(__name__)


def queues_read(docs: list[bytes]) -> set[str]:
    """The queues that the live workers described by heartbeat documents ``docs`` read (unreadable ones skipped)."""
    queues: set[str] = set()
    for raw in docs:
        try:
            doc = json.loads(raw)
            queues.update(q for q in doc.get("queues", ()) if isinstance(q, str))
        except (ValueError, TypeError, AttributeError):
            continue
    return queues


class NoWorkerWatch:
    """Warns, rate-limited per entry, when an entry fires into a queue no live worker reads."""

    def __init__(self, live_check_s: float, warn_every_s: float) -> None:
        self._live_check_s = live_check_s
        self._warn_every_s = warn_every_s
        self._read: dict[str, tuple[float, set[str]]] = {}  # service -> (read at, queues its live workers read)
        self._warned: dict[str, float] = {}  # entry -> when it was last warned about
        #: How many ``no_live_worker`` warnings were logged.
        self.warnings = 0

    def check(self, broker: SyncBroker, entry: Entry, now: float) -> bool:
        """After ``entry`` fired at ``now`` (seconds): warn if no live worker reads its queue and the entry was not
        warned about within the period. Returns whether a warning was logged."""
        last = self._warned.get(entry.name)
        if last is not None and 0 <= now - last < self._warn_every_s:
            return False  # rate-limited: no need to read heartbeats either
        if entry.queue in self._live_queues(broker, entry, now):
            return False
        self._warned[entry.name] = now
        self.warnings += 1
        log.warning("no_live_worker", entry=entry.name, task=entry.spec.task, service=entry.service.name,
                    queue=entry.queue, hint=f"the task waits in the queue until a worker runs: start "
                    f"`router worker --service {entry.service.name}`")
        return True

    def _live_queues(self, broker: SyncBroker, entry: Entry, now: float) -> set[str]:
        service = entry.service.name
        cached = self._read.get(service)
        if cached is not None and 0 <= now - cached[0] < self._live_check_s:
            return cached[1]
        queues = queues_read(broker.live_workers(service_keys(entry.service), to_ms(now)))
        self._read[service] = (now, queues)
        return queues
