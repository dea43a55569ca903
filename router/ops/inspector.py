"""Read-only queries about a fleet, shared by the CLI (and later the dashboard): queue sizes and live workers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from router.registry.model import Registry
from router.storage.broker import SyncBroker
from router.storage.connection import Role, connect
from router.storage.keys import service_keys, service_queue_keys


@dataclass(frozen=True)
class QueueStatus:
    """How many tasks one queue of one service holds in each state."""

    service: str
    queue: str
    paused: bool
    sizes: dict[str, int]


class Inspector:
    """Answers questions about the fleet from Redis, scoped by the registry."""

    def __init__(self, registry: Registry, url: str | None = None) -> None:
        self.registry = registry
        self._broker = SyncBroker(connect(url or registry.redis_url, Role.CONSUMER))

    def queues(self, service: str | None = None) -> list[QueueStatus]:
        """Sizes by state of every queue (of one service, or of the fleet)."""
        out = []
        for spec in self.registry.services.values():
            if service is not None and spec.name != service:
                continue
            qks = service_queue_keys(spec)
            for qk, sizes, paused in zip(qks, self._broker.queue_sizes(qks), self._broker.paused(qks)):
                out.append(QueueStatus(spec.name, qk.queue, paused, sizes))
        return out

    def workers(self, service: str | None = None) -> list[dict[str, Any]]:
        """Heartbeat documents of live workers (of one service, or of the fleet)."""
        now_ms = int(time.time() * 1000)
        docs: list[dict[str, Any]] = []
        for spec in self.registry.services.values():
            if service is not None and spec.name != service:
                continue
            docs.extend(json.loads(raw) for raw in self._broker.live_workers(service_keys(spec), now_ms))
        return docs

    def close(self) -> None:
        self._broker.close()
