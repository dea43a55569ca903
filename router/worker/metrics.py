"""Prometheus metrics of a worker: per task type, what it processed, failed, retried and archived (by reason), how
long handlers ran, and what runs now; plus the restarts of a ``--processes N`` group.

:class:`WorkerMetrics` is a :class:`~router.worker.observe.TaskObserver`: pass it as ``Worker(..., metrics=...)``.
``router worker --metrics-port`` serves ``/metrics``. A worker group (``--processes N``) serves one endpoint from its
parent, with prometheus_client's multiprocess mode: each child writes its values to files in a directory the parent
made (:func:`multiprocess_dir`, set before anything creates a metric), the parent reads them all at every scrape.
Counters of a child that died stay in the totals, so a restart never looks like a counter reset.
Every name and label is listed in docs/metrics.md.

This module is imported only when metrics are on.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from router.task import Task
from router.worker.observe import Settled

log = structlog.get_logger(__name__)

#: Handler durations: from a few milliseconds to an hour (the default timeout_s is 30 minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
                    3600.0)
_LABELS = ("service", "queue", "task_type")
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class WorkerMetrics:
    """The per-task-type metrics of one worker process (labels: service, queue, task_type)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        """Metrics are registered in ``registry`` (None: none, as in multiprocess mode, where the parent collects
        the children's files)."""
        self.service = service
        reg = registry
        self.processed = Counter("router_tasks_processed", "Deliveries whose handler succeeded (acknowledged).",
                                 _LABELS, registry=reg)
        self.failed = Counter("router_tasks_failed", "Deliveries that failed: retried or archived.", _LABELS,
                              registry=reg)
        self.retried = Counter("router_tasks_retried", "Failed deliveries scheduled to run again.", _LABELS,
                               registry=reg)
        self.archived = Counter("router_tasks_archived", "Deliveries dead-lettered, by reason.", (*_LABELS, "reason"),
                                registry=reg)
        self.duration = Histogram("router_task_duration_seconds", "Time a handler ran, successful or not.", _LABELS,
                                  buckets=DURATION_BUCKETS, registry=reg)
        self.in_flight = Gauge("router_tasks_in_flight", "Handlers running now (sampled every second).", _LABELS,
                               registry=reg, multiprocess_mode="livesum")
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._in_flight_seen: set[tuple[str, str]] = set()

    def _child(self, queue: str, task_type: str) -> tuple[Any, Any]:
        """(duration, processed) of one (queue, type), cached: labels() costs more than observe()."""
        key = (queue, task_type)
        found = self._children.get(key)
        if found is None:
            labels = (self.service, queue, task_type)
            found = self._children[key] = (self.duration.labels(*labels), self.processed.labels(*labels))
        return found

    def running(self, tasks: Sequence[Task]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for t in tasks:
            counts[(t.queue, t.type)] = counts.get((t.queue, t.type), 0) + 1
        for key in self._in_flight_seen | set(counts):
            self.in_flight.labels(self.service, *key).set(counts.get(key, 0))
        self._in_flight_seen |= set(counts)

    def task_finished(self, task: Task, duration_s: float, error: BaseException | None) -> None:
        self._child(task.queue, task.type)[0].observe(duration_s)

    def task_settled(self, queue: str, task_type: str, outcome: Settled, reason: str | None) -> None:
        if outcome == "processed":
            self._child(queue, task_type)[1].inc()
            return
        labels = (self.service, queue, task_type)
        self.failed.labels(*labels).inc()
        if outcome == "retried":
            self.retried.labels(*labels).inc()
        else:
            self.archived.labels(*labels, reason or "unknown").inc()


class GroupMetrics:
    """What the parent of a worker group counts: restarts of crashed worker processes."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.restarts = Counter("router_worker_process_restarts", "Worker processes restarted after a crash.",
                                ("service",), registry=registry).labels(service)
        self.restarts.inc(0)  # exported from the start, so an alert rule sees 0 rather than nothing


def multiprocess_dir() -> str:
    """Switch this process (and the children it forks) to prometheus_client's multiprocess mode, in a fresh
    directory; call it before any metric is created. Returns the directory (remove it with :func:`cleanup`)."""
    path = tempfile.mkdtemp(prefix="router-metrics-")
    os.environ[_MULTIPROC_ENV] = path
    # prometheus_client reads the variable once, at import.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def cleanup(path: str) -> None:
    """Leave multiprocess mode and remove its directory."""
    os.environ.pop(_MULTIPROC_ENV, None)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    shutil.rmtree(path, ignore_errors=True)


def process_died(pid: int, path: str) -> None:
    """Drop a dead worker process's live gauges (in-flight); its counters stay in the totals."""
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class _SettledCollector(Collector):
    """prometheus_client's multiprocess merge, robust to files caught mid-write. A child that is starting (a restart)
    or adding its first value of a label set can leave a file briefly shorter than its header says: such a read is
    tried again. A file that stays unreadable (a child killed in the middle of a write) is left out of the scrape
    and logged (``metrics_file_unreadable``), rather than failing every scrape from then on."""

    ATTEMPTS = 4

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self._path, "*.db"))
        for attempt in range(self.ATTEMPTS):
            try:
                return _merge(files)
            except FileNotFoundError:
                files = glob.glob(os.path.join(self._path, "*.db"))  # a dead child's live gauges were removed
            except Exception:
                time.sleep(0.02 * (attempt + 1))
        readable = []
        for f in files:
            try:
                _merge([f])
                readable.append(f)
            except FileNotFoundError:
                pass
            except Exception as exc:
                log.warning("metrics_file_unreadable", file=f, error=f"{type(exc).__name__}: {exc}")
        return _merge(readable)


def _merge(files: list[str]) -> list[Metric]:
    return list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]


def group_registry(path: str) -> CollectorRegistry:
    """A registry that reads every process's values from the multiprocess directory ``path``."""
    registry = CollectorRegistry()
    registry.register(_SettledCollector(path))
    return registry


def serve(port: int, addr: str, registry: CollectorRegistry) -> int:
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread; returns the port bound (``port`` 0
    picks a free one). Raises OSError when the address cannot be bound."""
    server, _ = start_http_server(port, addr=addr, registry=registry)
    return int(server.server_port)
