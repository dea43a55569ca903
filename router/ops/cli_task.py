"""One task's commands: ``router enqueue`` (through the guard, as ``Client.enqueue``), ``router task`` (its state,
payload, error and kept result) and ``router cancel`` (end tasks early), on the Inspector's
:meth:`~router.ops.inspector.Inspector.task` and :meth:`~router.ops.inspector.Inspector.cancel`.

A task is named by its service and id: it is looked for in each of the service's queues (ids are unique per queue),
or in ``--queue`` only. JSON shapes: ``schemas/cli-task.schema.json`` and ``schemas/cli-cancel.schema.json``.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone

import click
from redis.exceptions import RedisError

from router.errors import RouterError
from router.ops.cliutil import fail, fail_for, format_option, inspecting, load_registry, registry_option, url_option
from router.ops.exitcodes import ExitCode
from router.ops.views import cancel_json, task_json
from router.producer.client import Client
from router.task import CancelOutcome, TaskDetail

_queue = click.option("--queue", "-q", default=None, help="Look only in this queue of the service.")


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


@click.command()
@click.argument("service")
@click.argument("task_id")
@registry_option
@url_option
@_queue
@format_option("one task (schemas/cli-task.schema.json)")
def task(service: str, task_id: str, registry_path: str, url: str | None, queue: str | None,
         output_format: str) -> None:
    """Show task TASK_ID of SERVICE: its state, type, payload, failures, last error or reason, kept result and
    times.

    Exit codes: 0 shown; 1 invalid registry; 2 unknown service or queue, or an id in several of the service's
    queues (give --queue); 4 Redis unreachable; 6 no such task.
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
@click.argument("service")
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK_ID...")
@registry_option
@url_option
@_queue
@format_option("a list of outcomes (schemas/cli-cancel.schema.json)")
def cancel(service: str, task_ids: tuple[str, ...], registry_path: str, url: str | None, queue: str | None,
           output_format: str) -> None:
    """Cancel tasks of SERVICE: one that has not started never runs; a running one is stopped by its worker within
    about a second (it ends as cancelled unless it completes first). Safe to repeat.

    Exit codes: 0 every task was cancelled, asked to stop, or already cancelled; 1 invalid registry; 2 unknown
    service or queue, or an id in several of the service's queues; 4 Redis unreachable; 6 some task was unknown or
    had already finished (the others were cancelled).
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


@click.command()
@click.argument("task_type", metavar="TYPE")
@registry_option
@url_option
@click.option("--payload", required=True, help="The payload as a JSON object, or - to read it from stdin.")
@click.option("--queue", default=None, help="Another queue of the owning service.")
@click.option("--task-id", default=None, help="Your own task id (an id that exists is refused: exit 6).")
@click.option("--process-in", type=click.FloatRange(0), default=None, help="Run it this many seconds from now.")
@click.option("--max-retry", type=click.IntRange(0, 1000), default=None, help="Override the task's max_retry.")
@click.option("--timeout-s", type=click.FloatRange(0, min_open=True), default=None,
              help="Override the task's handler timeout.")
@click.option("--deadline-in", type=click.FloatRange(0, min_open=True), default=None,
              help="Archive it as deadline_exceeded if it has not finished this many seconds from now.")
@click.option("--unique-key", default=None, help="For a unique task type: the lock's name instead of the payload.")
@click.option("--group", default=None, help="For an aggregating task type: the group it waits in.")
@format_option("{id, type, service, queue, state} (schemas/cli-enqueue.schema.json)")
def enqueue(task_type: str, registry_path: str, url: str | None, payload: str, queue: str | None,
            task_id: str | None, process_in: float | None, max_retry: int | None, timeout_s: float | None,
            deadline_in: float | None, unique_key: str | None, group: str | None, output_format: str) -> None:
    """Enqueue a task of TYPE through the guard: the registry routes it to its owner's queue and checks the
    payload against the type's schema before anything reaches Redis.

    Exit codes: 0 enqueued; 1 invalid registry; 2 refused by the guard (unknown type, invalid or too large payload,
    bad option) or the payload is not JSON; 4 Redis unreachable, or the outcome is unknown (repeat with
    --task-id); 6 the task id is taken, or a unique task's lock is held (the holder's id is printed).
    """
    text = sys.stdin.read() if payload == "-" else payload
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    deadline = time.time() + deadline_in if deadline_in is not None else None
    options = {k: v for k, v in (("queue", queue), ("task_id", task_id), ("process_in", process_in),
                                 ("max_retry", max_retry), ("timeout_s", timeout_s), ("deadline", deadline),
                                 ("unique_key", unique_key), ("group", group)) if v is not None}
    registry = load_registry(registry_path)
    try:
        with Client(registry, url) as client:
            info = client.enqueue(task_type, doc, **options)
    except RedisError as exc:
        fail(ExitCode.REDIS, f"cannot reach Redis: {exc}")
    except RouterError as exc:
        fail_for(exc)
    if output_format == "json":
        shown = {"id": info.id, "type": info.type, "service": info.service, "queue": info.queue,
                 "state": info.state.value}
        click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
    else:
        click.echo(f"enqueued {info.type} as {info.id} on {info.service}/{info.queue} ({info.state.value})")


COMMANDS: tuple[click.Command, ...] = (enqueue, task, cancel)
