"""Read-only queries about a fleet, shared by the CLI (and later the dashboard): queue sizes, live workers, live
cron schedulers and each cron entry's last and next fire.

Answers are plain dataclasses (``dataclasses.asdict`` gives the JSON ``router status --format json`` prints), times
in milliseconds since the epoch, so a web page can render them in any zone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from router.clock import Clock, system_clock, to_ms
from router.registry.model import Registry, ServiceSpec
from router.scheduler.entries import select_entries
from router.storage.broker import SyncBroker
from router.storage.connection import Role, connect
from router.storage.keys import service_keys, service_queue_keys


@dataclass(frozen=True)
class QueueStatus:
    """How many tasks one queue of one service holds in each state, and who reads it."""

    service: str
    queue: str
    paused: bool
    sizes: dict[str, int]
    #: Live workers (by heartbeat) that read this queue.
    live_workers: int = 0
    #: Tasks are pending and no live worker reads the queue: they wait until one starts ("backlog, no worker").
    backlog_no_worker: bool = False


@dataclass(frozen=True)
class SchedulerStatus:
    """One live cron scheduler, merged from its heartbeats under every service whose entries it fires."""

    id: str
    host: str
    pid: int
    services: list[str]
    entries: list[str]
    started_ms: int
    at_ms: int
    quiet: bool
    stats: dict[str, int]


@dataclass(frozen=True)
class CronEntryStatus:
    """One cron entry of the registry: where it fires, when it last fired and when it fires next."""

    name: str
    task: str
    service: str
    queue: str
    spec: str
    timezone: str
    catch_up: str
    #: The latest fire claimed by any scheduler replica (ms), from its claim in Redis; None if none is remembered.
    last_fire_ms: int | None
    #: The next slot after now (ms), computed from the registry; None if the spec never fires again.
    next_fire_ms: int | None
    #: Live schedulers that fire this entry (0: nobody will fire it).
    schedulers: int


class Inspector:
    """Answers questions about the fleet from Redis, scoped by the registry."""

    def __init__(self, registry: Registry, url: str | None = None, *, clock: Clock = system_clock) -> None:
        self.registry = registry
        self._clock = clock
        self._broker = SyncBroker(connect(url or registry.redis_url, Role.CONSUMER))

    def _services(self, service: str | None) -> list[ServiceSpec]:
        return [s for s in self.registry.services.values() if service is None or s.name == service]

    def queues(self, service: str | None = None) -> list[QueueStatus]:
        """Sizes by state of every queue (of one service, or of the fleet), with the live workers reading it."""
        out = []
        for spec in self._services(service):
            qks = service_queue_keys(spec)
            readers: dict[str, int] = {}
            for doc in self.workers(spec.name):
                for queue in set(doc.get("queues") or ()):
                    readers[queue] = readers.get(queue, 0) + 1
            for qk, sizes, paused in zip(qks, self._broker.queue_sizes(qks), self._broker.paused(qks)):
                live = readers.get(qk.queue, 0)
                out.append(QueueStatus(spec.name, qk.queue, paused, sizes, live, sizes["pending"] > 0 and not live))
        return out

    def workers(self, service: str | None = None) -> list[dict[str, Any]]:
        """Heartbeat documents of live workers (of one service, or of the fleet)."""
        now_ms = to_ms(self._clock())
        docs: list[dict[str, Any]] = []
        for spec in self._services(service):
            docs.extend(_documents(self._broker.live_workers(service_keys(spec), now_ms)))
        return docs

    def schedulers(self, service: str | None = None) -> list[SchedulerStatus]:
        """Live cron schedulers (firing entries of one service, or of any), one per scheduler process."""
        now_ms = to_ms(self._clock())
        merged: dict[str, dict[str, Any]] = {}
        for spec in self._services(service):
            for doc in _documents(self._broker.live_schedulers(service_keys(spec), now_ms)):
                sid = str(doc.get("id"))
                into = merged.setdefault(sid, {**doc, "services": [], "entries": []})
                into["services"].append(spec.name)
                into["entries"].extend(e.get("name") for e in doc.get("entries") or () if isinstance(e, dict))
        return [SchedulerStatus(id=sid, host=str(d.get("host")), pid=int(d.get("pid") or 0),
                                services=d["services"], entries=d["entries"], started_ms=int(d.get("started_ms") or 0),
                                at_ms=int(d.get("at_ms") or 0), quiet=bool(d.get("quiet")),
                                stats=dict(d.get("stats") or {}))
                for sid, d in sorted(merged.items())]

    def cron_entries(self, service: str | None = None) -> list[CronEntryStatus]:
        """Every cron entry (of tasks one service owns, or all) with its last fire, next fire and schedulers."""
        entries = select_entries(self.registry, () if service is None else (service,))
        claims = self._broker.cron_claims([e.keys.cron(e.name) for e in entries])
        firing: dict[str, int] = {}
        for sched in self.schedulers(service):
            for name in sched.entries:
                firing[name] = firing.get(name, 0) + 1
        now = int(self._clock())
        out = []
        for entry, claim_ms in zip(entries, claims):
            following = entry.schedule.next_after(now)
            out.append(CronEntryStatus(
                name=entry.name, task=entry.spec.task, service=entry.service.name, queue=entry.queue,
                spec=entry.spec.spec, timezone=entry.spec.timezone, catch_up=entry.spec.catch_up.value,
                last_fire_ms=claim_ms, next_fire_ms=None if following is None else following * 1000,
                schedulers=firing.get(entry.name, 0),
            ))
        return out

    def close(self) -> None:
        self._broker.close()


def _documents(raw: list[bytes]) -> list[dict[str, Any]]:
    """Heartbeat documents that decode to JSON objects (anything else in Redis is skipped, not trusted)."""
    docs = []
    for item in raw:
        try:
            doc = json.loads(item)
        except ValueError:
            continue
        if isinstance(doc, dict):
            docs.append(doc)
    return docs
