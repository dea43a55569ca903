"""HandlerRunner without Redis: sync handlers on threads, async ones on the loop, one concurrency bound for both,
claim() deciding at the last moment, async timeouts, and middleware that cannot lose an outcome."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from enginekit import wait_for

from router.service import HandlerEntry
from router.task import Task
from router.worker.execution import HandlerRunner, HandlerTimeout, Outcome


def make_task(n: int, timeout_s: float = 30.0) -> Task:
    return Task(f"t{n}", "svc.job", {"n": n}, "svc", "default", 1, 3, timeout_s, 0)


def entry(func: Callable[[Task], Any]) -> HandlerEntry:
    return HandlerEntry("svc.job", func, asyncio.iscoroutinefunction(func))


class Harness:
    """A runner whose outcomes and claims are recorded; ``refuse`` lists keys claim() turns down."""

    def __init__(self, concurrency: int, middleware: tuple[Any, ...] = ()) -> None:
        self.lock = threading.Lock()
        self.outcomes: dict[object, Outcome] = {}
        self.claims: list[object] = []
        self.refuse: set[object] = set()
        self.running = 0
        self.peak = 0
        self.runner = HandlerRunner(concurrency, self._done, self._claim, middleware)

    def _done(self, batch: list[tuple[object, Outcome]]) -> None:
        with self.lock:
            self.outcomes.update(batch)

    def _claim(self, key: object) -> bool:
        with self.lock:
            self.claims.append(key)
            return key not in self.refuse

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1

    def outcome(self, key: object, timeout_s: float = 10.0) -> Outcome:
        return wait_for(lambda: self.outcomes.get(key), timeout_s, f"the outcome of {key!r}")

    def loop_barrier(self) -> None:
        """Wait until the runner's event loop has processed everything submitted so far (FIFO callbacks)."""
        loop = self.runner._loop
        assert loop is not None
        reached = threading.Event()
        loop.call_soon_threadsafe(reached.set)
        assert reached.wait(10), "the runner's event loop did not turn"


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in made:
        h.runner.shutdown()


def harness(made: list[Harness], concurrency: int, middleware: tuple[Any, ...] = ()) -> Harness:
    h = Harness(concurrency, middleware)
    made.append(h)
    return h


def test_sync_and_async_handlers_report_results_and_errors(harnesses: list[Harness]) -> None:
    h = harness(harnesses, 4)
    threads: dict[str, str] = {}

    def sync_ok(task: Task) -> int:
        threads["sync"] = threading.current_thread().name
        return int(task.payload["n"]) * 10

    async def async_ok(task: Task) -> int:
        threads["async"] = threading.current_thread().name
        await asyncio.sleep(0)
        return int(task.payload["n"]) * 100

    def sync_bad(task: Task) -> None:
        raise ValueError("sync broke")

    async def async_bad(task: Task) -> None:
        raise KeyError("async broke")

    h.runner.submit([("a", entry(sync_ok), make_task(1)), ("b", entry(async_ok), make_task(2)),
                     ("c", entry(sync_bad), make_task(3)), ("d", entry(async_bad), make_task(4))])
    assert (h.outcome("a").result, h.outcome("a").error) == (10, None)
    assert (h.outcome("b").result, h.outcome("b").error) == (200, None)
    assert isinstance(h.outcome("c").error, ValueError) and h.outcome("c").result is None
    assert isinstance(h.outcome("d").error, KeyError)
    assert threads["sync"].startswith("router-handler-")
    assert threads["async"] == "router-async-handlers"
    assert all(o.duration_s >= 0 for o in h.outcomes.values())


def test_one_concurrency_bound_covers_sync_and_async_handlers(harnesses: list[Harness]) -> None:
    h = harness(harnesses, 2)
    gates = {k: threading.Event() for k in ("s1", "s2", "a1", "s3", "a2")}
    started: list[str] = []

    def blocking_sync(task: Task) -> None:
        h.enter()
        started.append(task.id)
        try:
            assert gates[task.id].wait(10)
        finally:
            h.leave()

    async def blocking_async(task: Task) -> None:
        h.enter()
        started.append(task.id)
        try:
            while not gates[task.id].is_set():
                await asyncio.sleep(0.005)
        finally:
            h.leave()

    def job(key: str) -> tuple[object, HandlerEntry, Task]:
        func = blocking_async if key.startswith("a") else blocking_sync
        return (key, entry(func), Task(key, "svc.job", {}, "svc", "default", 1, 3, 30.0, 0))

    # Two sync handlers take both slots: an async one submitted now waits, although the loop is free.
    h.runner.submit([job("s1"), job("s2")])
    wait_for(lambda: len(started) == 2, 10, "both sync handlers to start")
    h.runner.submit([job("a1")])
    h.loop_barrier()
    assert started == ["s1", "s2"] and "a1" not in h.claims
    gates["s1"].set()
    wait_for(lambda: "a1" in started, 10, "the async handler to take the freed slot")
    # Now one sync and one async run; a sync and an async job submitted meanwhile both wait for slots.
    h.runner.submit([job("s3"), job("a2")])
    h.loop_barrier()
    wait_for(h.runner._jobs.empty, 10, "a handler thread to take the sync job (it now waits for a slot)")
    assert sorted(started) == ["a1", "s1", "s2"]
    gates["s2"].set()
    wait_for(lambda: len(started) == 4, 10, "one waiting job to start in the freed slot")
    for g in gates.values():
        g.set()
    wait_for(lambda: len(h.outcomes) == 5, 10, "every handler to finish")
    assert h.peak == 2
    assert all(o.error is None for o in h.outcomes.values())


def test_claim_refusal_means_the_handler_never_runs(harnesses: list[Harness]) -> None:
    h = harness(harnesses, 1)
    ran: list[str] = []

    def sync_handler(task: Task) -> None:
        ran.append(task.id)

    async def async_handler(task: Task) -> None:
        ran.append(task.id)

    h.refuse = {"s-refused", "a-refused"}
    h.runner.submit([("s-refused", entry(sync_handler), make_task(1)),
                     ("a-refused", entry(async_handler), make_task(2))])
    # A refused job gives its slot back: with concurrency 1, later jobs of both kinds still run.
    h.runner.submit([("s-ok", entry(sync_handler), Task("s-ok", "svc.job", {}, "svc", "default", 1, 3, 30.0, 0)),
                     ("a-ok", entry(async_handler), Task("a-ok", "svc.job", {}, "svc", "default", 1, 3, 30.0, 0))])
    h.outcome("s-ok")
    h.outcome("a-ok")
    assert sorted(ran) == ["a-ok", "s-ok"]
    assert set(h.claims) == {"s-refused", "a-refused", "s-ok", "a-ok"}
    assert "s-refused" not in h.outcomes and "a-refused" not in h.outcomes


def test_async_handler_past_its_timeout_is_cancelled_as_handler_timeout(harnesses: list[Harness]) -> None:
    h = harness(harnesses, 1)
    cancelled = threading.Event()

    async def slow(task: Task) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def quick(task: Task) -> str:
        return "after"

    h.runner.submit([("slow", entry(slow), make_task(1, timeout_s=0.1)), ("quick", entry(quick), make_task(2))])
    out = h.outcome("slow")
    assert isinstance(out.error, HandlerTimeout)
    assert str(out.error) == "handler exceeded its timeout of 0.1 s"
    assert cancelled.is_set()
    assert h.outcome("quick").result == "after", "the timed-out handler's slot was given back"


class Hooks:
    def __init__(self, name: str, log: list[tuple[str, str, str]], break_after: bool = False,
                 break_before: bool = False) -> None:
        self.name, self.log, self.break_after, self.break_before = name, log, break_after, break_before

    def before(self, task: Task) -> None:
        self.log.append((self.name, "before", task.id))
        if self.break_before:
            raise PermissionError("refused by middleware")

    def after(self, task: Task, error: BaseException | None) -> None:
        self.log.append((self.name, "after", type(error).__name__ if error else "ok"))
        if self.break_after:
            raise RuntimeError("broken after-hook")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_middleware_wraps_handlers_and_a_broken_after_hook_loses_nothing(
    harnesses: list[Harness], kind: str
) -> None:
    log: list[tuple[str, str, str]] = []
    h = harness(harnesses, 2, (Hooks("outer", log), Hooks("inner", log, break_after=True)))

    def sync_handler(task: Task) -> str:
        log.append(("handler", "run", task.id))
        if task.payload["n"] == 2:
            raise ValueError("handler failed")
        return "done"

    async def async_handler(task: Task) -> str:
        return sync_handler(task)

    func = sync_handler if kind == "sync" else async_handler
    h.runner.submit([("ok", entry(func), make_task(1))])
    assert h.outcome("ok").result == "done" and h.outcome("ok").error is None
    assert log == [("outer", "before", "t1"), ("inner", "before", "t1"), ("handler", "run", "t1"),
                   ("inner", "after", "ok"), ("outer", "after", "ok")]
    log.clear()
    h.runner.submit([("bad", entry(func), make_task(2))])
    assert isinstance(h.outcome("bad").error, ValueError)
    assert log[-2:] == [("inner", "after", "ValueError"), ("outer", "after", "ValueError")]


def test_a_raising_before_hook_fails_the_task_without_running_it(harnesses: list[Harness]) -> None:
    log: list[tuple[str, str, str]] = []
    h = harness(harnesses, 1, (Hooks("guard", log, break_before=True),))
    ran: list[str] = []
    h.runner.submit([("k", entry(lambda t: ran.append(t.id)), make_task(1))])
    assert isinstance(h.outcome("k").error, PermissionError)
    assert ran == []
    assert log == [("guard", "before", "t1"), ("guard", "after", "PermissionError")]
