"""The worker: leases a service's tasks in batches, runs them, and settles each outcome atomically.

One main loop owns all Redis traffic of the process except the idle wake-up threads: it sends the settled
outcomes (:mod:`router.settlement`) and fetches new tasks in the same round trip, extends leases of running tasks,
runs the maintenance script (crash recovery, due retries), publishes heartbeats and handles signals. Handlers run
in :mod:`router.execution`. Every transition checks the delivery token, so a worker that lost its lease cannot
complete a task another worker now owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any, cast

import structlog
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError

from router import protocol
from router.appload import compare_handlers
from router.backoff import Backoff, exponential_jitter
from router.broker import SyncBroker
from router.connection import BLOCK_S, TRANSIENT_ERRORS, Role, SyncRedis, connect
from router.envelope import MalformedMessage, decode
from router.errors import BrokerError, HandlerMismatch
from router.execution import HandlerRunner, HandlerTimeout, Job, Middleware, Outcome
from router.guard import Clock
from router.keys import QueueKeys, ServiceKeys, check_task_id
from router.registry import PriorityMode, Registry, ServiceSpec
from router.service import HandlerEntry, Service
from router.settlement import ArchivePolicy, Delivery, Settlements
from router.task import Task
from router.waker import Fetch, Fetched, Waker, requeue_fetched

log = structlog.get_logger("router.worker")

_DONE, _WAKE, _SIGNAL, _FATAL = range(4)
MIN_LOST_LEASES_TO_ARCHIVE = 3
_TRANSIENT_OR_REFUSED: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, BrokerError)


@dataclass(frozen=True)
class WorkerSettings:
    """Tunables of one worker process; defaults suit production, tests compress the timings."""

    concurrency: int = 10
    #: Tasks leased ahead of free handler slots (None: as many as ``concurrency``). They are leased in Redis
    #: like running ones, so a crash loses none of them; at shutdown the unstarted ones go back at once.
    prefetch: int | None = None
    lease_s: float = 30.0
    shutdown_timeout_s: float = 10.0
    heartbeat_s: float = 5.0
    maintenance_s: float = 5.0
    recovery_grace_s: float = 1.0
    archive_max_size: int = 10_000
    archive_max_age_s: float = 90 * 86400.0
    #: Completed (not retained) task ids are remembered this long, up to ``dedupe_max`` per queue, so repeating
    #: an enqueue whose outcome was unknown cannot run the task a second time.
    dedupe_window_s: float = 300.0
    dedupe_max: int = 100_000


@dataclass
class _State:
    running: dict[str, Delivery] = field(default_factory=dict)
    fetching: bool = True
    maybe_work: bool = True  # False once the queues came back empty, until a wake-up says otherwise
    stopping: bool = False
    stop_deadline: float = 0.0
    immediate: bool = False
    outage_since: float | None = None


class Worker:
    """Processes one service's tasks from its own queues.

    ``run()`` works until SIGTERM/SIGINT (or :meth:`stop`); ``run(burst=True)`` drains what is due and returns.
    """

    def __init__(
        self,
        registry: Registry,
        app: Service,
        *,
        service: str | None = None,
        url: str | None = None,
        redis: SyncRedis | None = None,
        concurrency: int | None = None,
        settings: WorkerSettings | None = None,
        middleware: Sequence[Middleware] = (),
        backoff: Backoff | None = None,
        clock: Clock = time.time,
        allow_handler_mismatch: bool = False,
    ) -> None:
        self.registry = registry
        self.app = app
        self.spec: ServiceSpec = registry.service(service or app.name)
        base = settings or WorkerSettings(concurrency=self.spec.concurrency)
        if concurrency is not None:
            base = replace(base, concurrency=concurrency)
        self.settings = base
        if redis is not None and url is None:
            # The waker opens its own blocking connection and needs to know where: never guess from the registry.
            raise TypeError("Worker(redis=...) also needs url=... (the same Redis): idle wake-ups use their own "
                            "blocking connection")
        self.url = url or registry.redis_url
        self._redis = redis
        self._middleware = tuple(middleware)
        self._clock = clock
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}"
        self.queues = [QueueKeys.for_queue(self.spec.prefix, self.spec.name, q.name) for q in self.spec.queues]
        self._weights = [q.weight for q in self.spec.queues]
        self._service_keys = ServiceKeys.for_service(self.spec.prefix, self.spec.name)
        self._events: queue.SimpleQueue[tuple[int, Any, Any]] = queue.SimpleQueue()
        self._state = _State()
        self._claim_lock = threading.Lock()
        self._heartbeats = 0
        self._capacity = self.settings.concurrency + (
            self.settings.concurrency if self.settings.prefetch is None else self.settings.prefetch
        )
        s = self.settings
        self._outcomes = Settlements(
            registry,
            completed_by=f"{self.spec.name}/{self.worker_id}",
            clock=clock,
            backoff=backoff or exponential_jitter(),
            archive=ArchivePolicy(s.archive_max_size, s.archive_max_age_s),
            tombstones=protocol.Tombstones(int(s.dedupe_window_s * 1000), s.dedupe_max),
        )
        self.stats = self._outcomes.stats
        problems = [p.message for p in compare_handlers(self.spec, registry, app)]
        if problems and not allow_handler_mismatch:
            raise HandlerMismatch(
                f"worker for service {self.spec.name!r} refuses to start: "
                + "; ".join(problems)
                + ". Fix the handlers or services.yaml (run `router validate --import`)."
            )
        for p in problems:
            log.warning("handler_mismatch_overridden", service=self.spec.name, problem=p)

    # -- public ---------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running worker to shut down gracefully (thread-safe, like SIGTERM)."""
        self._events.put((_SIGNAL, signal.SIGTERM, None))

    def run(self, burst: bool = False) -> None:
        """Process tasks until stopped, or with ``burst`` until nothing is pending or running."""
        self._state = _State()  # a worker can run again after stop() or a burst
        client = self._redis if self._redis is not None else connect(self.url, Role.CONSUMER)
        self._broker = SyncBroker(client)
        self._runner = HandlerRunner(self.settings.concurrency, self._on_done, self._claim, self._middleware)
        # The dequeue pipelined behind a blocking pop is leased from the moment it was planned: keep the block
        # short next to the lease.
        block_s = min(BLOCK_S, self.settings.lease_s / 4)
        waker = self._waker = Waker(self.queues, isinstance(client, RedisCluster), block_s, self._blocking_broker,
                                    self._wake_plan, self._on_wake, self._on_fatal)
        previous = self._install_signals()
        log.info(
            "worker_started",
            service=self.spec.name,
            worker_id=self.worker_id,
            queues=[q.queue for q in self.queues],
            concurrency=self.settings.concurrency,
            burst=burst,
        )
        try:
            self._warn_about_server()
            if not burst:
                waker.start()
            self._loop(burst, waker)
        finally:
            self._restore_signals(previous)
            waker.stop()
            self._shutdown()
            log.info("worker_stopped", service=self.spec.name, worker_id=self.worker_id, **self.stats)

    # -- main loop ------------------------------------------------------------------------------------------------
    def _loop(self, burst: bool, waker: Waker) -> None:
        st = self._state
        s = self.settings
        now_m = time.monotonic()
        next_extend = now_m + s.lease_s / 3
        next_heartbeat = now_m
        next_maintenance = now_m
        backoff = 0.05
        while True:
            self._drain_events(block_s=0.0)
            if st.stopping and (not st.running or st.immediate or time.monotonic() >= st.stop_deadline):
                return
            try:
                fetched, empty = self._settle_and_fetch()
                now_m = time.monotonic()
                if now_m >= next_extend:
                    self._extend_leases()
                    next_extend = now_m + s.lease_s / 3
                if now_m >= next_heartbeat and not burst:
                    self._heartbeat()
                    next_heartbeat = now_m + s.heartbeat_s
                if now_m >= next_maintenance or (burst and empty and not st.running):
                    promoted, next_maintenance = self._maintain(now_m)
                    if burst and empty and not st.running and not promoted and not fetched:
                        return
                    if promoted:
                        st.maybe_work = True
                        continue
                self._check_timeouts(now_m)
                if st.outage_since is not None:
                    log.info("redis_available", outage_s=round(time.monotonic() - st.outage_since, 3))
                    st.outage_since = None
                backoff = 0.05
            except TRANSIENT_ERRORS as exc:
                if isinstance(exc, AuthenticationError):
                    # A wrong password or user does not heal by waiting: fail fast and loudly (exit code 4).
                    raise BrokerError(f"Redis refused the credentials: {exc}; fix the URL's user/password") from exc
                if st.outage_since is None:
                    st.outage_since = time.monotonic()
                    log.warning("redis_unavailable", error=str(exc))
                self._drain_events(block_s=backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 2.0)
                continue
            if fetched and len(st.running) < self._capacity:
                continue  # the queue may hold more: fetch again before sleeping
            if empty and st.fetching and not st.stopping:
                waker.arm()
            wake_at = min(next_extend, next_maintenance, self._next_timeout())
            if not burst:
                wake_at = min(wake_at, next_heartbeat)
            if st.stopping:
                wake_at = min(wake_at, st.stop_deadline)
            self._drain_events(block_s=max(0.0, wake_at - time.monotonic()))

    def _drain_events(self, block_s: float) -> None:
        events = self._events
        try:
            ev = events.get(timeout=block_s) if block_s > 0 else events.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, a, _ = ev
            if kind == _DONE:
                for run, outcome in a:
                    self._settle(run, outcome)
            elif kind == _WAKE:
                self._take_woken(a)
            elif kind == _SIGNAL:
                self._on_signal_event(a)
            elif kind == _FATAL:
                raise RuntimeError("a worker thread died; exiting rather than running half-alive") from a
            try:
                ev = events.get_nowait()
            except queue.Empty:
                return

    # -- fetch and settle -----------------------------------------------------------------------------------------
    def _queue_order(self) -> list[QueueKeys]:
        if self.spec.priority is PriorityMode.STRICT or len(self.queues) == 1:
            return sorted(self.queues, key=lambda qk: -self._weights[self.queues.index(qk)])
        # Weighted: the first queue is drawn by weight, the rest follow in weighted random order.
        order: list[QueueKeys] = []
        pool = list(zip(self.queues, self._weights))
        while pool:
            pick = random.choices(range(len(pool)), weights=[w for _, w in pool])[0]
            order.append(pool.pop(pick)[0])
        return order

    def _settle_and_fetch(self) -> tuple[int, bool]:
        """Send pending acks and, in the same round trip, fetch for free slots. Returns (fetched, all empty)."""
        st = self._state
        ack_calls = self._outcomes.calls()
        free = self._capacity - len(st.running)
        # Fetch in batches: wait until half the prefetch room is free, unless the handlers are running dry.
        room = max(1, (self._capacity - self.settings.concurrency) // 2)
        if st.running and free < room and len(st.running) > self.settings.concurrency:
            free = 0
        if not st.maybe_work or not st.fetching or st.stopping or free <= 0:
            if ack_calls:
                self._outcomes.apply(ack_calls, self._broker.run_many(ack_calls))
            return 0, not st.maybe_work
        fetched = 0
        deadline_ms = int((self._clock() + self.settings.lease_s) * 1000)
        for qk in self._queue_order():
            calls = [*ack_calls, protocol.dequeue(qk, deadline_ms, free)]
            replies = self._broker.run_many(calls)
            self._outcomes.apply(ack_calls, replies)
            ack_calls = []
            deliveries = protocol.parse_dequeue(replies[-1])
            self._start(qk, deliveries)
            fetched += len(deliveries)
            free -= len(deliveries)
            if free <= 0:
                return fetched, False
        st.maybe_work = False  # every queue came back short: nothing more until a wake-up
        return fetched, fetched == 0

    def _wake_plan(self, group: Sequence[QueueKeys]) -> list[Fetch]:
        """Waker thread: the dequeues to pipeline behind its next blocking pop (reads only sizes)."""
        free = max(1, self._capacity - len(self._state.running))
        deadline_ms = int((self._clock() + self.settings.lease_s) * 1000)
        return [Fetch(qk, free, protocol.dequeue(qk, deadline_ms, free)) for qk in self._queue_order() if qk in group]

    def _take_woken(self, fetched: Fetched) -> None:
        """Run what a wake-up leased; look for more only if some queue filled the whole request."""
        st = self._state
        if st.stopping or not st.fetching:  # leased while the signal was on its way: straight back to pending
            requeue_fetched(self._broker, fetched)
            return
        for fetch, reply in fetched:
            deliveries = protocol.parse_dequeue(reply)
            if len(deliveries) >= fetch.limit:
                st.maybe_work = True
            self._start(fetch.qk, deliveries)

    def _start(self, qk: QueueKeys, deliveries: list[protocol.RawDelivery]) -> None:
        """Hand freshly leased deliveries of one queue to the runner (dead-lettering the undecodable)."""
        jobs = [job for d in deliveries if (job := self._dispatch(qk, d)) is not None]
        if jobs:
            self._runner.submit(jobs)

    def _dispatch(self, qk: QueueKeys, d: protocol.RawDelivery) -> Job | None:
        """Decode one delivery into a job for the runner, or dead-letter it (returning None)."""
        try:
            check_task_id(d.task_id)
            env = decode(d.envelope)
        except ValueError as exc:
            self._outcomes.archive_raw(qk, d, "malformed", str(exc))
            return None
        except MalformedMessage as exc:
            self._outcomes.archive_raw(qk, d, exc.reason, exc.detail)
            return None
        spec = self.registry.tasks.get(env.type)
        entry: HandlerEntry | None = self.app.get(env.type)
        if spec is None or spec.service != self.spec.name or entry is None:
            owner = spec.service if spec else "no service"
            why = f"{env.type!r} has no handler here (owner: {owner})"
            self._outcomes.archive(qk, d.member, env, "unknown_type", why)
            return None
        max_retry = env.max_retry if env.max_retry is not None else spec.max_retry
        failures = env.failures + d.lost_leases
        # A lost lease may belong to a delivery that never started (prefetched by a worker that was killed), so
        # lost leases get their own, looser cap: enough to stop a task that keeps killing its workers.
        if d.lost_leases > max(max_retry, MIN_LOST_LEASES_TO_ARCHIVE):
            err = f"lease expired {d.lost_leases} time(s): the worker running it died or stalled"
            self._outcomes.archive(qk, d.member, env, "lease_expired", err)
            return None
        timeout_s = env.timeout_s or spec.timeout_s
        task = Task(
            d.task_id, env.type, env.payload, self.spec.name, qk.queue, failures + 1, max_retry, timeout_s,
            env.enqueued_at_ms,
        )
        run = Delivery(qk, d.member, task, env, entry.is_async)
        self._state.running[d.member] = run
        return (run, entry, task)

    def _claim(self, key: object) -> bool:
        """Handler thread: start ``key`` unless it was handed back (the lock orders this with _hand_back)."""
        run: Delivery = key  # type: ignore[assignment]
        with self._claim_lock:
            if run.abandoned:
                return False
            run.started = time.monotonic()
            return True

    def _on_done(self, finished: list[tuple[object, Outcome]]) -> None:
        with self._claim_lock:  # ordered with _hand_back: a finished delivery is settled, never requeued
            for run, _ in finished:
                cast(Delivery, run).finished = True
        self._events.put((_DONE, finished, None))

    def _settle(self, run: Delivery, outcome: Outcome) -> None:
        self._state.running.pop(run.member, None)
        if run.abandoned:
            return
        if outcome.error is None:
            self._outcomes.complete(run, outcome.result)
        else:
            self._outcomes.fail(run, outcome.error)

    # -- leases, maintenance, heartbeat ----------------------------------------------------------------------------
    def _extend_leases(self) -> None:
        by_queue: dict[QueueKeys, list[str]] = {}
        for run in self._state.running.values():
            if not run.abandoned:
                by_queue.setdefault(run.qk, []).append(run.member)
        if not by_queue:
            return
        deadline_ms = int((self._clock() + self.settings.lease_s) * 1000)
        calls = [protocol.extend(qk, deadline_ms, members) for qk, members in by_queue.items()]
        for reply in self._broker.run_many(calls):
            for member in protocol.parse_members(reply):
                log.warning("lease_lost", member=member, hint="another worker may run this task again")

    def _maintain(self, now_m: float) -> tuple[int, float]:
        now_ms = int(self._clock() * 1000)
        cutoff = now_ms - int(self.settings.recovery_grace_s * 1000)
        replies = self._broker.run_many([protocol.maintain(qk, now_ms, cutoff) for qk in self.queues])
        promoted = 0
        next_at = now_m + self.settings.maintenance_s
        for qk, reply in zip(self.queues, replies):
            r = protocol.parse_maintain(reply)
            promoted += r.recovered + r.promoted
            if r.pending:
                self._state.maybe_work = True  # work no wake token announced (a queue unpaused, say)
            if r.recovered:
                log.warning("leases_recovered", queue=qk.queue, count=r.recovered)
            if r.next_due_ms is not None:
                due_in = (r.next_due_ms - now_ms) / 1000 + self.settings.recovery_grace_s
                next_at = min(next_at, now_m + max(0.01, due_in))
        return promoted, next_at

    def _heartbeat(self) -> None:
        now_ms = int(self._clock() * 1000)
        doc = {
            "id": self.worker_id,
            "service": self.spec.name,
            "queues": [qk.queue for qk in self.queues],
            "handlers": sorted(self.app),
            "concurrency": self.settings.concurrency,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "active": len(self._state.running),
            "active_tasks": [r.task.id for r in list(self._state.running.values())[:100] if r.started is not None],
            "at_ms": now_ms,
        }
        ttl_ms = int(self.settings.heartbeat_s * 3 * 1000)
        self._heartbeats += 1
        prune = self._heartbeats % 12 == 1
        self._broker.heartbeat(self._service_keys, self.worker_id, json.dumps(doc), now_ms, ttl_ms, prune)

    def _next_timeout(self) -> float:
        running = self._state.running
        if not running:
            return float("inf")
        return min(
            (r.started + r.task.timeout_s for r in running.values()
             if r.started is not None and not (r.abandoned or r.is_async)),
            default=float("inf"),
        )

    def _check_timeouts(self, now_m: float) -> None:
        for run in list(self._state.running.values()):
            if run.abandoned or run.is_async or run.started is None or now_m < run.started + run.task.timeout_s:
                continue  # async handlers are cancelled by their own wait_for and report HandlerTimeout
            # A sync handler cannot be interrupted: fail the delivery now (another attempt may run it), keep the
            # slot occupied until the thread returns, and discard whatever it returns.
            run.abandoned = True
            log.warning("handler_timeout", task_id=run.task.id, type=run.task.type, timeout_s=run.task.timeout_s,
                        note="sync handler keeps its thread until it returns; its result will be discarded")
            self._outcomes.fail(run, HandlerTimeout(run.task.timeout_s))

    # -- signals and shutdown ---------------------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        wanted = [signal.SIGTERM, signal.SIGINT]
        if hasattr(signal, "SIGTSTP"):
            wanted.append(signal.SIGTSTP)
        for sig in wanted:
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._events.put((_SIGNAL, signum, None))

    def _on_signal_event(self, signum: int) -> None:
        st = self._state
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGTSTP", None):
            st.fetching = False
            self._waker.halt()
            log.warning("signal_received", signal=name, action="stop fetching; running tasks continue")
            self._hand_back(started=False)
            return
        if st.stopping and signum == signal.SIGINT:
            st.immediate = True
            log.warning("signal_received", signal=name, action="exit now; requeue running tasks")
            return
        if not st.stopping:
            st.stopping = True
            self._waker.halt()
            st.stop_deadline = time.monotonic() + self.settings.shutdown_timeout_s
            log.warning("signal_received", signal=name, action="stop fetching; wait for running tasks",
                        shutdown_timeout_s=self.settings.shutdown_timeout_s, running=len(st.running))
            self._hand_back(started=False)

    def _hand_back(self, started: bool) -> None:
        """Put leased tasks back at the front of pending at once: the unstarted ones, and running ones too
        when ``started`` (their threads may go on, but their outcome is discarded)."""
        by_queue: dict[QueueKeys, list[str]] = {}
        with self._claim_lock:
            for run in list(self._state.running.values()):
                if run.abandoned or run.finished or (run.started is not None and not started):
                    continue
                run.abandoned = True
                by_queue.setdefault(run.qk, []).append(run.member)
                if run.started is None:
                    del self._state.running[run.member]
        if by_queue:
            try:
                replies = self._broker.run_many([protocol.requeue(qk, m) for qk, m in by_queue.items()])
            except TRANSIENT_ERRORS as exc:
                log.warning("requeue_failed", error=str(exc), hint="the tasks return when their lease expires")
                return
            n = sum(int(r) for r in replies)
            self.stats["requeued"] += n
            log.warning("tasks_requeued_at_shutdown" if self._state.stopping else "tasks_requeued", count=n,
                        running=started)

    def _warn_about_server(self) -> None:
        """Warn once about Redis settings that can lose tasks (reliability.md 2.6); silent if CONFIG is denied."""
        try:
            config = self._broker.server_config(("appendonly", "maxmemory-policy"))
        except _TRANSIENT_OR_REFUSED:
            return
        if config.get("appendonly") == "no":
            log.warning("redis_config_risky", setting="appendonly no",
                        hint="a Redis restart loses every queued task; set appendonly yes (fsync everysec)")
        policy = config.get("maxmemory-policy")
        if policy not in (None, "noeviction"):
            log.warning("redis_config_risky", setting=f"maxmemory-policy {policy}",
                        hint="eviction can drop queue keys and leases; set maxmemory-policy noeviction")

    def _on_wake(self, fetched: Fetched) -> None:
        self._events.put((_WAKE, fetched, None))

    def _on_fatal(self, exc: BaseException) -> None:
        self._events.put((_FATAL, exc, None))

    def _blocking_broker(self) -> SyncBroker:
        return SyncBroker(connect(self.url, Role.BLOCKING))

    def _shutdown(self) -> None:
        """Put unfinished tasks back to pending at once, settle the finished ones, withdraw the heartbeat."""
        self._state.stopping = True  # also after an error: a late wake-up's tasks go back, not to the runner
        self._runner.shutdown()
        try:
            self._hand_back(started=True)  # skips deliveries whose handler already finished...
            with contextlib.suppress(RuntimeError):
                self._drain_events(block_s=0.0)  # ...which are settled here instead
            calls = self._outcomes.calls()
            if calls:
                self._outcomes.apply(calls, self._broker.run_many(calls))
            self._broker.remove_worker(self._service_keys, self.worker_id)
        except _TRANSIENT_OR_REFUSED as exc:
            log.error("shutdown_incomplete", error=str(exc),
                      hint="unfinished tasks return to pending when their lease expires")
        finally:
            self._broker.close()
