"""What ``router worker`` does: load the registry and the service's handler set, then run a worker group."""

from __future__ import annotations

from dataclasses import dataclass, replace

from router.appload import load_app
from router.config import load
from router.supervisor import run_group
from router.worker import Worker, WorkerSettings


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


def run_worker(cmd: WorkerCommand) -> int:
    """Run the worker group to completion; returns the process exit code.

    Raises ConfigError for a bad registry, KeyError for an unknown service, HandlerError when the handler set
    cannot be imported or disagrees with the registry (unless overridden).
    """
    registry = load(cmd.registry_path)
    spec = registry.service(cmd.service)
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

    return run_group(cmd.processes, one_process)
