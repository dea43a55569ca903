"""The ``router`` command line: each command parses its arguments, configures logging, calls one library function
and maps the outcome to the exit codes of :mod:`router.ops.exitcodes` (docs/cli.md documents both)."""

from __future__ import annotations

import dataclasses
import json
import os
from importlib.metadata import PackageNotFoundError, version

import click
from redis.exceptions import RedisError

from router.errors import RouterError
from router.ops import cli_exporter, cli_inspect, cli_task
from router.ops.cliutil import DEFAULT_REGISTRY
from router.ops.cliutil import fail as _fail
from router.ops.cliutil import fail_for as _fail_for
from router.ops.cliutil import registry_option as _registry_option
from router.ops.cliutil import url_option as _url_option
from router.ops.cliutil import with_logs as _with_logs
from router.ops.demo import run_demo
from router.ops.exitcodes import ExitCode, exit_code_for
from router.ops.inspector import Inspector
from router.ops.logs import LogFormat
from router.ops.logs import configure as configure_logs
from router.ops.status import gather, render
from router.registry.loader import load
from router.registry.validation import validate as validate_registry
from router.scheduler.launch import SchedulerCommand, run_scheduler
from router.scheduler.settings import SchedulerSettings
from router.worker.launch import WorkerCommand, run_worker
from router.worker.settings import WorkerSettings

#: The defaults ``router worker`` shows are the library's own.
WORKER_DEFAULTS = WorkerSettings()
SCHEDULER_DEFAULTS = SchedulerSettings()


def _version() -> str:
    try:
        return version("router")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


@click.group()
@click.version_option(_version(), "--version", prog_name="router", message="%(prog)s %(version)s")
def main() -> None:
    """router: a Redis task queue for fleets of services sharing one Redis."""


@main.command()
@click.argument("path", required=False, envvar="ROUTER_REGISTRY", type=click.Path(dir_okay=False))
@click.option("--import", "import_apps", is_flag=True,
              help="Also import each service's `app:` and check its handlers against the registry.")
@click.option("--app-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Directory to import service code from (default: the registry file's directory).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one `file:line:col: message` per problem and a summary; json: {valid, problems}.")
@click.option("--allow-dir", "allow_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also let includes and payload $refs use files under DIR (repeatable; env ROUTER_REGISTRY_ROOTS "
                   "adds more). By default they must be under the registry file's directory.")
def validate(path: str | None, import_apps: bool, app_dir: str | None, output_format: str,
             allow_dirs: tuple[str, ...]) -> None:
    """Check the registry at PATH (default: $ROUTER_REGISTRY, else ./services.yaml) and the files it includes.

    Exit codes: 0 the registry is valid; 1 it is invalid (every problem is printed, with file, line and
    column); 2 usage error, or PATH cannot be read.
    """
    path = path or DEFAULT_REGISTRY
    if os.path.isdir(path):
        raise click.BadParameter(f"{path!r} is a directory; give the registry file", param_hint="PATH")
    report = validate_registry(path, import_apps=import_apps, app_dir=app_dir, roots=allow_dirs)
    if output_format == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.to_text(), err=not report.valid and report.unreadable)
    if report.unreadable:
        raise SystemExit(int(ExitCode.USAGE))
    raise SystemExit(int(ExitCode.OK if report.valid else ExitCode.INVALID))


@main.command()
@_registry_option
@click.option("--service", "-s", required=True, help="The service whose queues this worker group reads.")
@_url_option
@click.option("--app-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Directory to import service code from (default: the registry file's directory).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 10_000), default=None,
              help="Handlers running at once per process (default: the service's `concurrency`).")
@click.option("--processes", "-p", type=click.IntRange(1, 512), default=1, show_default=True,
              help="Worker processes in the group; crashed ones are restarted.")
@click.option("--burst", is_flag=True, help="Process what is due, then exit.")
@click.option("--lease-s", type=click.FloatRange(0.5), default=WORKER_DEFAULTS.lease_s, show_default=True,
              help="Lease per delivery; running tasks extend it, expired ones are recovered.")
@click.option("--shutdown-timeout-s", type=click.FloatRange(0), default=WORKER_DEFAULTS.shutdown_timeout_s,
              show_default=True, help="On SIGTERM/SIGINT, how long running tasks may finish before they are requeued.")
@click.option("--heartbeat-s", type=click.FloatRange(0.1), default=WORKER_DEFAULTS.heartbeat_s, show_default=True,
              help="Heartbeat period; a worker silent for three periods counts as gone.")
@click.option("--maintenance-s", type=click.FloatRange(0.05), default=WORKER_DEFAULTS.maintenance_s,
              show_default=True,
              help="Longest pause between recovery/promotion sweeps (sooner when something falls due).")
@click.option("--recovery-grace-s", type=click.FloatRange(0), default=WORKER_DEFAULTS.recovery_grace_s,
              show_default=True, help="Clock-skew allowance before an expired lease is recovered.")
@click.option("--prefetch", type=click.IntRange(0), default=None,
              help="Tasks leased ahead of free slots (default: as many as --concurrency).")
@click.option("--archive-max-size", type=click.IntRange(1), default=WORKER_DEFAULTS.archive_max_size,
              show_default=True, help="Dead-letter entries kept per queue; the oldest are dropped beyond it.")
@click.option("--archive-max-age-s", type=click.FloatRange(1), default=WORKER_DEFAULTS.archive_max_age_s,
              show_default=True, help="Dead-letter entries older than this are dropped.")
@click.option("--allow-handler-mismatch", is_flag=True,
              help="Start even if the handlers disagree with the registry (logged loudly).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on this port at /metrics (one endpoint for the whole group; 0: any free "
                   "port, logged as metrics_serving). Default: no metrics.")
@click.option("--metrics-addr", default="0.0.0.0", show_default=True, help="Address the metrics endpoint listens on.")
@_with_logs
def worker(
    registry_path: str, service: str, url: str | None, app_dir: str | None, concurrency: int | None, processes: int,
    burst: bool, lease_s: float, shutdown_timeout_s: float, heartbeat_s: float, maintenance_s: float,
    recovery_grace_s: float, prefetch: int | None, archive_max_size: int, archive_max_age_s: float,
    allow_handler_mismatch: bool, metrics_port: int | None, metrics_addr: str, log_format: LogFormat, log_level: str,
) -> None:
    """Run a worker group for one service: it reads only that service's queues, under its own prefix.

    SIGTERM/SIGINT stop fetching, wait --shutdown-timeout-s, requeue unfinished tasks and exit 0; a second
    SIGINT exits at once after requeueing; SIGTSTP stops fetching and lets running tasks finish.

    Exit codes: 0 stopped cleanly; 1 invalid registry, or the group gave up on a crashing child; 2 usage error,
    unknown service, or the metrics port cannot be listened on; 3 the handler set cannot be imported or disagrees
    with the registry; 4 Redis refused a command, or a --burst worker could not reach it (a long-running worker
    waits outages out); 5 an internal loop died.
    """
    configure_logs(log_format, log_level)
    try:
        settings = dataclasses.replace(
            WORKER_DEFAULTS, concurrency=concurrency or 0, lease_s=lease_s, shutdown_timeout_s=shutdown_timeout_s,
            heartbeat_s=heartbeat_s, maintenance_s=maintenance_s, recovery_grace_s=recovery_grace_s,
            prefetch=prefetch, archive_max_size=archive_max_size, archive_max_age_s=archive_max_age_s,
        )
        code = run_worker(WorkerCommand(registry_path, service, url, processes, burst, allow_handler_mismatch,
                                        settings, app_dir, metrics_port, metrics_addr), exit_code_for)
    except RouterError as exc:
        _fail_for(exc)
    raise SystemExit(code)


@main.command()
@_registry_option
@click.option("--per-type", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Tasks to enqueue for every declared task type.")
@click.option("--timeout-s", type=click.FloatRange(1), default=25.0, show_default=True,
              help="How long to wait for every task to finish.")
def demo(registry_path: str, per_type: int, timeout_s: float) -> None:
    """Run the example fleet on a throwaway Redis and show each task reaching its owner only.

    Starts redis-server on a free port, one `router worker` per service, enqueues a mixed batch, prints who
    handled what, shows the guard refusing bad enqueues, then stops everything. Exit codes: 0 every task was
    handled by its owner; 1 some task was misrouted or unfinished (or the registry is invalid); 4 no
    redis-server could be found or started.
    """
    configure_logs("console", "WARNING")
    try:
        result = run_demo(registry_path, per_type=per_type, say=click.echo, timeout_s=timeout_s)
    except RouterError as exc:
        _fail_for(exc)
    ok = result.misrouted == 0 and result.unfinished == 0
    raise SystemExit(int(ExitCode.OK if ok else ExitCode.INVALID))


@main.command()
@_registry_option
@_url_option
@click.option("--service", "-s", default=None, help="Only this service.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: tables; json: {queues, workers, schedulers, cron}.")
def status(registry_path: str, url: str | None, service: str | None, output_format: str) -> None:
    """Show every queue's tasks by state (and "backlog, no worker" where nobody reads a queue with pending
    tasks), the live workers with their handlers, the live cron schedulers, and each cron entry's last and next
    fire.

    Exit codes: 0 shown; 1 invalid registry; 2 unknown service; 4 Redis unreachable.
    """
    try:
        registry = load(registry_path)
        if service is not None:
            registry.service(service)
        inspector = Inspector(registry, url)
        try:
            fleet = gather(inspector, service)
        finally:
            inspector.close()
    except RedisError as exc:
        _fail(ExitCode.REDIS, f"cannot reach Redis: {exc}")
    except RouterError as exc:
        _fail_for(exc)
    if output_format == "json":
        click.echo(json.dumps(fleet.to_json(), indent=2))
        return
    for line in render(fleet):
        click.echo(line)


@main.command()
@_registry_option
@_url_option
@click.option("--service", "-s", "services", multiple=True,
              help="Fire only the entries whose task this service owns (repeatable; default: every entry).")
@click.option("--once", is_flag=True,
              help="Fire what is due now (missed slots by each entry's catch_up), then exit.")
@click.option("--heartbeat-s", type=click.FloatRange(0.1), default=SCHEDULER_DEFAULTS.heartbeat_s, show_default=True,
              help="Heartbeat period; a scheduler silent for three periods counts as gone.")
@click.option("--catch-up-window-s", type=click.FloatRange(1), default=SCHEDULER_DEFAULTS.catch_up_window_s,
              show_default=True,
              help="Missed slots older than this never fire; each claim is kept this long past its entry's next slot.")
@_with_logs
def scheduler(registry_path: str, url: str | None, services: tuple[str, ...], once: bool, heartbeat_s: float,
              catch_up_window_s: float, log_format: LogFormat, log_level: str) -> None:
    """Fire the registry's cron entries in their time zones; run as many replicas as you like, each slot is
    enqueued once.

    SIGTERM/SIGINT stop after the current tick and exit 0; SIGTSTP stops firing (the heartbeat stays, marked
    quiet) until SIGTERM/SIGINT. Redis outages are waited out.

    Exit codes: 0 stopped cleanly (or --once done); 1 invalid registry; 2 usage error or unknown --service;
    4 Redis refused a command (authentication, ACL), or --once could not reach it.
    """
    configure_logs(log_format, log_level)
    settings = dataclasses.replace(SCHEDULER_DEFAULTS, heartbeat_s=heartbeat_s, catch_up_window_s=catch_up_window_s)
    try:
        code = run_scheduler(SchedulerCommand(registry_path, url, services, once, settings))
    except RouterError as exc:
        _fail_for(exc)
    raise SystemExit(code)


for _command in (*cli_inspect.COMMANDS, *cli_task.COMMANDS, cli_exporter.exporter):
    main.add_command(_command)
