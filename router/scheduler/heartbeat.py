"""The scheduler's heartbeat: who it is and, per entry it fires, the last and next fire, with a TTL.

A scheduler fires the entries of several services, and every key lives under its service's prefix, so it publishes
one document per service (``S:scheduler:<id>``, indexed in ``S:schedulers``) listing only that service's entries: a
service's ACL user sees its own schedulers and nothing else. ``router status`` and the inspector read them; a
scheduler that dies stops refreshing them and they expire after three periods.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from typing import TypedDict

from router.clock import to_ms
from router.scheduler.entries import Entry
from router.storage.broker import SyncBroker
from router.storage.keys import ServiceKeys, service_keys

#: Expired entries of a service's scheduler index are pruned on every this-many-th beat (readers filter anyway).
PRUNE_EVERY = 12


class CronEntryDoc(TypedDict):
    """One entry in a scheduler's heartbeat (JSON; a dashboard reads it as is)."""

    name: str
    task: str
    service: str
    queue: str
    spec: str
    timezone: str
    catch_up: str
    #: The latest fire claimed by any replica, as this scheduler knows it (ms since the epoch), or None.
    last_fire_ms: int | None
    #: The next slot this scheduler will fire (ms since the epoch), or None if the spec never fires again.
    next_fire_ms: int | None
    #: This scheduler's counts: fired, claimed_elsewhere (another replica won the slot), refused (the guard).
    counts: dict[str, int]


class SchedulerDoc(TypedDict):
    """A scheduler's heartbeat document under one service (JSON)."""

    id: str
    service: str
    host: str
    pid: int
    started_ms: int
    at_ms: int
    #: True after SIGTSTP: alive but not firing.
    quiet: bool
    entries: list[CronEntryDoc]
    stats: dict[str, int]


def entry_doc(entry: Entry) -> CronEntryDoc:
    """What the heartbeat says about ``entry``."""
    return CronEntryDoc(
        name=entry.name, task=entry.spec.task, service=entry.service.name, queue=entry.queue, spec=entry.spec.spec,
        timezone=entry.spec.timezone, catch_up=entry.spec.catch_up.value,
        last_fire_ms=None if entry.last_fire is None else entry.last_fire * 1000,
        next_fire_ms=None if entry.next_fire is None else entry.next_fire * 1000,
        counts=dict(entry.counts),
    )


class SchedulerHeartbeat:
    """Publishes one scheduler's heartbeat documents, one per service whose entries it fires."""

    def __init__(self, scheduler_id: str, entries: Sequence[Entry], period_s: float, started_s: float) -> None:
        self.scheduler_id = scheduler_id
        self._by_service: dict[ServiceKeys, list[Entry]] = {}
        for entry in entries:
            self._by_service.setdefault(service_keys(entry.service), []).append(entry)
        self._ttl_ms = to_ms(period_s * 3)
        self._started_ms = to_ms(started_s)
        self._beats = 0

    def beat(self, broker: SyncBroker, now: float, stats: Mapping[str, int], quiet: bool = False) -> None:
        """Publish every document now (one round trip per service)."""
        now_ms = to_ms(now)
        self._beats += 1
        prune = self._beats % PRUNE_EVERY == 1
        for sk, entries in self._by_service.items():
            doc = SchedulerDoc(id=self.scheduler_id, service=sk.service, host=socket.gethostname(), pid=os.getpid(),
                               started_ms=self._started_ms, at_ms=now_ms, quiet=quiet,
                               entries=[entry_doc(e) for e in entries], stats=dict(stats))
            broker.scheduler_heartbeat(sk, self.scheduler_id, json.dumps(doc), now_ms, self._ttl_ms, prune)

    def withdraw(self, broker: SyncBroker) -> None:
        """Remove the documents at a clean exit."""
        for sk in self._by_service:
            broker.remove_scheduler(sk, self.scheduler_id)
