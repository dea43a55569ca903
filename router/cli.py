"""The ``router`` command line: a click group whose commands parse arguments, call one library function each,
and map the outcome to documented exit codes (see docs/cli.md)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, NoReturn

import click
from redis.exceptions import RedisError

from router.config import load
from router.demo import run_demo
from router.errors import BrokerError, ConfigError, HandlerError
from router.inspect import Inspector
from router.logs import LogFormat
from router.logs import configure as configure_logs
from router.runner import WorkerCommand, run_worker
from router.validation import validate as validate_registry
from router.worker import WorkerSettings

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2  # also click's own code for usage errors, so both kinds agree

DEFAULT_REGISTRY = "services.yaml"


@click.group()
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
def validate(path: str | None, import_apps: bool, app_dir: str | None, output_format: str) -> None:
    """Check the registry at PATH (default: $ROUTER_REGISTRY, else ./services.yaml) and the files it includes.

    Exit codes: 0 the registry is valid; 1 it is invalid (every problem is printed, with file, line and
    column); 2 usage error, or PATH cannot be read.
    """
    path = path or DEFAULT_REGISTRY
    if os.path.isdir(path):
        raise click.BadParameter(f"{path!r} is a directory; give the registry file", param_hint="PATH")
    report = validate_registry(path, import_apps=import_apps, app_dir=app_dir)
    if output_format == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.to_text(), err=not report.valid and report.unreadable)
    if report.unreadable:
        raise SystemExit(EXIT_USAGE)
    raise SystemExit(EXIT_OK if report.valid else EXIT_INVALID)


EXIT_HANDLERS = 3  # the handler set cannot be imported or disagrees with the registry
EXIT_REDIS = 4  # Redis unreachable or refused a command
EXIT_CRASH = 5  # an internal loop died; the process exits rather than staying up half-alive

_registry_option = click.option(
    "--registry", "-r", "registry_path", envvar="ROUTER_REGISTRY", default=DEFAULT_REGISTRY, show_default=True,
    type=click.Path(dir_okay=False), help="The services.yaml to load (env ROUTER_REGISTRY).",
)
_log_options = [
    click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto", show_default=True,
                 help="auto: console in a terminal, JSON lines otherwise."),
    click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR."),
]


def _with_logs(func: Any) -> Any:
    for option in reversed(_log_options):
        func = option(func)
    return func


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


@main.command()
@_registry_option
@click.option("--service", "-s", required=True, help="The service whose queues this worker group reads.")
@click.option("--url", envvar="ROUTER_REDIS_URL", default=None,
              help="Redis URL (env ROUTER_REDIS_URL; default: the registry's redis.url). "
                   "Use redis+cluster://host:port for Redis Cluster, "
                   "redis+sentinel://host:port[,host:port]/master for Sentinel.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 10_000), default=None,
              help="Handlers running at once per process (default: the service's `concurrency`).")
@click.option("--processes", "-p", type=click.IntRange(1, 512), default=1, show_default=True,
              help="Worker processes in the group; crashed ones are restarted.")
@click.option("--burst", is_flag=True, help="Process what is due, then exit.")
@click.option("--lease-s", type=click.FloatRange(0.5), default=30.0, show_default=True,
              help="Lease per delivery; running tasks extend it, expired ones are recovered.")
@click.option("--shutdown-timeout-s", type=click.FloatRange(0), default=10.0, show_default=True,
              help="On SIGTERM/SIGINT, how long running tasks may finish before they are requeued.")
@click.option("--heartbeat-s", type=click.FloatRange(0.1), default=5.0, show_default=True)
@click.option("--maintenance-s", type=click.FloatRange(0.05), default=5.0, show_default=True,
              help="Longest pause between recovery/promotion sweeps (sooner when something falls due).")
@click.option("--recovery-grace-s", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Clock-skew allowance before an expired lease is recovered.")
@click.option("--prefetch", type=click.IntRange(0), default=None,
              help="Tasks leased ahead of free slots (default: as many as --concurrency).")
@click.option("--archive-max-size", type=click.IntRange(1), default=10_000, show_default=True,
              help="Dead-letter entries kept per queue; the oldest are dropped beyond it.")
@click.option("--archive-max-age-s", type=click.FloatRange(1), default=90 * 86400.0, show_default=True,
              help="Dead-letter entries older than this are dropped.")
@click.option("--allow-handler-mismatch", is_flag=True,
              help="Start even if the handlers disagree with the registry (logged loudly).")
@_with_logs
def worker(
    registry_path: str, service: str, url: str | None, concurrency: int | None, processes: int, burst: bool,
    lease_s: float, shutdown_timeout_s: float, heartbeat_s: float, maintenance_s: float,
    recovery_grace_s: float, prefetch: int | None, archive_max_size: int, archive_max_age_s: float,
    allow_handler_mismatch: bool, log_format: LogFormat, log_level: str,
) -> None:
    """Run a worker group for one service: it reads only that service's queues, under its own prefix.

    SIGTERM/SIGINT stop fetching, wait --shutdown-timeout-s, requeue unfinished tasks and exit 0; a second
    SIGINT exits at once after requeueing; SIGTSTP stops fetching and lets running tasks finish.

    Exit codes: 0 stopped cleanly; 1 invalid registry; 2 usage error or unknown service; 3 the handler set
    cannot be imported or disagrees with the registry; 4 Redis unreachable; 5 an internal loop died.
    """
    configure_logs(log_format, log_level)
    try:
        settings = WorkerSettings(
            concurrency=concurrency or 0, lease_s=lease_s, shutdown_timeout_s=shutdown_timeout_s,
            heartbeat_s=heartbeat_s, maintenance_s=maintenance_s, recovery_grace_s=recovery_grace_s,
            prefetch=prefetch, archive_max_size=archive_max_size, archive_max_age_s=archive_max_age_s,
        )
        code = run_worker(WorkerCommand(registry_path, service, url, processes, burst, allow_handler_mismatch,
                                        settings))
    except ConfigError as exc:
        _fail(EXIT_INVALID, str(exc))
    except KeyError as exc:
        _fail(EXIT_USAGE, str(exc.args[0]))
    except HandlerError as exc:
        _fail(EXIT_HANDLERS, str(exc))
    except BrokerError as exc:
        _fail(EXIT_REDIS, str(exc))
    except RuntimeError as exc:
        _fail(EXIT_CRASH, str(exc))
    raise SystemExit(code)


@main.command()
@_registry_option
@click.option("--per-type", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Tasks to enqueue for every declared task type.")
@click.option("--timeout-s", type=click.FloatRange(1), default=25.0, show_default=True)
def demo(registry_path: str, per_type: int, timeout_s: float) -> None:
    """Run the example fleet on a throwaway Redis and show each task reaching its owner only.

    Starts redis-server on a free port, one `router worker` per service, enqueues a mixed batch, prints who
    handled what, shows the guard refusing bad enqueues, then stops everything. Exit codes: 0 every task was
    handled by its owner; 1 some task was misrouted or unfinished (or the registry is invalid).
    """
    configure_logs("console", "WARNING")
    try:
        result = run_demo(registry_path, per_type=per_type, say=click.echo, timeout_s=timeout_s)
    except ConfigError as exc:
        _fail(EXIT_INVALID, str(exc))
    ok = result.misrouted == 0 and result.unfinished == 0
    raise SystemExit(EXIT_OK if ok else EXIT_INVALID)


@main.command()
@_registry_option
@click.option("--url", envvar="ROUTER_REDIS_URL", default=None, help="Redis URL (default: the registry's redis.url).")
@click.option("--service", "-s", default=None, help="Only this service.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(registry_path: str, url: str | None, service: str | None, output_format: str) -> None:
    """Show every queue's tasks by state and the live workers with their handlers.

    Exit codes: 0 shown; 1 invalid registry; 2 unknown service; 4 Redis unreachable.
    """
    try:
        registry = load(registry_path)
        if service is not None:
            registry.service(service)
        inspector = Inspector(registry, url)
        try:
            queues, workers = inspector.queues(service), inspector.workers(service)
        finally:
            inspector.close()
    except ConfigError as exc:
        _fail(EXIT_INVALID, str(exc))
    except KeyError as exc:
        _fail(EXIT_USAGE, str(exc.args[0]))
    except (BrokerError, RedisError) as exc:
        _fail(EXIT_REDIS, f"cannot reach Redis: {exc}")
    if output_format == "json":
        click.echo(json.dumps({"queues": [dataclasses.asdict(q) for q in queues], "workers": workers}, indent=2))
        return
    states = ("pending", "active", "scheduled", "retry", "archived", "completed")
    click.echo(f"{'service':<14}{'queue':<14}" + "".join(f"{s:>11}" for s in states))
    for q in queues:
        flag = " (paused)" if q.paused else ""
        click.echo(f"{q.service:<14}{q.queue:<14}" + "".join(f"{q.sizes[s]:>11}" for s in states) + flag)
    click.echo(f"\n{len(workers)} live worker(s)")
    for w in workers:
        click.echo(f"  {w['service']:<12} {w['id']}  pid {w['pid']}  concurrency {w['concurrency']}  "
                   f"active {w['active']}  handlers: {', '.join(w['handlers'])}")
