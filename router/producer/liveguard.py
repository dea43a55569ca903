"""The optional live guard: refuse task types that no live worker of their owning service handles.

Workers publish their handler sets with their heartbeats. With the live guard on, a client reads those heartbeats
(one extra round trip per service, at most once per ``ttl_s``) and refuses an enqueue whose owner has no live
worker with a handler for it: the "scheduler runs but no server" trap, caught at the producer. This module holds
the cache and the decision; the clients do the reading.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence

from router.clock import Clock
from router.errors import NoLiveWorker
from router.producer.guard import Route
from router.registry.model import Registry
from router.storage.keys import ServiceKeys, service_keys


class LiveHandlers:
    """Task types handled by live workers, per service, refreshed when older than ``ttl_s``."""

    def __init__(self, registry: Registry, ttl_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._clock = clock
        self._seen: dict[str, tuple[float, frozenset[str], int]] = {}

    def stale(self, routes: Iterable[Route]) -> list[ServiceKeys]:
        """Service keys whose live handler sets must be read before ``routes`` can be checked."""
        now = self._clock()
        out: dict[str, ServiceKeys] = {}
        for route in routes:
            seen = self._seen.get(route.service)
            if seen is None or now - seen[0] > self._ttl_s:
                out[route.service] = service_keys(self._registry.services[route.service])
        return list(out.values())

    def update(self, service: str, heartbeats: Sequence[bytes]) -> None:
        """Record the heartbeat documents just read for ``service``."""
        handled: set[str] = set()
        for raw in heartbeats:
            try:
                handled.update(json.loads(raw).get("handlers", []))
            except (ValueError, AttributeError, TypeError):
                continue  # a malformed heartbeat proves no live handler
        self._seen[service] = (self._clock(), frozenset(handled), len(heartbeats))

    def check(self, routes: Iterable[Route]) -> None:
        """Raise NoLiveWorker for the first route whose type no live worker of its owner handles."""
        for route in routes:
            _, handled, workers = self._seen[route.service]
            if route.task_type not in handled:
                raise NoLiveWorker(route.task_type, route.service, workers)
