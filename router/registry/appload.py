"""Importing each service's handler set (``app: "pkg.module:attr"``) and comparing it with the registry.

``router validate --import`` runs :func:`check_handlers` over the whole fleet; a worker calls :func:`load_app` and
:func:`compare_handlers` for its own service at start. Both report :class:`~router.errors.Problem` values located
in services.yaml: at the ``app:`` line for import failures and stray handlers, at the task's declaration for a
missing handler, and naming the real owner (with its file and line) of a task another service handles.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from router.errors import AppLoadError, Problem
from router.registry.messages import suggest
from router.registry.model import Registry, ServiceSpec, SourceLocation
from router.service import Service


@contextmanager
def app_dir(path: str | None) -> Iterator[None]:
    """Make ``path`` importable for the duration (like ``python -m``), so ``app:`` paths resolve from it."""
    if path is None or path in sys.path:
        yield
        return
    sys.path.insert(0, path)
    try:
        yield
    finally:
        if path in sys.path:
            sys.path.remove(path)


def load_app(spec: ServiceSpec) -> Service:
    """Import ``spec.app`` ("package.module:attribute") and return the :class:`Service` it names.

    Raises:
        AppLoadError: the service has no ``app``, the import fails (any exception at import time, including
            DuplicateHandler), the attribute is missing, or it is not a Service for this service.
    """
    where = spec.app_location or spec.location
    if not spec.app:
        raise AppLoadError(_problem(where, f"service {spec.name!r} has no `app:`; set it to the "
                                    "\"package.module:attribute\" of its router.Service", "app-missing"))
    module_name, _, attr = spec.app.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing service code (even DuplicateHandler) is the user's to fix
        raise AppLoadError(_problem(where, f"cannot import {module_name!r} for service {spec.name!r}: "
                                    f"{type(exc).__name__}: {exc}", "app-import")) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(_problem(where, f"module {module_name!r} has no attribute {attr!r}; point `app:` "
                                        "at the router.Service object", "app-import")) from None
    if not isinstance(obj, Service):
        raise AppLoadError(_problem(where, f"{spec.app} is a {type(obj).__name__}, not a router.Service; point "
                                    "`app:` at the object created with Service(...)", "app-type"))
    if obj.name != spec.name:
        raise AppLoadError(_problem(where, f"{spec.app} is Service({obj.name!r}) but the registry wires it to "
                                    f"service {spec.name!r}; fix `app:` or the Service name", "app-name"))
    return obj


def compare_handlers(spec: ServiceSpec, registry: Registry, handlers: Mapping[str, object]) -> list[Problem]:
    """Every disagreement between a service's handler set and the task types the registry gives it.

    Args:
        spec: the service, from ``registry.services``.
        registry: the whole registry, to name the real owner of a task handled by the wrong service.
        handlers: the handler set (a :class:`Service` is a Mapping of task type to handler).

    Returns:
        One Problem per declared task without a handler (aggregate members need none, and may have none), per
        handler for another service's task, and per handler for a type nobody declares; empty when they agree.
    """
    problems: list[Problem] = []
    app_where = spec.app_location or spec.location
    for task_type, task in spec.tasks.items():
        if task.aggregate is not None:  # its tasks never run on their own: the aggregate's handler gets them
            if task_type in handlers:
                problems.append(_problem(task.location or spec.location, f"{spec.app or spec.name} registers a "
                                         f"handler for {task_type!r}, whose tasks are aggregated into "
                                         f"{task.aggregate.into!r} and never run on their own; remove the handler "
                                         f"and handle {task.aggregate.into!r}", "handler-aggregated"))
            continue
        if task_type not in handlers:
            problems.append(_problem(task.location or spec.location, f"service {spec.name!r} declares task "
                                     f"{task_type!r} but {spec.app or 'its app'} has no handler for it; add "
                                     f"@app.handler({task_type!r}) or remove the declaration", "handler-missing"))
    for task_type in handlers:
        if task_type in spec.tasks:
            continue
        owner = registry.tasks.get(task_type)
        if owner is not None:
            message = (f"{spec.app or spec.name} registers a handler for {task_type!r}, which is owned by service "
                       f"{owner.service!r} ({_at(owner.location)}); remove the handler from {spec.name!r}, or move "
                       "the task declaration if this service should own it")
            problems.append(_problem(app_where, message, "handler-foreign"))
        else:
            message = (f"{spec.app or spec.name} registers a handler for {task_type!r}, which no service declares"
                       f"{suggest(task_type, spec.tasks)}; declare it under services.{spec.name}.tasks or remove "
                       "the handler")
            problems.append(_problem(app_where, message, "handler-undeclared"))
    return problems


def check_handlers(registry: Registry, *, directory: str | None = None) -> list[Problem]:
    """Import every service's ``app`` (from ``directory`` first, when given) and compare it with the registry.

    Returns every problem across the fleet; services without ``app`` are reported too, since no worker
    could start for them.
    """
    problems: list[Problem] = []
    with app_dir(directory):
        for spec in registry.services.values():
            try:
                app = load_app(spec)
            except AppLoadError as exc:
                problems.append(exc.problem)
                continue
            problems += compare_handlers(spec, registry, app)
    return problems


def _problem(where: SourceLocation | None, message: str, code: str) -> Problem:
    if where is None:
        return Problem("<registry>", 1, 1, message, code)
    return Problem(where.file, where.line, where.column, message, code)


def _at(location: SourceLocation | None) -> str:
    return f"{location.file}:{location.line}" if location else "the registry"
