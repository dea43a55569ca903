"""The fleet's Prometheus gauges, read through the Inspector at every scrape: tasks by state, the oldest pending
task's age, paused flags, all-time counters and live workers, per queue and per service; live cron schedulers per
service and each cron entry's last and next fire and the schedulers firing it.

:class:`FleetCollector` is a prometheus_client collector; ``router exporter`` serves it (:func:`serve_exporter`), and a
dashboard can register it in its own registry. One scrape costs Redis one script call per queue (all in one round
trip) and one heartbeat read per service. When Redis cannot be read the scrape still answers, with
``router_redis_up 0`` and nothing else, so an alert can tell "Redis down" from "exporter down".
Every name and label is listed in docs/metrics.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from router.errors import BrokerError
from router.ops.inspector import Inspector

log = structlog.get_logger(__name__)

_QUEUE = ("service", "queue")


class FleetCollector(Collector):
    """Collects the queue and service gauges of the fleet (or of ``service``) from ``inspector`` at each scrape."""

    def __init__(self, inspector: Inspector, service: str | None = None) -> None:
        self._inspector = inspector
        self._service = service

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected on demand only: registering must not read Redis

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        start = time.perf_counter()
        up = GaugeMetricFamily("router_redis_up", "1 when the exporter could read the fleet from Redis.")
        try:
            queues = self._inspector.overview(self._service)
            workers = self._inspector.live_workers(self._service)
            schedulers = self._inspector.schedulers(self._service)
            entries = self._inspector.cron_entries(self._service)
        except (RedisError, BrokerError) as exc:
            log.warning("exporter_scrape_failed", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        tasks = GaugeMetricFamily("router_queue_tasks", "Tasks in the queue, by state.", labels=[*_QUEUE, "state"])
        age = GaugeMetricFamily("router_queue_oldest_pending_age_seconds",
                                "Age of the oldest pending task since it was enqueued (0 when none is pending).",
                                labels=_QUEUE)
        paused = GaugeMetricFamily("router_queue_paused", "1 while the queue is paused.", labels=_QUEUE)
        readers = GaugeMetricFamily("router_queue_live_workers", "Live workers reading the queue.", labels=_QUEUE)
        processed = CounterMetricFamily("router_queue_processed", "Deliveries completed since the queue was created "
                                        "(all workers).", labels=_QUEUE)
        failed = CounterMetricFamily("router_queue_failed", "Deliveries that failed (retried or archived) since the "
                                     "queue was created (all workers).", labels=_QUEUE)
        for q in queues:
            labels = [q.service, q.queue]
            for state, n in q.sizes.items():
                tasks.add_metric([*labels, state], n)
            age.add_metric(labels, q.latency_s or 0.0)
            paused.add_metric(labels, 1 if q.paused else 0)
            readers.add_metric(labels, q.live_workers)
            processed.add_metric(labels, q.processed)
            failed.add_metric(labels, q.failed)
        live = GaugeMetricFamily("router_service_live_workers", "Live worker processes of the service (by heartbeat).",
                                 labels=["service"])
        services = [self._service] if self._service else list(self._inspector.registry.services)
        for name in services:
            live.add_metric([name], sum(1 for w in workers if w.service == name))
        live_schedulers = GaugeMetricFamily("router_service_live_schedulers", "Live cron schedulers firing the "
                                            "service's entries (by heartbeat).", labels=["service"])
        for name in services:
            live_schedulers.add_metric([name], sum(1 for x in schedulers if name in x.services))
        entry_labels = ["entry", "service", "queue", "task_type"]
        last = GaugeMetricFamily("router_cron_last_fire_timestamp_seconds", "When the entry last fired (claimed by "
                                 "any scheduler replica), as a Unix time; absent until it has fired.",
                                 labels=entry_labels)
        following = GaugeMetricFamily("router_cron_next_fire_timestamp_seconds", "When the entry fires next, as a "
                                      "Unix time.", labels=entry_labels)
        firing = GaugeMetricFamily("router_cron_entry_schedulers", "Live schedulers firing the entry (0: nobody "
                                   "will).", labels=entry_labels)
        for e in entries:
            labels = [e.name, e.service, e.queue, e.task]
            if e.last_fire_ms is not None:
                last.add_metric(labels, e.last_fire_ms / 1000)
            if e.next_fire_ms is not None:
                following.add_metric(labels, e.next_fire_ms / 1000)
            firing.add_metric(labels, e.schedulers)
        yield from (tasks, age, paused, readers, processed, failed, live, live_schedulers, last, following, firing)
        took = GaugeMetricFamily("router_exporter_scrape_duration_seconds", "How long reading the fleet took.")
        took.add_metric([], time.perf_counter() - start)
        yield took


def exporter_registry(inspector: Inspector, service: str | None = None) -> CollectorRegistry:
    """A registry holding only the fleet's collector (what ``router exporter`` serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(inspector, service))
    return registry
