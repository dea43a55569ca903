"""The frozen, validated registry: what ``router.load`` returns and everything else reads.

These are plain values. Nothing here parses YAML or reads the environment: ``router.registry.loader`` builds them once,
at the edge, and the client, guard and workers only look things up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from router.errors import UnknownService


class PriorityMode(str, Enum):
    """How a worker picks among its service's queues."""

    WEIGHTED = "weighted"
    STRICT = "strict"


class CatchUp(str, Enum):
    """What a cron entry fires for slots missed while no scheduler could fire (docs/scheduler.md)."""

    LATEST = "latest"  # the most recent missed slot, once
    ALL = "all"  # every missed slot within the scheduler's catch-up window
    NONE = "none"  # nothing; only slots that come while a scheduler runs


@dataclass(frozen=True)
class SourceLocation:
    """Where a declaration came from, for error messages."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class QueueSpec:
    """One queue of one service. ``weight`` orders queues under strict priority (highest first)."""

    name: str
    weight: int = 1


class UniquePolicy(str, Enum):
    """How long a unique task's lock refuses duplicates."""

    #: For ``unique_s`` seconds after the enqueue, whatever happens to the task.
    TTL = "ttl"
    #: Until the task completes, is archived or cancelled (``unique_s`` then only bounds a lock whose task was lost).
    UNTIL_FINISHED = "until_finished"


@dataclass(frozen=True)
class AggregateSpec:
    """Group aggregation: members wait in their group until a bound is reached, then one ``into`` task gets them."""

    into: str
    #: Flush a group once no member has joined it for this long.
    grace_s: float
    #: Flush a group once its oldest member has waited this long.
    max_delay_s: float
    #: Flush a group as soon as it holds this many members.
    max_size: int


@dataclass(frozen=True)
class TaskSpec:
    """A task type: its owner, queue, payload schema and failure policy."""

    type: str
    service: str
    queue: str
    payload_schema: Mapping[str, Any]
    max_retry: int = 25
    timeout_s: float = 1800.0
    unique_s: float | None = None
    unique_policy: UniquePolicy = UniquePolicy.TTL
    retention_s: float | None = None
    aggregate: AggregateSpec | None = None
    location: SourceLocation | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the fleet: its key prefix, queues, handler set and tasks."""

    name: str
    prefix: str
    queues: tuple[QueueSpec, ...]
    tasks: Mapping[str, TaskSpec]
    app: str | None = None
    concurrency: int = 10
    priority: PriorityMode = PriorityMode.WEIGHTED
    location: SourceLocation | None = field(default=None, compare=False)
    app_location: SourceLocation | None = field(default=None, compare=False)

    def queue(self, name: str) -> QueueSpec | None:
        """The queue called ``name``, or None when this service has no such queue."""
        for q in self.queues:
            if q.name == name:
                return q
        return None


@dataclass(frozen=True)
class CronSpec:
    """A periodic enqueue of ``task`` with ``payload`` on a cron ``spec`` in ``timezone``; ``catch_up`` says what
    to fire for slots missed during downtime."""

    name: str
    task: str
    spec: str
    timezone: str = "UTC"
    payload: Mapping[str, Any] = field(default_factory=dict)
    catch_up: CatchUp = CatchUp.LATEST
    location: SourceLocation | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Registry:
    """The whole fleet: services by name, tasks by type, cron entries, Redis URL and limits."""

    services: Mapping[str, ServiceSpec]
    tasks: Mapping[str, TaskSpec]
    cron: tuple[CronSpec, ...] = ()
    redis_url: str = "redis://localhost:6379/0"
    max_payload_bytes: int = 512 * 1024
    max_result_bytes: int = 1024 * 1024
    path: str = "<memory>"

    def service(self, name: str) -> ServiceSpec:
        """The service called ``name``; raises :class:`~router.errors.UnknownService` (a KeyError) when absent."""
        try:
            return self.services[name]
        except KeyError:
            raise UnknownService(name, sorted(self.services)) from None
