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

One task's state and result (:meth:`~Inspector.task`) and cancelling (:meth:`~Inspector.cancel`) are the client's
(``Client.get_task`` / ``Client.cancel``) on the Inspector's connection. The actions live in
:mod:`router.ops.actions`, the answers' types in :mod:`router.ops.views`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from router.clock import Clock, system_clock, to_ms
from router.ops.actions import Actions, state_key
from router.ops.views import (
    CronEntryStatus,
    Minute,
    QueueInfo,
    QueueStatus,
    RunningTask,
    SchedulerStatus,
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
from router.storage.envelope import MalformedMessage, decode
from router.storage.keys import hour_of, minute_of, service_keys, service_queue_keys
from router.task import TaskState

#: The largest page :meth:`Inspector.tasks` returns.
MAX_PAGE = 1000
#: History kept by the per-minute counters.
HISTORY_MINUTES = 24 * 60

#: States whose tasks sit in one structure that a page can walk (aggregating tasks wait in one list per group).
LISTABLE = tuple(s for s in TaskState if s is not TaskState.AGGREGATING)


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


class Inspector(Actions):
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
        shapes = [[(s.value, state_key(qk, s)[1], s is TaskState.PENDING) for s in LISTABLE] for _, qk in targets]
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
        kind, key = state_key(qk, state)
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
