"""``router status``: the fleet's state gathered from the inspector in one value, and its text and JSON forms."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from router.ops.inspector import Inspector
from router.ops.views import CronEntryStatus, QueueStatus, SchedulerStatus
from router.task import TaskState

BACKLOG_NO_WORKER = "(backlog, no worker)"


@dataclass(frozen=True)
class FleetStatus:
    """Everything ``router status`` shows (of one service, or of the fleet)."""

    queues: list[QueueStatus]
    workers: list[dict[str, Any]]
    schedulers: list[SchedulerStatus]
    cron: list[CronEntryStatus]

    def to_json(self) -> dict[str, Any]:
        return {"queues": [dataclasses.asdict(q) for q in self.queues], "workers": self.workers,
                "schedulers": [dataclasses.asdict(s) for s in self.schedulers],
                "cron": [dataclasses.asdict(c) for c in self.cron]}


def gather(inspector: Inspector, service: str | None = None) -> FleetStatus:
    """Read the whole status from Redis."""
    return FleetStatus(inspector.queues(service), inspector.workers(service), inspector.schedulers(service),
                       inspector.cron_entries(service))


def _when(ms: int | None, tz: str) -> str:
    """A time in the entry's own zone (the zone its spec is read in), or '-'."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).isoformat(timespec="seconds")


def render(status: FleetStatus) -> list[str]:
    """The text form: queues by state, live workers, live schedulers, cron entries."""
    states = [s.value for s in TaskState]
    lines = [f"{'service':<14}{'queue':<14}" + "".join(f"{s:>12}" for s in states)]
    for q in status.queues:
        flags = (" (paused)" if q.paused else "") + (f" {BACKLOG_NO_WORKER}" if q.backlog_no_worker else "")
        lines.append(f"{q.service:<14}{q.queue:<14}" + "".join(f"{q.sizes[s]:>12}" for s in states) + flags)
    lines.append(f"\n{len(status.workers)} live worker(s)")
    for w in status.workers:
        lines.append(f"  {w.get('service')!s:<12} {w.get('id')}  pid {w.get('pid')}  concurrency "
                     f"{w.get('concurrency')}  active {w.get('active')}  "
                     f"handlers: {', '.join(map(str, w.get('handlers') or ()))}")
    lines.append(f"\n{len(status.schedulers)} live scheduler(s)")
    for s in status.schedulers:
        quiet = "  (quiet: SIGTSTP)" if s.quiet else ""
        lines.append(f"  {s.id}  pid {s.pid}  services: {', '.join(s.services)}  entries: {len(s.entries)}  "
                     f"fired {s.stats.get('fired', 0)}{quiet}")
    if status.cron:
        lines.append(f"\n{'cron entry':<26}{'task':<20}{'spec':<16}{'timezone':<18}{'catch_up':<10}"
                     f"{'last fire':<27}{'next fire':<27}schedulers")
    for c in status.cron:
        lines.append(f"{c.name:<26}{c.task:<20}{c.spec:<16}{c.timezone:<18}{c.catch_up:<10}"
                     f"{_when(c.last_fire_ms, c.timezone):<27}{_when(c.next_fire_ms, c.timezone):<27}{c.schedulers}")
    return lines
