"""Running handlers: sync handlers on a pool of daemon threads, ``async def`` handlers on one event-loop thread.

The worker's main loop decides what runs; this module only runs it and reports each :class:`Outcome` through a
callback. Daemon threads matter: Python cannot kill a thread, so a sync handler stuck past shutdown must not keep
the process alive after its task was requeued. Async handlers get real cancellation on timeout.
"""

from __future__ import annotations

import asyncio
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


Done = Callable[[object, Outcome], None]
#: Called from the handler's thread just before it starts; False means "do not run it" (it was handed back).
Claim = Callable[[object], bool]


class HandlerRunner:
    """Runs handlers concurrently and calls ``on_done(key, outcome)`` from the thread that ran each one.

    Submitted work may wait in a local queue until a thread is free (the worker prefetches); ``claim(key)`` is
    asked right before a handler starts, so work handed back meanwhile never runs.
    """

    def __init__(
        self, threads: int, on_done: Done, claim: Claim, middleware: Sequence[Middleware] = ()
    ) -> None:
        self._on_done = on_done
        self._claim = claim
        self._middleware = tuple(middleware)
        self._jobs: queue.SimpleQueue[tuple[object, HandlerEntry, Task] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._thread_main, name=f"router-handler-{i}", daemon=True) for i in range(threads)
        ]
        for t in self._threads:
            t.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_tasks: dict[object, asyncio.Task[Any]] = {}

    def submit(self, key: object, entry: HandlerEntry, task: Task) -> None:
        """Start ``entry`` on ``task``; its outcome arrives through the callback with ``key``."""
        if entry.is_async:
            loop = self._loop or self._start_loop()
            loop.call_soon_threadsafe(self._start_async, key, entry, task)
        else:
            self._jobs.put((key, entry, task))

    def shutdown(self) -> None:
        """Stop accepting work; running sync handlers finish on their daemon threads, async ones are cancelled."""
        for _ in self._threads:
            self._jobs.put(None)
        loop = self._loop
        if loop is not None:
            for fut in list(self._async_tasks.values()):
                loop.call_soon_threadsafe(fut.cancel)
            loop.call_soon_threadsafe(loop.stop)

    # -- sync ---------------------------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            key, entry, task = job
            if not self._claim(key):
                continue
            start = time.perf_counter()
            try:
                for m in self._middleware:
                    m.before(task)
                result = entry.func(task)
                error: BaseException | None = None
            except BaseException as exc:
                result, error = None, exc
            self._after(task, error)
            self._on_done(key, Outcome(result, error, time.perf_counter() - start))

    def _after(self, task: Task, error: BaseException | None) -> None:
        for m in reversed(self._middleware):
            try:
                m.after(task, error)
            except Exception:
                pass

    # -- async --------------------------------------------------------------------------------------------------
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

    def _start_async(self, key: object, entry: HandlerEntry, task: Task) -> None:
        if not self._claim(key):
            return
        fut = asyncio.ensure_future(self._run_async(key, entry, task))
        self._async_tasks[key] = fut

    async def _run_async(self, key: object, entry: HandlerEntry, task: Task) -> None:
        start = time.perf_counter()
        try:
            for m in self._middleware:
                m.before(task)
            result = await asyncio.wait_for(entry.func(task), timeout=task.timeout_s)
            error: BaseException | None = None
        except asyncio.TimeoutError:
            result, error = None, HandlerTimeout(task.timeout_s)
        except BaseException as exc:
            result, error = None, exc
        self._async_tasks.pop(key, None)
        self._after(task, error)
        self._on_done(key, Outcome(result, error, time.perf_counter() - start))


class HandlerTimeout(Exception):
    """The handler ran past its task's ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"handler exceeded its timeout of {timeout_s:g} s")
