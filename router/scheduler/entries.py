"""What a scheduler fires: the registry's cron entries, each bound to its schedule, its target queue's keys and the
in-memory state of its firing (cursor, last and next fire).

Fire times become task ids here (:func:`cron_task_id`), so every replica names the fire of one slot alike.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from router.registry.model import CronSpec, Registry, ServiceSpec
from router.registry.payloads import thaw
from router.scheduler.cron import CronSchedule
from router.storage.keys import QueueKeys, queue_keys


def cron_task_id(entry: str, fire_s: int) -> str:
    """The task id of the fire of ``entry`` at ``fire_s``: ``cron:<entry>:<fire time in ms>``."""
    return f"cron:{entry}:{fire_s * 1000}"


@dataclass(eq=False)
class Entry:
    """One cron entry as a scheduler fires it."""

    spec: CronSpec
    service: ServiceSpec
    keys: QueueKeys
    schedule: CronSchedule
    #: The payload as plain JSON values (the registry's is frozen), validated again by the guard at every fire.
    payload: dict[str, Any]
    #: Every slot at or before this (seconds) has been dealt with by this process; None until the first tick.
    cursor: int | None = None
    #: The latest fire claimed by any replica, as far as this process knows (seconds).
    last_fire: int | None = None
    #: The first slot after ``cursor`` (seconds), None when the spec never fires again.
    next_fire: int | None = None
    #: Counters of this entry's fires by this process.
    counts: dict[str, int] = field(default_factory=lambda: {"fired": 0, "claimed_elsewhere": 0, "refused": 0})

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def queue(self) -> str:
        return self.keys.queue

    def advance(self, cursor: int) -> None:
        """Mark every slot up to ``cursor`` as dealt with, and look up the next one."""
        self.cursor = cursor
        self.next_fire = self.schedule.next_after(cursor)


def select_entries(registry: Registry, services: Collection[str] = ()) -> list[Entry]:
    """The registry's cron entries (only those whose task one of ``services`` owns, when given), in order.

    Raises UnknownService (via ``Registry.service``) for a name the registry does not declare.
    """
    wanted = {registry.service(name).name for name in services}
    entries: list[Entry] = []
    for spec in registry.cron:
        task = registry.tasks[spec.task]
        if wanted and task.service not in wanted:
            continue
        service = registry.services[task.service]
        entries.append(Entry(spec, service, queue_keys(service, task.queue), CronSchedule(spec.spec, spec.timezone),
                             thaw(spec.payload)))
    return entries
