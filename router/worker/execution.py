"""Running handlers: sync handlers on a pool of daemon threads, ``async def`` handlers on one event-loop thread.

The worker's main loop decides what runs; this module only runs it and reports outcomes through a callback.
One semaphore of ``concurrency`` slots covers both kinds, so a service mixing sync and async handlers never
runs more than ``concurrency`` at once. Daemon threads matter: Python cannot kill a thread, so a sync handler stuck
past shutdown must not keep the process alive after its task was requeued. Async handlers are cancelled on
timeout. Async outcomes are reported in batches, one per turn of the event loop, to spare the GIL hand-offs.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from router.service import HandlerEntry
from router.task import Task


@dataclass(frozen=True)
class Outcome:
    """How one handler call ended: ``error`` is None on success."""

    result: Any
    error: BaseException | None
    duration_s: float


class Middleware(Protocol):
    """Hooks around every handler call. They run in the handler's thread (or on the loop for async handlers)."""

    def before(self, task: Task) -> None:
        """Called before the handler; raising fails the task like a handler error."""

    def after(self, task: Task, error: BaseException | None) -> None:
        """Called after the handler with its error (None on success)."""


#: Receives finished work as (key, outcome) pairs, from the thread that ran it.
Done = Callable[[list[tuple[object, Outcome]]], None]
#: Called just before a handler starts; False means "do not run it" (it was handed back meanwhile).
Claim = Callable[[object], bool]
Job = tuple[object, HandlerEntry, Task]


class HandlerTimeout(Exception):
    """The handler ran past its task's ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"handler exceeded its timeout of {timeout_s:g} s")


class HandlerRunner:
    """Runs handlers with at most ``concurrency`` at once and reports each outcome through ``on_done``.

    Submitted work may wait until a slot is free (the worker prefetches); ``claim(key)`` is asked right before a
    handler starts, so work handed back meanwhile never runs.
    """

    def __init__(self, concurrency: int, on_done: Done, claim: Claim, middleware: Sequence[Middleware] = ()) -> None:
        self._on_done = on_done
        self._claim = claim
        self._middleware = tuple(middleware)
        self._slots = threading.Semaphore(concurrency)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._thread_main, name=f"router-handler-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for t in self._threads:
            t.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parked: collections.deque[Job] = collections.deque()  # async jobs waiting for a slot (loop-owned)
        self._async_tasks: dict[object, asyncio.Task[None]] = {}
        # Cancelled when the handler ends: live timers would pile up in the loop's heap for a whole timeout.
        self._timers: dict[object, asyncio.TimerHandle] = {}
        self._timed_out: set[object] = set()
        self._finished: list[tuple[object, Outcome]] = []

    def submit(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` (key, handler, task); outcomes arrive through the callback with their keys."""
        async_jobs = [job for job in jobs if job[1].is_async]
        for job in jobs:
            if not job[1].is_async:
                self._jobs.put(job)
        if async_jobs:
            loop = self._loop or self._start_loop()
            loop.call_soon_threadsafe(self._park_and_start, async_jobs)

    def cancel(self, key: object) -> None:
        """Cancel the ``async def`` handler running for ``key`` (from any thread); its outcome is the
        ``asyncio.CancelledError``. Sync handlers cannot be stopped from outside: they watch ``task.cancelled``."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._cancel_one, key)

    def shutdown(self) -> None:
        """Stop accepting work; running sync handlers finish on their daemon threads, async ones are cancelled."""
        for _ in self._threads:
            self._jobs.put(None)
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._cancel_all)

    # -- sync ---------------------------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            key, entry, task = job
            self._slots.acquire()
            try:
                if not self._claim(key):
                    continue
                start = time.perf_counter()
                try:
                    self._before(task)
                    result = entry.func(task)
                    error: BaseException | None = None
                except BaseException as exc:  # a handler's failure is data, not our crash
                    result, error = None, exc
                self._after(task, error)
                self._on_done([(key, Outcome(result, error, time.perf_counter() - start))])
            finally:
                self._slots.release()
                if self._parked and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._start_parked)

    def _before(self, task: Task) -> None:
        for m in self._middleware:
            m.before(task)

    def _after(self, task: Task, error: BaseException | None) -> None:
        for m in reversed(self._middleware):
            try:
                m.after(task, error)
            except Exception:  # a broken hook must not lose the task's outcome
                pass

    # -- async (everything below runs on the loop thread) -------------------------------------------------------
    def _start_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        threading.Thread(target=main, name="router-async-handlers", daemon=True).start()
        ready.wait()
        self._loop = loop
        return loop

    def _park_and_start(self, jobs: list[Job]) -> None:
        self._parked.extend(jobs)
        self._start_parked()

    def _start_parked(self) -> None:
        # Park first, then take slots: a sync thread that releases a slot after we failed to get one sees the
        # parked job and calls us again, so no job waits for a wake-up that never comes.
        loop = self._loop
        assert loop is not None
        while self._parked and self._slots.acquire(blocking=False):
            key, entry, task = self._parked.popleft()
            if not self._claim(key):
                self._slots.release()
                continue
            fut = loop.create_task(self._run_async(key, entry, task))
            self._async_tasks[key] = fut
            self._timers[key] = loop.call_later(task.timeout_s, self._time_out, key)

    def _time_out(self, key: object) -> None:
        fut = self._async_tasks.get(key)
        if fut is not None and not fut.done():
            self._timed_out.add(key)
            fut.cancel()

    def _cancel_one(self, key: object) -> None:
        fut = self._async_tasks.get(key)
        if fut is not None and not fut.done():
            fut.cancel()

    def _cancel_all(self) -> None:
        self._parked.clear()
        for fut in list(self._async_tasks.values()):
            fut.cancel()
        assert self._loop is not None
        self._loop.call_soon(self._loop.stop)

    async def _run_async(self, key: object, entry: HandlerEntry, task: Task) -> None:
        start = time.perf_counter()
        try:
            self._before(task)
            result = await entry.func(task)
            error: BaseException | None = None
        except asyncio.CancelledError as exc:
            result, error = None, (HandlerTimeout(task.timeout_s) if key in self._timed_out else exc)
        except BaseException as exc:  # a handler's failure is data, not our crash
            result, error = None, exc
        self._timed_out.discard(key)
        self._async_tasks.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._slots.release()
        self._after(task, error)
        if not self._finished:
            asyncio.get_running_loop().call_soon(self._report)
        self._finished.append((key, Outcome(result, error, time.perf_counter() - start)))
        self._start_parked()

    def _report(self) -> None:
        batch, self._finished = self._finished, []
        self._on_done(batch)
