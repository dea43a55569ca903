"""The worker: leases a service's tasks in batches, runs them, and settles each outcome atomically.

:class:`Worker` holds the wiring and the main loop. The loop owns all Redis traffic of the process except the
idle wake-up threads (:mod:`~router.worker.waker`): it sends settled outcomes (:mod:`~router.worker.settlement`)
and fetches new tasks in the same round trip, extends leases and sweeps for expired ones
(:mod:`~router.worker.leases`), publishes heartbeats (:mod:`~router.worker.heartbeat`), fails timed-out sync
handlers (:mod:`~router.worker.timeouts`) and applies signals (:mod:`~router.worker.signals`). Leased messages
are decoded or dead-lettered by :mod:`~router.worker.dispatch`; handlers run in :mod:`~router.worker.execution`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import structlog
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError

from router.clock import Clock, system_clock, to_ms
from router.errors import BrokerError, DeadlineExceeded, HandlerMismatch, WorkerCrashed
from router.registry.appload import compare_handlers
from router.registry.model import Registry, ServiceSpec
from router.service import Service
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import BLOCK_S, TRANSIENT_ERRORS, Role, SyncRedis, connect
from router.storage.keys import service_keys, service_queue_keys
from router.tracing import tracing as tracing_for
from router.worker import signals
from router.worker.aggregation import Aggregator
from router.worker.backoff import Backoff, exponential_jitter
from router.worker.cancellation import CANCEL_POLL_S, Cancellations
from router.worker.chores import Chores
from router.worker.dispatch import Dispatcher
from router.worker.execution import HandlerRunner, Middleware, Outcome
from router.worker.fetch import Fetcher, QueueOrder
from router.worker.heartbeat import Heartbeat
from router.worker.integrity import SWEEP_EVERY_S, Integrity
from router.worker.leases import Leases
from router.worker.observe import Guarded, TaskObserver
from router.worker.preflight import wait_for_redis, warn_about_server
from router.worker.settings import WorkerSettings
from router.worker.settlement import ArchivePolicy, Settlements
from router.worker.shutdown import REDIS_ERRORS, hand_back, settle_and_withdraw
from router.worker.state import Delivery, LoopState
from router.worker.timeouts import fail_timed_out, next_timeout
from router.worker.waker import Waker

log = structlog.get_logger(__name__)

_DONE, _WAKE, _SIGNAL, _FATAL, _EXPIRED = range(5)
#: A stop signal cuts short a round trip that has waited this long (Redis frozen, not down).
UNSTICK_AFTER_S = 1.0
#: How often the observer (metrics) hears what runs now.
RUNNING_SAMPLE_S = 1.0


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
        clock: Clock = system_clock,
        allow_handler_mismatch: bool = False,
        metrics: TaskObserver | None = None,
        tracing: bool | None = None,
        tracer_provider: Any = None,
    ) -> None:
        """``metrics`` observes every delivery (:class:`router.worker.metrics.WorkerMetrics` exports Prometheus
        metrics); None costs nothing. ``tracing``: each handler runs in a consumer span joined to the producer's
        trace (None: when OpenTelemetry is installed; see :mod:`router.tracing`)."""
        self.registry = registry
        self._observer = Guarded(metrics) if metrics is not None else None
        self.app = app
        self.spec: ServiceSpec = registry.service(service or app.name)
        base = settings or WorkerSettings(concurrency=self.spec.concurrency)
        if concurrency is not None:
            base = replace(base, concurrency=concurrency)
        self.settings = s = base
        if redis is not None and url is None:
            # The waker opens its own blocking connection and needs to know where: never guess from the registry.
            raise TypeError("Worker(redis=...) also needs url=... (the same Redis): idle wake-ups use their own "
                            "blocking connection")
        self.url = url or registry.redis_url
        self._redis = redis
        traced = tracing_for(tracing, tracer_provider)
        self._middleware = (traced.middleware(), *middleware) if traced is not None else tuple(middleware)
        self._clock = clock
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}"
        self.queues = service_queue_keys(self.spec)
        self._order = QueueOrder(self.queues, [q.weight for q in self.spec.queues], self.spec.priority)
        self._events: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._state = LoopState()
        self._claim_lock = threading.Lock()
        self._gate_open = True  # closed by a stop signal: no task may start after it
        self._outcomes = Settlements(
            registry,
            completed_by=f"{self.spec.name}/{self.worker_id}",
            clock=clock,
            backoff=backoff or exponential_jitter(),
            archive=ArchivePolicy(s.archive_max_size, s.archive_max_age_s),
            tombstones=protocol.Tombstones(int(s.dedupe_window_s * 1000), s.dedupe_max),
            observer=metrics,
        )
        self.stats = self._outcomes.stats
        self._dispatcher = Dispatcher(registry, self.spec, app, self._outcomes, clock)
        self._leases = Leases(self.queues, s, clock)
        self._integrity = Integrity(self.queues, clock)
        self._aggregator = Aggregator(registry, clock)
        # The runner and the waker are made by run(): the lambdas look them up when called.
        self._cancellations = Cancellations(self._claim_lock, lambda run: self._runner.cancel(run),  # noqa: PLW0108
                                            self._end_unstarted)
        self._heartbeat = Heartbeat(service_keys(self.spec), self.worker_id, [qk.queue for qk in self.queues],
                                    app, s.concurrency, s.heartbeat_s, clock)
        self._signals = signals.Signals(self._notify_signal, self._close_gate, self._halt_waker,
                                        self._hand_back, self._status,
                                        lambda deadline: setattr(self._broker, "deadline", deadline),
                                        s.shutdown_timeout_s)
        problems = [p.message for p in compare_handlers(self.spec, registry, app)]
        if problems and not allow_handler_mismatch:
            raise HandlerMismatch(
                f"worker for service {self.spec.name!r} refuses to start: "
                + "; ".join(problems)
                + ". Fix the handlers or services.yaml (run `router validate --import`)."
            )
        self.handler_problems = problems  # logged once per run, as handler_mismatch_overridden

    # -- public ---------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running worker to shut down gracefully (thread-safe, like SIGTERM)."""
        self._close_gate()
        self._notify_signal(signal.SIGTERM)

    def run(self, burst: bool = False) -> None:
        """Process tasks until stopped, or with ``burst`` until nothing is pending or running."""
        self._state = LoopState()  # a worker can run again after stop() or a burst
        self._gate_open = True
        client = self._redis if self._redis is not None else connect(self.url, Role.CONSUMER)
        self._broker = SyncBroker(client)
        self._runner = HandlerRunner(self.settings.concurrency, self._on_done, self._claim, self._middleware)
        # The dequeue pipelined behind a blocking pop is leased from the moment it was planned: keep the block
        # short next to the lease.
        block_s = min(BLOCK_S, self.settings.lease_s / 4)
        cluster = isinstance(client, RedisCluster)
        fetch = self._fetch = Fetcher(self.queues, self._order, self.settings, self._state, self._broker,
                                      self._outcomes, self._dispatcher, self._leases, self._runner.submit,
                                      pipelined_wakeups=Waker.thread_count(self.queues, cluster) == 1)
        waker = self._waker = Waker(self.queues, cluster, block_s, lambda: SyncBroker(connect(self.url, Role.BLOCKING)),
                                    fetch.wake_plan, fetch.release, lambda fetched: self._events.put((_WAKE, fetched)),
                                    lambda exc: self._events.put((_FATAL, exc)))
        self._signals.install()
        watching = threading.Event()
        threading.Thread(target=self._watch_stop, args=(watching,), name="router-stop-watch", daemon=True).start()
        try:
            for problem in self.handler_problems:
                log.warning("handler_mismatch_overridden", service=self.spec.name, problem=problem)
            try:
                if not wait_for_redis(self._broker, self.url, burst, self._pause):
                    return
                log.info("worker_started", service=self.spec.name, worker_id=self.worker_id,
                         queues=[q.queue for q in self.queues], concurrency=self.settings.concurrency, burst=burst)
                warn_about_server(self._broker)
                if not burst:
                    waker.start()
                self._loop(burst, waker)
            finally:
                waker.stop()
                self._shutdown()
                log.info("worker_stopped", service=self.spec.name, worker_id=self.worker_id, **self.stats)
        finally:
            watching.set()
            self._signals.restore()  # only now: a second signal during the shutdown is still ours to handle

    # -- main loop ------------------------------------------------------------------------------------------------
    def _loop(self, burst: bool, waker: Waker) -> None:
        st = self._state
        s = self.settings
        now_m = next_maintenance = time.monotonic()
        chores = Chores()
        chores.add("extend", s.lease_s / 3, lambda: self._leases.extend(self._broker, st.running.values()),
                   now_m + s.lease_s / 3)
        chores.add("cancel", CANCEL_POLL_S, lambda: self._cancellations.poll(self._broker, list(st.running.values())),
                   now_m + CANCEL_POLL_S)
        if not burst:
            chores.add("heartbeat", s.heartbeat_s, lambda: self._heartbeat.beat(self._broker, st.running.values()),
                       now_m)
            chores.add("sweep", SWEEP_EVERY_S, lambda: self._integrity.slice(self._broker), now_m + SWEEP_EVERY_S)
        if self._observer is not None:
            chores.add("sample", RUNNING_SAMPLE_S, self._sample_running, now_m)
        backoff = 0.05
        while True:
            self._drain_events(block_s=0.0)
            if st.stopping and (not st.running or st.immediate or time.monotonic() >= st.stop_deadline):
                return
            try:
                fetched, empty = self._fetch.settle_and_fetch()
                now_m = time.monotonic()
                chores.run_due(now_m)
                if now_m >= next_maintenance or (burst and empty and not st.running):
                    done = self._leases.maintain(self._broker, now_m)
                    next_maintenance = done.next_at
                    st.maybe_work = st.maybe_work or done.pending
                    for qk in done.quarantined:
                        self._integrity.archive_quarantined(self._broker, qk)
                    made = self._aggregator.flush_due(self._broker, done.due_groups) if done.due_groups else 0
                    if burst and empty and not st.running and not (done.promoted or made or fetched):
                        # Before a burst ends, one full integrity pass; if it archived something, look once more.
                        if not self._integrity.full_pass(self._broker):
                            return
                        st.maybe_work = True
                        continue
                    if done.promoted or made:
                        st.maybe_work = True
                        continue
                fail_timed_out(st.running.values(), now_m, self._outcomes)
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
            if fetched and len(st.running) < self._fetch.capacity:
                continue  # the queue may hold more: fetch again before sleeping
            if empty and st.fetching and not st.stopping:
                waker.arm()
            wake_at = min(chores.next_at(), next_maintenance, next_timeout(st.running.values()))
            if st.stopping:
                wake_at = min(wake_at, st.stop_deadline)
            self._drain_events(block_s=max(0.0, wake_at - time.monotonic()))

    def _pause(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for events (signals); True when the worker is now stopping."""
        self._drain_events(block_s=seconds)
        return self._state.stopping

    def _drain_events(self, block_s: float) -> None:
        events = self._events
        try:
            ev = events.get(timeout=block_s) if block_s > 0 else events.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, value = ev
            if kind == _DONE:
                for run, outcome in value:
                    self._settle(run, outcome)
            elif kind == _WAKE:
                self._fetch.take_woken(value)
            elif kind == _SIGNAL:
                self._signals.apply(value, self._state)
            elif kind == _EXPIRED:  # its deadline passed while it waited for a handler slot
                self._state.running.pop(value.member, None)
                self._outcomes.fail(value, DeadlineExceeded(value.task.deadline_ms))
            elif kind == _FATAL:
                if isinstance(value, BrokerError):  # Redis refused the wake-up thread (ACL): exit 4, not 5
                    raise value
                raise WorkerCrashed("a worker thread", value) from value
            try:
                ev = events.get_nowait()
            except queue.Empty:
                return

    # -- handler threads ----------------------------------------------------------------------------------------
    def _claim(self, key: object) -> bool:
        """Handler thread: start ``key`` unless it was handed back (the lock orders this with _hand_back)."""
        run = cast(Delivery, key)
        with self._claim_lock:
            if run.abandoned or not self._gate_open:  # a stop signal closed the gate: it goes back, unstarted
                return False
            deadline_ms = run.task.deadline_ms
            if deadline_ms is not None and to_ms(self._clock()) >= deadline_ms:  # never started after its deadline
                run.abandoned = True
                self._events.put((_EXPIRED, run))
                return False
            run.started = time.monotonic()
            return True

    def _on_done(self, finished: list[tuple[object, Outcome]]) -> None:
        with self._claim_lock:  # ordered with _hand_back: a finished delivery is settled, never requeued
            for run, _ in finished:
                cast(Delivery, run).finished = True
        self._events.put((_DONE, finished))

    def _settle(self, run: Delivery, outcome: Outcome) -> None:
        self._state.running.pop(run.member, None)
        if self._observer is not None:
            self._observer.task_finished(run.task, outcome.duration_s, outcome.error)
        if run.abandoned:
            return
        if outcome.error is None:
            self._outcomes.complete(run, outcome.result)
        elif run.cancel_requested:
            self._outcomes.cancelled(run, f"cancelled while running; the handler ended with "
                                          f"{type(outcome.error).__name__}: {outcome.error}")
        else:
            self._outcomes.fail(run, outcome.error)

    def _sample_running(self) -> None:
        """Tell the observer which tasks' handlers run now (a chore of the main loop, and once more at exit)."""
        if self._observer is not None:
            self._observer.running([r.task for r in self._state.running.values()
                                    if r.started is not None and not r.abandoned])

    # -- wiring for the components ----------------------------------------------------------------------------------
    def _notify_signal(self, signum: int) -> None:
        self._events.put((_SIGNAL, signum))

    def _close_gate(self) -> None:
        self._gate_open = False  # a plain store: safe from a signal handler (it takes no lock)

    def _watch_stop(self, done: threading.Event) -> None:
        """Once a stop closed the gate, cut short a round trip stuck on a frozen Redis: the main loop would
        otherwise apply the signal only after a whole read timeout."""
        while not done.wait(UNSTICK_AFTER_S / 4):
            if not self._gate_open:
                self._broker.interrupt_if_stuck(UNSTICK_AFTER_S)

    def _end_unstarted(self, run: Delivery) -> None:
        self._state.running.pop(run.member, None)
        self._outcomes.cancelled(run, "cancelled before it started")

    def _halt_waker(self) -> None:
        self._waker.halt()

    def _status(self) -> dict[str, Any]:
        runs = list(self._state.running.values())
        return {"service": self.spec.name, "worker_id": self.worker_id, "running": len(runs),
                "running_tasks": [r.task.id for r in runs[:50] if r.started is not None],
                "stopping": self._state.stopping, "fetching": self._state.fetching, **self.stats}

    def _hand_back(self, started: bool) -> None:
        self.stats["requeued"] += hand_back(self._broker, self._state, self._claim_lock, started)

    def _shutdown(self) -> None:
        """Put unfinished tasks back to pending at once, settle the finished ones, withdraw the heartbeat.

        Each step runs whatever the others met (a refused call, a frozen Redis past the deadline), so one failure
        does not strand what the rest could still settle.
        """
        self._state.stopping = True  # also after an error: a late wake-up's tasks go back, not to the runner
        self._runner.shutdown()
        self._hand_back(True)  # skips deliveries whose handler already finished...
        with contextlib.suppress(WorkerCrashed, *REDIS_ERRORS):
            self._drain_events(block_s=0.0)  # ...which are settled here instead
        settle_and_withdraw(self._broker, self._outcomes, self._heartbeat)
        self._sample_running()  # what still runs at exit (nothing, unless a sync handler hangs)
        self._broker.close()

