"""The operator's commands on top of the Inspector: ``router queues``, ``tasks``, ``workers``, ``cron`` (listings,
each with ``--format json``), ``pause``, ``unpause``, ``run``, ``delete`` (actions; bulk ones ask for confirmation
unless ``--yes`` and show a progress bar). One task's commands are in :mod:`router.ops.cli_task`.

Each command parses, calls one Inspector method and maps the outcome to the exit codes of
:mod:`router.ops.exitcodes`. The JSON shapes are the TypedDicts of :mod:`router.ops.views`, published as JSON Schemas
in ``schemas/``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import click

from router.ops.actions import BATCH
from router.ops.cliutil import (
    fail,
    format_option,
    inspecting,
    registry_option,
    url_option,
)
from router.ops.exitcodes import ExitCode
from router.ops.inspector import LISTABLE, MAX_PAGE, Inspector
from router.ops.views import ActionResult, Progress, QueueInfo, TaskSummary, WorkerInfo
from router.storage import protocol
from router.task import TaskState

STATES = [s.value for s in TaskState]


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: Any, width: int) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= width else value[: width - 1] + "…"


# -- listings -------------------------------------------------------------------------------------------------------


@click.command()
@registry_option
@url_option
@click.option("--service", "-s", default=None, help="Only this service's queues.")
@format_option("a list of queues (schemas/cli-queues.schema.json)")
def queues(registry_path: str, url: str | None, service: str | None, output_format: str) -> None:
    """List every queue: tasks by state, paused, latency (age of the oldest pending task), throughput over the
    last minute and hour (processed / failed per minute), all-time counters and the live workers reading it.

    Exit codes: 0 listed; 1 invalid registry; 2 unknown service; 4 Redis unreachable.
    """
    with inspecting(registry_path, url) as ins:
        found = ins.overview(service)
    if output_format == "json":
        _echo_json([q.to_json() for q in found])
        return
    _print_queues(found)


def _print_queues(found: Sequence[QueueInfo]) -> None:
    widths = [max(10, len(s) + 2) for s in STATES]
    head = f"{'service':<12}{'queue':<12}" + "".join(f"{s:>{w}}" for s, w in zip(STATES, widths))
    click.echo(head + f"{'latency':>10}{'done/min':>10}{'fail/min':>10}{'done/h':>9}{'fail/h':>9}{'workers':>9}")
    for q in found:
        latency = "-" if q.latency_s is None else f"{q.latency_s:.1f}s"
        flag = "  (paused)" if q.paused else ""
        sizes = "".join(f"{q.sizes.get(s, 0):>{w}}" for s, w in zip(STATES, widths))
        click.echo(f"{q.service:<12}{q.queue:<12}{sizes}"
                   + f"{latency:>10}{q.last_minute.processed:>10}{q.last_minute.failed:>10}"
                   + f"{q.last_hour.processed:>9}{q.last_hour.failed:>9}{q.live_workers:>9}{flag}")


@click.command()
@click.argument("service")
@click.argument("queue")
@registry_option
@url_option
@click.option("--state", type=click.Choice([s.value for s in LISTABLE]), default="pending", show_default=True,
              help="The state whose tasks to list (aggregating tasks are counted by router queues, not listed).")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=20, show_default=True, help="Tasks per page.")
@click.option("--cursor", default=None, help="Continue after a previous page: the next_cursor it printed.")
@format_option("one page {service, queue, state, total, tasks, next_cursor} (schemas/cli-tasks.schema.json)")
def tasks(service: str, queue: str, registry_path: str, url: str | None, state: str, limit: int,
          cursor: str | None, output_format: str) -> None:
    """List the tasks of QUEUE of SERVICE in a state, a page at a time, oldest first (pending: the next to run
    first). Each page costs Redis the same work, however long the queue.

    Exit codes: 0 listed; 1 invalid registry; 2 unknown service or queue, or a bad cursor; 4 Redis unreachable.
    """
    with inspecting(registry_path, url) as ins:
        try:
            page = ins.tasks(service, queue, state, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--cursor") from None
    if output_format == "json":
        _echo_json(page.to_json())
        return
    click.echo(f"{service}/{queue}: {page.total} {state} task(s)")
    if page.tasks:
        click.echo(f"{'id':<28}{'type':<22}{'fails':>6}  {'at (UTC)':<20} {'enqueued (UTC)':<20} error / reason")
    for t in page.tasks:
        click.echo(_task_line(t))
    if page.next_cursor is not None:
        click.echo(f"more: router tasks {service} {queue} --state {state} --limit {limit} --cursor {page.next_cursor}")


def _task_line(t: TaskSummary) -> str:
    detail = t.problem or " ".join(x for x in (f"[{t.reason}]" if t.reason else "", t.last_error or "") if x)
    return (f"{_short(t.id, 27):<28}{_short(t.type or '?', 21):<22}{t.failures:>6}  {_when(t.at_ms):<20} "
            f"{_when(t.enqueued_at_ms):<20} {_short(detail, 60)}")


@click.command()
@registry_option
@url_option
@click.option("--service", "-s", default=None, help="Only this service's workers.")
@format_option("a list of workers (schemas/cli-workers.schema.json)")
def workers(registry_path: str, url: str | None, service: str | None, output_format: str) -> None:
    """List the live workers (from their heartbeats): queues, handlers, concurrency and the tasks they run now.

    Exit codes: 0 listed; 1 invalid registry; 2 unknown service; 4 Redis unreachable.
    """
    with inspecting(registry_path, url) as ins:
        found = ins.live_workers(service)
    if output_format == "json":
        _echo_json([w.to_json() for w in found])
        return
    _print_workers(found)


def _print_workers(found: Sequence[WorkerInfo]) -> None:
    click.echo(f"{len(found)} live worker(s)")
    for w in found:
        click.echo(f"{w.service}  {w.id}  host {w.host}  pid {w.pid}  queues {','.join(w.queues)}  concurrency "
                   f"{w.concurrency}  active {w.active}  last heartbeat {_when(w.at_ms)}")
        click.echo(f"  handlers: {', '.join(w.handlers)}")
        for r in w.running:
            click.echo(f"  running {r.id}  {r.type}  queue {r.queue}  since {_when(r.started_ms)}")


@click.command()
@registry_option
@url_option
@click.option("--service", "-s", default=None, help="Only the entries whose task this service owns.")
@format_option("{schedulers, entries} (schemas/cli-cron.schema.json)")
def cron(registry_path: str, url: str | None, service: str | None, output_format: str) -> None:
    """List the registry's cron entries with their last fire (claimed by any scheduler replica), next fire and the
    live schedulers firing each, and the live `router scheduler` processes.

    Exit codes: 0 listed; 1 invalid registry; 2 unknown service; 4 Redis unreachable.
    """
    with inspecting(registry_path, url) as ins:
        if service is not None:
            ins.registry.service(service)
        schedulers, entries = ins.schedulers(service), ins.cron_entries(service)
    if output_format == "json":
        _echo_json({"schedulers": [dataclasses.asdict(x) for x in schedulers],
                    "entries": [dataclasses.asdict(e) for e in entries]})
        return
    click.echo(f"{len(entries)} cron entr{'y' if len(entries) == 1 else 'ies'}")
    if entries:
        click.echo(f"{'entry':<26}{'task':<22}{'spec':<18}{'timezone':<18}{'last fire (UTC)':<21}"
                   f"{'next fire (UTC)':<21}schedulers")
    for e in entries:
        warn = "  (no live scheduler)" if not e.schedulers else ""
        click.echo(f"{_short(e.name, 25):<26}{_short(e.task, 21):<22}{_short(e.spec, 17):<18}{e.timezone:<18}"
                   f"{_when(e.last_fire_ms):<21}{_when(e.next_fire_ms):<21}{e.schedulers}{warn}")
    click.echo(f"{len(schedulers)} live scheduler(s)")
    for x in schedulers:
        quiet = "  (quiet: SIGTSTP)" if x.quiet else ""
        click.echo(f"  {x.id}  host {x.host}  pid {x.pid}  services {', '.join(x.services)}  entries "
                   f"{len(x.entries)}  last heartbeat {_when(x.at_ms)}{quiet}")


# -- actions --------------------------------------------------------------------------------------------------------


def _report(result: ActionResult, output_format: str) -> None:
    if output_format == "json":
        _echo_json(result.to_json())
    else:
        what = {"pause": "paused", "unpause": "unpaused"}.get(result.action)
        if what is not None:
            state = what if result.done else f"already {what}" if result.action == "pause" else "was not paused"
            click.echo(f"{result.service}/{result.queue}: {state}")
        else:
            verb = "made pending" if result.action == "run" else "deleted"
            click.echo(f"{result.service}/{result.queue}: {result.done} of {result.total} task(s) {verb}")
            for task_id, source in result.tasks.items():
                click.echo(f"  {task_id}: {'from ' + source if source else 'not in a state this applies to'}")
    if result.missed:
        raise SystemExit(int(ExitCode.TASK_STATE))


def _pause_command(name: str) -> click.Command:
    verb = "Pause" if name == "pause" else "Unpause"
    effect = ("workers lease nothing from it until `router unpause` (running tasks finish; producers still "
              "enqueue); the pause is kept in Redis") if name == "pause" else \
        "workers lease from it again, and an idle worker wakes at once"

    @click.command(name=name, help=f"""{verb} QUEUE of SERVICE: {effect}.

    Exit codes: 0 done (also when it already was); 1 invalid registry; 2 unknown service or queue; 4 Redis
    unreachable.
    """)
    @click.argument("service")
    @click.argument("queue")
    @registry_option
    @url_option
    @format_option("{action, service, queue, done, ...} (schemas/cli-action.schema.json); done 0: no change")
    def command(service: str, queue: str, registry_path: str, url: str | None, output_format: str) -> None:
        with inspecting(registry_path, url) as ins:
            result = ins.pause(service, queue) if name == "pause" else ins.unpause(service, queue)
        _report(result, output_format)

    return command


pause = _pause_command("pause")
unpause = _pause_command("unpause")


def _bulk(ins: Inspector, action: str, service: str, queue: str, state: str, yes: bool, batch: int,
          show_progress: bool) -> ActionResult:
    """Confirm, then run the bulk action with a progress bar on stderr."""
    total = ins.queue(service, queue).sizes.get(state, 0)
    verb = "make pending" if action == "run" else "delete"
    if total and not yes:
        try:
            confirmed = click.confirm(f"{verb} all {total} {state} task(s) of {service}/{queue}?", err=True)
        except click.Abort:  # no terminal to answer from (end of input), or Ctrl-C
            confirmed = False
        if not confirmed:
            fail(ExitCode.USAGE, "not confirmed: nothing was changed (pass --yes to skip the question)")
    steps = ins.run_all_steps if action == "run" else ins.delete_all_steps
    done = Progress(0, total, 0)
    with click.progressbar(length=max(total, 1), label=f"{verb} {state}", file=sys.stderr,
                           hidden=not show_progress) as bar:
        for done in steps(service, queue, state, batch=batch):
            bar.length = max(bar.length or 0, done.total)
            bar.update(done.done - bar.pos)
    return ActionResult(action, service, queue, state, done.done, max(total, done.total), done.batches)


def _action_command(name: str) -> click.Command:
    states = protocol.RUNNABLE if name == "run" else protocol.DELETABLE
    what = ("Make tasks of QUEUE of SERVICE pending now: the named TASK_IDs (archived, retrying or scheduled; an "
            "archived one gets a fresh set of retries), or with --all every task in --state")
    if name == "delete":
        what = ("Delete tasks of QUEUE of SERVICE: the named TASK_IDs (pending, scheduled, retrying, archived, "
                "completed or cancelled; a running task is refused: cancel it), or with --all every task in --state")

    @click.command(name=name, help=f"""{what}. --all asks for confirmation unless --yes, works in batches
    (bounded work per call in Redis) and shows a progress bar on stderr.

    Exit codes: 0 every named task was acted on (or --all finished); 1 invalid registry; 2 unknown service or
    queue, no TASK_ID and no --all, or --all not confirmed; 4 Redis unreachable; 6 some named task was not in a
    state the action applies to (the others were acted on).
    """)
    @click.argument("service")
    @click.argument("queue")
    @click.argument("task_ids", nargs=-1)
    @registry_option
    @url_option
    @click.option("--all", "all_", is_flag=True, help="Every task in --state, in batches.")
    @click.option("--state", type=click.Choice(states), default=None,
                  help=f"With --all, the state to take every task from (required); with TASK_IDs, act only on "
                       f"tasks in this state (default: any of {', '.join(states)}).")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (--all).")
    @click.option("--batch", type=click.IntRange(1, 10_000), default=BATCH, show_default=True,
                  help="Tasks per call with --all.")
    @format_option("{action, service, queue, state, done, total, batches, tasks} (schemas/cli-action.schema.json)")
    def command(service: str, queue: str, task_ids: tuple[str, ...], registry_path: str, url: str | None,
                all_: bool, state: str | None, yes: bool, batch: int, output_format: str) -> None:
        if all_ == bool(task_ids):
            raise click.UsageError("give TASK_IDs or --all (with --state), not both nor neither")
        if all_ and state is None:
            raise click.UsageError(f"--all needs --state ({' | '.join(states)})")
        with inspecting(registry_path, url) as ins:
            if all_:
                assert state is not None
                result = _bulk(ins, name, service, queue, state, yes, batch, output_format == "text")
            elif name == "run":
                result = ins.run(service, queue, task_ids, state or "*")
            else:
                result = ins.delete(service, queue, task_ids, state or "*")
        _report(result, output_format)

    return command


run = _action_command("run")
delete = _action_command("delete")


COMMANDS: tuple[click.Command, ...] = (queues, tasks, workers, cron, pause, unpause, run, delete)
