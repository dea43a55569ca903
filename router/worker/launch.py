"""What ``router worker`` does: load the registry and the service's handler set, then run a worker group.

Service code is imported the same way ``router validate --import`` imports it: from ``app_dir`` when given,
else from the registry file's directory (put first on ``sys.path``), so code that sits next to services.yaml
imports without any PYTHONPATH set-up. With a metrics port, the process (or the group's parent) serves Prometheus
metrics (:mod:`router.worker.metrics`, imported only then).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from router.errors import ServeError
from router.registry.appload import load_app
from router.registry.loader import load
from router.worker.settings import WorkerSettings
from router.worker.supervisor import ExitCodeFor, run_group
from router.worker.worker import Worker


@dataclass(frozen=True)
class WorkerCommand:
    """Everything ``router worker`` was asked to do."""

    registry_path: str
    service: str
    url: str | None = None
    processes: int = 1
    burst: bool = False
    allow_handler_mismatch: bool = False
    settings: WorkerSettings | None = None
    app_dir: str | None = None
    #: Serve Prometheus metrics on this port (0: any free one, logged as metrics_serving); None: no metrics.
    metrics_port: int | None = None
    metrics_addr: str = "0.0.0.0"

log = structlog.get_logger(__name__)


def service_code_dir(registry_path: str, app_dir: str | None) -> str:
    """Where service code is imported from: ``app_dir``, else the registry file's directory."""
    return app_dir if app_dir is not None else os.path.dirname(os.path.abspath(registry_path))


def run_worker(cmd: WorkerCommand, exit_code: ExitCodeFor = lambda exc: None) -> int:
    """Run the worker group to completion; returns the process exit code (``exit_code`` maps a child's error).

    Raises ConfigError for a bad registry, UnknownService, HandlerError when the handler set cannot be imported or
    disagrees with the registry (unless overridden), BrokerError when Redis refuses us, WorkerCrashed.
    """
    # Multiprocess metrics must be on before anything (the service's code included) creates a metric.
    shared_dir = _multiprocess_dir() if cmd.metrics_port is not None and cmd.processes > 1 else None
    try:
        return _run(cmd, exit_code, shared_dir)
    finally:
        if shared_dir is not None:
            from router.worker import metrics  # noqa: PLC0415 - only with metrics on

            metrics.cleanup(shared_dir)


def _multiprocess_dir() -> str:
    from router.worker import metrics  # noqa: PLC0415 - only with metrics on

    return metrics.multiprocess_dir()


def _run(cmd: WorkerCommand, exit_code: ExitCodeFor, shared_dir: str | None) -> int:
    registry = load(cmd.registry_path)
    spec = registry.service(cmd.service)
    code_dir = service_code_dir(cmd.registry_path, cmd.app_dir)
    if code_dir not in sys.path:  # for the process's life: handlers may import more of their code lazily
        sys.path.insert(0, code_dir)
    app = load_app(spec)
    settings = cmd.settings or WorkerSettings()
    if settings.concurrency <= 0:  # 0 means "the service's default from the registry"
        settings = replace(settings, concurrency=spec.concurrency)
    # Build one worker up front so a handler mismatch fails before any process is forked.
    Worker(registry, app, service=spec.name, url=cmd.url, settings=settings,
           allow_handler_mismatch=cmd.allow_handler_mismatch)

    new_metrics, on_restart = _serve_metrics(cmd, spec.name, shared_dir)

    def one_process() -> int:
        worker = Worker(registry, app, service=spec.name, url=cmd.url, settings=settings,
                        allow_handler_mismatch=cmd.allow_handler_mismatch, metrics=new_metrics())
        worker.run(burst=cmd.burst)
        return 0

    return run_group(cmd.processes, one_process, exit_code, on_restart)


def _serve_metrics(cmd: WorkerCommand, service: str, shared_dir: str | None
                   ) -> tuple[Callable[[], Any], Callable[[int], None] | None]:
    """Start serving /metrics if asked; returns what makes each worker process's metrics, and what to do when the
    group restarts a crashed child."""
    if cmd.metrics_port is None:
        return lambda: None, None
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 - only with metrics on

    from router.worker import metrics  # noqa: PLC0415

    if shared_dir is not None:  # a group: the parent serves what every child writes to the shared directory
        group = metrics.GroupMetrics(service)
        served = metrics.group_registry(shared_dir)

        def restarted(pid: int) -> None:
            metrics.process_died(pid, shared_dir)
            group.restarts.inc()

        make, on_restart = (lambda: metrics.WorkerMetrics(service)), restarted
    else:
        served = CollectorRegistry()
        metrics.GroupMetrics(service, served)
        one = metrics.WorkerMetrics(service, served)
        make, on_restart = (lambda: one), None
    try:
        port = metrics.serve(cmd.metrics_port, cmd.metrics_addr, served)
    except OSError as exc:
        raise ServeError("worker metrics", cmd.metrics_addr, cmd.metrics_port, exc) from exc
    log.info("metrics_serving", service=service, addr=cmd.metrics_addr, port=port, processes=cmd.processes)
    return make, on_restart
