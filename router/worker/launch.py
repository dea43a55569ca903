"""What ``router worker`` does: load the registry and the service's handler set, then run a worker group.

Service code is imported the same way ``router validate --import`` imports it: from ``app_dir`` when given,
else from the registry file's directory (put first on ``sys.path``), so code that sits next to services.yaml
imports without any PYTHONPATH set-up.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

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


def service_code_dir(registry_path: str, app_dir: str | None) -> str:
    """Where service code is imported from: ``app_dir``, else the registry file's directory."""
    return app_dir if app_dir is not None else os.path.dirname(os.path.abspath(registry_path))


def run_worker(cmd: WorkerCommand, exit_code: ExitCodeFor = lambda exc: None) -> int:
    """Run the worker group to completion; returns the process exit code (``exit_code`` maps a child's error).

    Raises ConfigError for a bad registry, UnknownService, HandlerError when the handler set cannot be imported or
    disagrees with the registry (unless overridden), BrokerError when Redis refuses us, WorkerCrashed.
    """
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

    def one_process() -> int:
        worker = Worker(registry, app, service=spec.name, url=cmd.url, settings=settings,
                        allow_handler_mismatch=cmd.allow_handler_mismatch)
        worker.run(burst=cmd.burst)
        return 0

    return run_group(cmd.processes, one_process, exit_code)
