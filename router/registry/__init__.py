"""The registry: services.yaml -> a frozen, validated :class:`Registry` (see docs/architecture.md)."""

from __future__ import annotations

from router.registry.loader import load
from router.registry.model import (
    AggregateSpec,
    CronSpec,
    PriorityMode,
    QueueSpec,
    Registry,
    ServiceSpec,
    SourceLocation,
    TaskSpec,
    UniquePolicy,
)

__all__ = ["AggregateSpec", "CronSpec", "PriorityMode", "QueueSpec", "Registry", "ServiceSpec", "SourceLocation",
           "TaskSpec", "UniquePolicy", "load"]
