"""What a worker tells an observer about each task: the seam metrics (router.worker.metrics) plug into.

The worker calls these hooks only when an observer is given, so a worker without one pays nothing. They all run on
the worker's main loop, never on a handler's thread (no lock is contended while handlers run), and must be quick;
what they raise is logged (``observer_failed``), never the task's failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import structlog

from router.task import Task

log = structlog.get_logger(__name__)

#: How the worker settled a delivery: completed, scheduled for a retry, or dead-lettered.
Settled = Literal["processed", "retried", "archived"]


class TaskObserver(Protocol):
    """Receives the life of every delivery a worker runs."""

    def running(self, tasks: Sequence[Task]) -> None:
        """The tasks whose handler runs now; sampled about once a second while anything runs, and once more when
        the last one ends."""

    def task_finished(self, task: Task, duration_s: float, error: BaseException | None) -> None:
        """The handler of ``task`` returned (``error`` None) or raised, after ``duration_s``."""

    def task_settled(self, queue: str, task_type: str, outcome: Settled, reason: str | None) -> None:
        """The worker decided a delivery's outcome (``reason``: why it was archived). ``task_type`` is one the
        registry declares, or ``"<unknown>"`` for a message that names none (it cannot become a label)."""


class Guarded:
    """An observer whose failures are logged (``observer_failed``) instead of raised: a broken metrics hook must not
    fail a task or stop the worker's loop."""

    def __init__(self, observer: TaskObserver) -> None:
        self._observer = observer

    def running(self, tasks: Sequence[Task]) -> None:
        """See :meth:`TaskObserver.running`."""
        try:
            self._observer.running(tasks)
        except Exception as exc:  # an observer's failure is not the task's
            log.warning("observer_failed", hook="running", error=f"{type(exc).__name__}: {exc}")

    def task_finished(self, task: Task, duration_s: float, error: BaseException | None) -> None:
        """See :meth:`TaskObserver.task_finished`."""
        try:
            self._observer.task_finished(task, duration_s, error)
        except Exception as exc:  # an observer's failure is not the task's
            log.warning("observer_failed", hook="task_finished", error=f"{type(exc).__name__}: {exc}")
