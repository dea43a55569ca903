"""``router task`` (one task's state, payload, error and kept result) and ``router cancel`` (end tasks early), on
the Inspector's :meth:`~router.ops.inspector.Inspector.task` and :meth:`~router.ops.inspector.Inspector.cancel`.

A task is named by its id; ``--service`` (and ``--queue``) narrow where it is looked for (ids are unique per
queue). JSON shapes: ``schemas/cli-task.schema.json`` and ``schemas/cli-cancel.schema.json``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import click

from router.ops.cliutil import fail, format_option, inspecting, registry_option, url_option
from router.ops.exitcodes import ExitCode
from router.ops.views import cancel_json, task_json
from router.task import CancelOutcome, TaskDetail

_where = [
    click.option("--service", "-s", default=None, help="Look only in this service's queues."),
    click.option("--queue", "-q", default=None, help="Look only in this queue (of --service, or of any service)."),
]


def _scope(func: Any) -> Any:
    for option in reversed(_where):
        func = option(func)
    return func


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


@click.command()
@click.argument("task_id")
@registry_option
@url_option
@_scope
@format_option("one task (schemas/cli-task.schema.json)")
def task(task_id: str, registry_path: str, url: str | None, service: str | None, queue: str | None,
         output_format: str) -> None:
    """Show one task: its state, type, payload, failures, last error or reason, kept result and times.

    Exit codes: 0 shown; 1 invalid registry; 2 unknown service or queue, or an id in several queues (give
    --service and --queue); 4 Redis unreachable; 6 no such task.
    """
    with inspecting(registry_path, url) as ins:
        detail = ins.task(task_id, service, queue)
    if output_format == "json":
        click.echo(json.dumps(task_json(detail), indent=2, ensure_ascii=False))
        return
    for line in _describe(detail):
        click.echo(line)


def _describe(d: TaskDetail) -> list[str]:
    lines = [f"task       {d.id}", f"where      {d.service}/{d.queue}", f"state      {d.state.value}",
             f"type       {d.type or '-'}", f"enqueued   {_when(d.enqueued_at_ms)}"]
    if d.next_run_at_ms is not None:
        lines.append(f"next run   {_when(d.next_run_at_ms)}")
    if d.deadline_ms is not None:
        lines.append(f"deadline   {_when(d.deadline_ms)}")
    if d.group is not None:
        lines.append(f"group      {d.group}")
    if d.ended_at_ms is not None:
        lines.append(f"ended      {_when(d.ended_at_ms)}")
    lines.append(f"failures   {d.failures}")
    if d.reason:
        lines.append(f"reason     {d.reason}")
    if d.error:
        lines.append(f"error      {d.error}")
    if d.payload is not None:
        lines.append(f"payload    {json.dumps(d.payload, ensure_ascii=False)[:2000]}")
    if d.result_kept:
        lines.append(f"result     {json.dumps(d.result, ensure_ascii=False, default=repr)[:2000]}")
        lines.append(f"kept until {_when(d.result_expires_at_ms)}")
    return lines


@click.command()
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK_ID...")
@registry_option
@url_option
@_scope
@format_option("a list of outcomes (schemas/cli-cancel.schema.json)")
def cancel(task_ids: tuple[str, ...], registry_path: str, url: str | None, service: str | None, queue: str | None,
           output_format: str) -> None:
    """Cancel tasks: one that has not started never runs; a running one is stopped by its worker within about a
    second (it ends as cancelled unless it completes first). Safe to repeat.

    Exit codes: 0 every task was cancelled, asked to stop, or already cancelled; 1 invalid registry; 2 unknown
    service or queue, or an id in several queues; 4 Redis unreachable; 6 some task was unknown or had already
    finished (the others were cancelled).
    """
    with inspecting(registry_path, url) as ins:
        results = [ins.cancel(task_id, service, queue) for task_id in dict.fromkeys(task_ids)]
    if output_format == "json":
        click.echo(json.dumps([cancel_json(r) for r in results], indent=2, ensure_ascii=False))
    else:
        for r in results:
            where = f" ({r.service}/{r.queue}, was {r.state_before})" if r.outcome is not CancelOutcome.UNKNOWN else ""
            click.echo(f"{r.id}: {r.outcome.value}{where}")
    missed = [r.id for r in results if r.outcome in (CancelOutcome.UNKNOWN, CancelOutcome.FINISHED)]
    if missed:
        fail(ExitCode.TASK_STATE, f"{len(missed)} task(s) unknown or already finished: {', '.join(missed[:10])}")


COMMANDS: tuple[click.Command, ...] = (task, cancel)
