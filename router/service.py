"""Handler registration for service code: ``app = Service("email")`` and ``@app.handler("email.welcome")``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from router.errors import DuplicateHandler
from router.task import Task

SyncHandler = Callable[[Task], Any]
AsyncHandler = Callable[[Task], Awaitable[Any]]
Handler = SyncHandler | AsyncHandler
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class HandlerEntry:
    """A registered handler and whether it must run on the event loop."""

    task_type: str
    func: Handler
    is_async: bool


class Service(Mapping[str, HandlerEntry]):
    """The set of handlers one service's code provides, keyed by task type.

    A worker loads it from the registry's ``app: "pkg.module:attr"`` and compares it with the task types
    the registry gives the service.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[str, HandlerEntry] = {}

    def handler(self, task_type: str) -> Callable[[H], H]:
        """Decorate a plain or ``async def`` function taking one :class:`Task` as the handler of ``task_type``."""

        def register(func: H) -> H:
            self.add(task_type, func)
            return func

        return register

    def add(self, task_type: str, func: Handler) -> None:
        """Register ``func`` for ``task_type``; a second handler for one type raises DuplicateHandler."""
        if task_type in self._handlers:
            existing = self._handlers[task_type].func
            raise DuplicateHandler(
                f"service {self.name!r} registers two handlers for {task_type!r}: "
                f"{_qualname(existing)} and {_qualname(func)}. Keep exactly one."
            )
        self._handlers[task_type] = HandlerEntry(task_type, func, inspect.iscoroutinefunction(func))

    def __getitem__(self, task_type: str) -> HandlerEntry:
        return self._handlers[task_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def __repr__(self) -> str:
        return f"Service({self.name!r}, handlers={sorted(self._handlers)})"


def _qualname(func: Handler) -> str:
    module = getattr(func, "__module__", "?")
    name = getattr(func, "__qualname__", repr(func))
    return f"{module}.{name}"
