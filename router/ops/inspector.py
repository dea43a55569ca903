"""The Inspector: the one API through which the CLI, the Prometheus exporter and (later) the web dashboard read a fleet
and act on it. Nothing else reads Redis for them.

Queries: every queue's sizes by state, pause flag, latency and throughput (:meth:`Inspector.overview`), a queue's
per-minute history (:meth:`~Inspector.history`), the tasks in a state a page at a time (:meth:`~Inspector.tasks`),
the live workers (:meth:`~Inspector.live_workers`), the live cron schedulers and each cron entry's last and next
fire (:meth:`~Inspector.schedulers`, :meth:`~Inspector.cron_entries`). Actions, each one Lua transition per call
and bounded in work: :meth:`~Inspector.pause` / :meth:`~Inspector.unpause`, :meth:`~Inspector.run` /
:meth:`~Inspector.run_all` (archived, retry or scheduled tasks made pending), :meth:`~Inspector.delete` /
:meth:`~Inspector.delete_all`.
Answers are the frozen values of :mod:`router.ops.views`. Sync only: a dashboard runs it in a thread pool.

One task's detail and cancelling come with the task lifecycle (``Client.get_task`` / ``Client.cancel``); they will
be wired here as ``task(service, id)`` and ``cancel(...)``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from router.clock import Clock, system_clock, to_ms
from router.errors import UnknownQueue
from router.ops.views import (
    ActionResult,
    Minute,
    Progress,
    QueueInfo,
    RunningTask,
    TaskPage,
    TaskSummary,
    Window,
    WorkerInfo,
)
from router.registry.model import Registry, ServiceSpec
from router.scheduler.entries import select_entries
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import Role, SyncRedis, connect
from router.storage.envelope import MalformedMessage, decode, encode
from router.storage.keys import QueueKeys, hour_of, minute_of, queue_keys, service_keys, service_queue_keys
from router.task import TaskState

#: Tasks per call of a bulk action ("run all", "delete all"): each call's work in Redis is bounded by it.
BATCH = 1000
#: The largest page :meth:`Inspector.tasks` returns.
MAX_PAGE = 1000
#: History kept by the per-minute counters.
HISTORY_MINUTES = 24 * 60

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class QueueStatus:
    """How many tasks one queue of one service holds in each state, and who reads it."""

    service: str
    queue: str
    paused: bool
    sizes: dict[str, int]
    #: Live workers (by heartbeat) that read this queue.
    live_workers: int = 0
    #: Tasks are pending and no live worker reads the queue: they wait until one starts ("backlog, no worker").
    backlog_no_worker: bool = False


@dataclass(frozen=True)
class SchedulerStatus:
    """One live cron scheduler, merged from its heartbeats under every service whose entries it fires."""

    id: str
    host: str
    pid: int
    services: list[str]
    entries: list[str]
    started_ms: int
    at_ms: int
    quiet: bool
    stats: dict[str, int]


@dataclass(frozen=True)
class CronEntryStatus:
    """One cron entry of the registry: where it fires, when it last fired and when it fires next."""

    name: str
    task: str
    service: str
    queue: str
    spec: str
    timezone: str
    catch_up: str
    #: The latest fire claimed by any scheduler replica (ms), from its claim in Redis; None if none is remembered.
    last_fire_ms: int | None
    #: The next slot after now (ms), computed from the registry; None if the spec never fires again.
    next_fire_ms: int | None
    #: Live schedulers that fire this entry (0: nobody will fire it).
    schedulers: int


#: States whose tasks sit in one structure that a page can walk (aggregating tasks wait in one list per group).
LISTABLE = tuple(s for s in TaskState if s is not TaskState.AGGREGATING)


def _state_key(qk: QueueKeys, state: TaskState) -> tuple[str, str]:
    """(kind for page.lua, key) of the structure holding the tasks in ``state``."""
    if state is TaskState.PENDING:
        return "l", qk.pending
    if state is TaskState.ACTIVE:
        return "a", qk.active
    if state is TaskState.AGGREGATING:
        raise ValueError("aggregating tasks wait in one list per group and cannot be paged; their count is in "
                         "the queue's sizes")
    return "z", qk.of_state(state)


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, state: TaskState) -> tuple[int, str, int | None, float | None]:
    """(position, anchor, token counter, anchor score) of a cursor :meth:`Inspector.tasks` returned."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, position, anchor, seq, score = json.loads(raw)
        if kind != state.value or type(position) is not int or position < 0 or not isinstance(anchor, str):
            raise ValueError
        if not (seq is None or type(seq) is int) or not (score is None or isinstance(score, (int, float))):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor {cursor[:40]!r} for state {state.value}: pass back the next_cursor "
                         "of the previous page of the same state") from exc
    return position, anchor, seq, score


def _fresh_retries(raw: bytes | None) -> bytes | str:
    """An archived envelope rewritten for running again: no archive reason, a fresh set of retries (the last
    error is kept). ``""`` (keep what is stored) when it does not decode: the worker dead-letters it again."""
    try:
        env = decode(raw)
    except MalformedMessage:
        return ""
    return encode(replace(env, failures=0, reason=None))


class Inspector:
    """Answers questions about the fleet from Redis and applies operators' actions, scoped by the registry."""

    def __init__(self, registry: Registry, url: str | None = None, *, redis: SyncRedis | None = None,
                 clock: Clock = system_clock) -> None:
        self.registry = registry
        self._clock = clock
        self._broker = SyncBroker(redis if redis is not None else connect(url or registry.redis_url, Role.CONSUMER))

    # -- scope ------------------------------------------------------------------------------------------------------
    def _services(self, service: str | None) -> list[ServiceSpec]:
        if service is not None:
            return [self.registry.service(service)]
        return list(self.registry.services.values())

    def queue_keys(self, service: str, queue: str) -> QueueKeys:
        """The keys of ``queue`` of ``service``; UnknownService or UnknownQueue when the registry lacks them."""
        spec = self.registry.service(service)
        if spec.queue(queue) is None:
            raise UnknownQueue(service, queue, [q.name for q in spec.queues])
        return queue_keys(spec, queue)

    # -- queues -----------------------------------------------------------------------------------------------------
    def queues(self, service: str | None = None) -> list[QueueStatus]:
        """Sizes by state of every queue (of one service, or of the fleet), with the live workers reading it:
        what ``router status`` shows."""
        return [QueueStatus(q.service, q.queue, q.paused, q.sizes, q.live_workers,
                            q.sizes.get("pending", 0) > 0 and not q.live_workers) for q in self.overview(service)]

    def overview(self, service: str | None = None) -> list[QueueInfo]:
        """Every queue (of one service, or of the fleet): sizes by state, paused, latency, all-time counters,
        throughput over the last minute and hour, and the live workers reading it. One script call per queue,
        all in one round trip, constant work in Redis whatever the queues' lengths."""
        now_ms = to_ms(self._clock())
        current = minute_of(now_ms)
        hours = sorted({hour_of((current - 60) * 60_000), hour_of(now_ms)})
        specs = self._services(service)
        targets = [(spec, qk) for spec in specs for qk in service_queue_keys(spec)]
        shapes = [[(s.value, _state_key(qk, s)[1], s is TaskState.PENDING) for s in LISTABLE] for _, qk in targets]
        calls = [protocol.overview(qk, shape, hours) for (_, qk), shape in zip(targets, shapes)]
        replies = self._broker.run_many(calls) if calls else []
        readers = self._readers(specs, now_ms)
        out = []
        for (spec, qk), shape, reply in zip(targets, shapes, replies):
            view = protocol.parse_overview(shape, reply)
            # The enqueue and the group flush keep the count of aggregating members (one list per group).
            sizes = {s.value: view.stats.get("aggregating", 0) if s is TaskState.AGGREGATING else view.sizes[s.value]
                     for s in TaskState}
            out.append(QueueInfo(
                service=spec.name, queue=qk.queue, paused=view.paused_since_ms is not None,
                paused_since_ms=view.paused_since_ms, sizes=sizes, latency_s=_latency(view, now_ms),
                processed=view.stats.get("processed", 0), failed=view.stats.get("failed", 0),
                last_minute=_window(view.minutes, current, 1), last_hour=_window(view.minutes, current, 60),
                live_workers=readers.get((spec.name, qk.queue), 0),
            ))
        return out

    def queue(self, service: str, queue: str) -> QueueInfo:
        """One queue's :class:`QueueInfo`."""
        self.queue_keys(service, queue)
        return next(q for q in self.overview(service) if q.queue == queue)

    def history(self, service: str, queue: str, minutes: int = 60) -> list[Minute]:
        """The last ``minutes`` whole minutes (at most 1440: 24 hours) of a queue's throughput, oldest first,
        from the per-minute counters its workers write (a chart's data)."""
        qk = self.queue_keys(service, queue)
        minutes = max(1, min(int(minutes), HISTORY_MINUTES))
        now_ms = to_ms(self._clock())
        current = minute_of(now_ms)
        first = current - minutes
        hours = list(range(hour_of(first * 60_000), hour_of(now_ms) + 1))
        view = protocol.parse_overview([], self._broker.run(protocol.overview(qk, [], hours)))
        empty = {"p": 0, "f": 0}
        return [Minute(m * 60_000, view.minutes.get(m, empty)["p"], view.minutes.get(m, empty)["f"])
                for m in range(first, current)]

    # -- tasks ------------------------------------------------------------------------------------------------------
    def tasks(self, service: str, queue: str, state: TaskState | str, *, limit: int = 100,
              cursor: str | None = None) -> TaskPage:
        """One page of the tasks in ``state``, oldest first (pending: the next to run first; the sets by score).

        Pass the page's ``next_cursor`` back for the next page. Each page costs Redis work bounded by ``limit``
        (plus a logarithmic or bounded search for where the previous page ended), whatever the state's length: a
        million pending tasks page as cheaply as ten. Tasks moving meanwhile may make a page repeat or skip one.
        """
        qk = self.queue_keys(service, queue)
        state = TaskState(state)
        limit = max(1, min(int(limit), MAX_PAGE))
        kind, key = _state_key(qk, state)
        position, anchor, seq, score = (0, "", None, None) if cursor is None else _decode_cursor(cursor, state)
        reply = self._broker.run(protocol.page(qk, key, kind, limit, position, anchor, seq, score))
        raw = protocol.parse_page(reply)
        tasks = [_summary(service, queue, state, kind, e) for e in raw.entries]
        end = raw.start + len(raw.entries)
        next_cursor = None
        if raw.entries and end < raw.total:
            last = raw.entries[-1]
            next_cursor = _encode_cursor([state.value, end, last.member, raw.seq, last.score])
        return TaskPage(service, queue, state.value, raw.total, tasks, next_cursor)

    # -- workers ----------------------------------------------------------------------------------------------------
    def workers(self, service: str | None = None) -> list[dict[str, Any]]:
        """Heartbeat documents of live workers (of one service, or of the fleet), as published."""
        now_ms = to_ms(self._clock())
        docs: list[dict[str, Any]] = []
        for spec in self._services(service):
            docs.extend(_documents(self._broker.live_workers(service_keys(spec), now_ms)))
        return docs

    def live_workers(self, service: str | None = None) -> list[WorkerInfo]:
        """Live worker processes (of one service, or of the fleet) with their queues, handlers and running tasks,
        from their heartbeats (a worker silent for three heartbeat periods is gone)."""
        return [w for w in map(_worker, self.workers(service)) if w is not None]

    def schedulers(self, service: str | None = None) -> list[SchedulerStatus]:
        """Live cron schedulers (firing entries of one service, or of any), one per scheduler process."""
        now_ms = to_ms(self._clock())
        merged: dict[str, dict[str, Any]] = {}
        for spec in self._services(service):
            for doc in _documents(self._broker.live_schedulers(service_keys(spec), now_ms)):
                sid = str(doc.get("id"))
                into = merged.setdefault(sid, {**doc, "services": [], "entries": []})
                into["services"].append(spec.name)
                into["entries"].extend(e.get("name") for e in doc.get("entries") or () if isinstance(e, dict))
        return [SchedulerStatus(id=sid, host=str(d.get("host")), pid=int(d.get("pid") or 0),
                                services=d["services"], entries=d["entries"], started_ms=int(d.get("started_ms") or 0),
                                at_ms=int(d.get("at_ms") or 0), quiet=bool(d.get("quiet")),
                                stats=dict(d.get("stats") or {}))
                for sid, d in sorted(merged.items())]

    def cron_entries(self, service: str | None = None) -> list[CronEntryStatus]:
        """Every cron entry (of tasks one service owns, or all) with its last fire, next fire and schedulers."""
        entries = select_entries(self.registry, () if service is None else (service,))
        claims = self._broker.cron_claims([e.keys.cron(e.name) for e in entries])
        firing: dict[str, int] = {}
        for sched in self.schedulers(service):
            for name in sched.entries:
                firing[name] = firing.get(name, 0) + 1
        now = int(self._clock())
        out = []
        for entry, claim_ms in zip(entries, claims):
            following = entry.schedule.next_after(now)
            out.append(CronEntryStatus(
                name=entry.name, task=entry.spec.task, service=entry.service.name, queue=entry.queue,
                spec=entry.spec.spec, timezone=entry.spec.timezone, catch_up=entry.spec.catch_up.value,
                last_fire_ms=claim_ms, next_fire_ms=None if following is None else following * 1000,
                schedulers=firing.get(entry.name, 0),
            ))
        return out

    def _readers(self, specs: Sequence[ServiceSpec], now_ms: int) -> dict[tuple[str, str], int]:
        readers: dict[tuple[str, str], int] = {}
        for spec in specs:
            for doc in _documents(self._broker.live_workers(service_keys(spec), now_ms)):
                queues = doc.get("queues")
                for q in set(queues) if isinstance(queues, list) else ():
                    if isinstance(q, str):
                        readers[(spec.name, q)] = readers.get((spec.name, q), 0) + 1
        return readers

    # -- actions ----------------------------------------------------------------------------------------------------
    def pause(self, service: str, queue: str) -> ActionResult:
        """Pause a queue: workers lease nothing from it (running tasks finish, producers still enqueue) until
        :meth:`unpause`. Persisted in Redis; ``done`` is 0 when it was already paused."""
        qk = self.queue_keys(service, queue)
        changed = int(self._broker.run(protocol.pause(qk, to_ms(self._clock()))))
        return ActionResult("pause", service, queue, None, changed, 1)

    def unpause(self, service: str, queue: str) -> ActionResult:
        """Unpause a queue; an idle worker wakes at once. ``done`` is 0 when it was not paused."""
        qk = self.queue_keys(service, queue)
        changed = int(self._broker.run(protocol.unpause(qk)))
        return ActionResult("unpause", service, queue, None, changed, 1)

    def run(self, service: str, queue: str, task_ids: Sequence[str], state: str = "*") -> ActionResult:
        """Make the named tasks pending now if they are archived, retrying or scheduled (or only those in
        ``state``). An archived task gets a fresh set of retries. ``tasks`` says where each came from (None: it was
        in no such state)."""
        qk = self.queue_keys(service, queue)
        ids = list(dict.fromkeys(task_ids))
        envelopes = self._broker.messages(qk, ids) if state in ("*", "archived") else [None] * len(ids)
        items = [(i, _fresh_retries(env) if env is not None else "") for i, env in zip(ids, envelopes)]
        # Only an archived task's envelope is replaced: the script ignores the others'.
        moved = protocol.parse_run(self._broker.run(protocol.run(qk, state, items))) if items else []
        tasks = {i: (m or None) for i, m in zip(ids, moved)}
        return ActionResult("run", service, queue, state, sum(1 for m in moved if m), len(ids), 1, tasks)

    def run_all(self, service: str, queue: str, state: str, *, batch: int = BATCH,
                progress: ProgressCallback | None = None) -> ActionResult:
        """Make every task in ``state`` (archived, retry or scheduled) pending, ``batch`` per call, calling
        ``progress`` after each. Tasks that join the state meanwhile may be left for another run."""
        done = Progress(0, 0, 0)
        for done in self.run_all_steps(service, queue, state, batch=batch):
            if progress is not None:
                progress(done)
        return ActionResult("run", service, queue, state, done.done, done.total, done.batches)

    def run_all_steps(self, service: str, queue: str, state: str, *, batch: int = BATCH) -> Iterator[Progress]:
        """:meth:`run_all` as a generator yielding :class:`Progress` after each batch (for a streaming page)."""
        qk = self.queue_keys(service, queue)
        if state not in protocol.RUNNABLE:
            raise ValueError(f"cannot run tasks that are {state}; runnable states: {', '.join(protocol.RUNNABLE)}")
        key = qk.of_state(TaskState(state))
        batch = max(1, int(batch))
        total = self._size(qk, state)
        done = batches = 0
        while done < total:
            raw = protocol.parse_page(self._broker.run(protocol.page(qk, key, "z", min(batch, total - done), 0)))
            if not raw.entries:
                break
            items = [(e.member, _fresh_retries(e.envelope) if state == "archived" else "") for e in raw.entries]
            moved = protocol.parse_run(self._broker.run(protocol.run(qk, state, items)))
            batches += 1
            done += sum(1 for m in moved if m)
            yield Progress(done, max(total, done), batches)
            if not any(moved):
                break

    def delete(self, service: str, queue: str, task_ids: Sequence[str], state: str = "*") -> ActionResult:
        """Delete the named tasks, from ``state`` or wherever each is (pending, scheduled, retry, archived,
        completed). A running task is refused (``tasks`` maps it to None, as an unknown id): cancel it instead."""
        qk = self.queue_keys(service, queue)
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return ActionResult("delete", service, queue, state, 0, 0)
        count, where = protocol.parse_delete(self._broker.run(protocol.delete(qk, state, ids)))
        tasks = {i: (w if w and w != "active" else None) for i, w in zip(ids, where)}
        return ActionResult("delete", service, queue, state, count, len(ids), 1, tasks)

    def delete_all(self, service: str, queue: str, state: str, *, batch: int = BATCH,
                   progress: ProgressCallback | None = None) -> ActionResult:
        """Delete every task in ``state`` (pending: the oldest first), ``batch`` per call, calling ``progress``
        after each. Tasks that join the state meanwhile may be left."""
        done = Progress(0, 0, 0)
        for done in self.delete_all_steps(service, queue, state, batch=batch):
            if progress is not None:
                progress(done)
        return ActionResult("delete", service, queue, state, done.done, done.total, done.batches)

    def delete_all_steps(self, service: str, queue: str, state: str, *, batch: int = BATCH) -> Iterator[Progress]:
        """:meth:`delete_all` as a generator yielding :class:`Progress` after each batch."""
        qk = self.queue_keys(service, queue)
        if state not in protocol.DELETABLE:
            raise ValueError(f"cannot delete tasks that are {state}; deletable states: "
                             f"{', '.join(protocol.DELETABLE)}")
        batch = max(1, int(batch))
        total = self._size(qk, state)
        done = batches = 0
        while done < total:
            count, _ = protocol.parse_delete(
                self._broker.run(protocol.delete_batch(qk, state, min(batch, total - done))))
            if count == 0:
                break
            batches += 1
            done += count
            yield Progress(done, max(total, done), batches)

    def _size(self, qk: QueueKeys, state: str) -> int:
        shape = [(state, _state_key(qk, TaskState(state))[1], state == TaskState.PENDING.value)]
        return protocol.parse_overview(shape, self._broker.run(protocol.overview(qk, shape, []))).sizes[state]

    def close(self) -> None:
        self._broker.close()

    def __enter__(self) -> Inspector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _latency(view: protocol.Overview, now_ms: int) -> float | None:
    if view.oldest_pending is None:
        return None
    try:
        enqueued = decode(view.oldest_pending).enqueued_at_ms
    except MalformedMessage:
        return None
    return max(0.0, (now_ms - enqueued) / 1000)


def _window(minutes: dict[int, dict[str, int]], current: int, length: int) -> Window:
    """Deliveries of the ``length`` whole minutes before the ``current`` one."""
    processed = failed = 0
    for m in range(current - length, current):
        counts = minutes.get(m)
        if counts is not None:
            processed += counts["p"]
            failed += counts["f"]
    return Window(processed, failed, length * 60)


def _summary(service: str, queue: str, state: TaskState, kind: str, entry: protocol.PageEntry) -> TaskSummary:
    task_id = entry.member.rpartition(":")[0] if kind == "a" and ":" in entry.member else entry.member
    at_ms = int(entry.score) if entry.score is not None else None
    try:
        env = decode(entry.envelope)
    except MalformedMessage as exc:
        return TaskSummary(task_id, service, queue, state.value, None, None, None, 0, None, None, at_ms, str(exc))
    return TaskSummary(task_id, service, queue, state.value, env.type, env.payload, env.enqueued_at_ms,
                       env.failures, env.last_error, env.reason, at_ms)


def _documents(raw: list[bytes]) -> list[dict[str, Any]]:
    """Heartbeat documents that decode to JSON objects (anything else in Redis is skipped, not trusted)."""
    docs = []
    for item in raw:
        try:
            doc = json.loads(item)
        except ValueError:
            continue
        if isinstance(doc, dict):
            docs.append(doc)
    return docs


def _int_or(value: Any, default: int | None) -> int | None:
    return value if type(value) is int else default


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _worker(doc: dict[str, Any]) -> WorkerInfo | None:
    """A heartbeat document as a WorkerInfo; None when it lacks an id or service (not a worker's)."""
    wid, service = doc.get("id"), doc.get("service")
    if not isinstance(wid, str) or not isinstance(service, str):
        return None
    running = []
    for r in doc.get("running") or ():
        if isinstance(r, dict) and isinstance(r.get("id"), str):
            running.append(RunningTask(r["id"], str(r.get("type", "")), str(r.get("queue", "")),
                                       _int_or(r.get("started_ms"), 0) or 0))
    return WorkerInfo(
        id=wid, service=service, host=str(doc.get("host", "")), pid=_int_or(doc.get("pid"), 0) or 0,
        queues=_strings(doc.get("queues")), handlers=_strings(doc.get("handlers")),
        concurrency=_int_or(doc.get("concurrency"), 0) or 0, active=_int_or(doc.get("active"), 0) or 0,
        running=running, started_ms=_int_or(doc.get("started_ms"), None), at_ms=_int_or(doc.get("at_ms"), None),
    )
