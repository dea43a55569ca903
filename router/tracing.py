"""Trace context across services with OpenTelemetry, when it is installed (the ``otel`` extra).

A :class:`~router.Client` enqueue runs in a PRODUCER span whose W3C ``traceparent`` travels in the envelope (field
``tp``); the worker runs the handler in a CONSUMER span that is a child of it and links to it, so one trace goes from
the code that enqueued, through every service a chain of tasks crosses. Spans follow OpenTelemetry's messaging
conventions (``messaging.system`` "router", ``messaging.destination.name`` "<service>/<queue>",
``messaging.message.id`` the task id).

Off and free when OpenTelemetry is absent: nothing here imports it unless it is installed (:func:`available` looks
for it without importing), and a client or worker without tracing never calls into this module's spans. With the
API installed but no SDK configured, spans are skipped too (no traceparent is written) until a tracer provider is
set. See docs/tracing.md.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any

from router.task import Task

SYSTEM = "router"


@functools.cache
def available() -> bool:
    """Whether OpenTelemetry can be imported here (checked once, without importing it)."""
    try:
        # The top-level name only: finding a submodule would import the package.
        return importlib.util.find_spec("opentelemetry") is not None
    except (ImportError, ValueError):  # a blocked or broken installation counts as absent
        return False


def tracing(enabled: bool | None, tracer_provider: Any = None) -> Tracing | None:
    """A :class:`Tracing` for a client or worker, or None: ``enabled`` None means "when OpenTelemetry is
    installed", False never, True always (ImportError without it)."""
    if enabled is False or (enabled is None and not available()):
        return None
    try:
        return Tracing(tracer_provider)
    except ImportError:  # another opentelemetry-* package without the API
        if enabled:
            raise
        return None


class Tracing:
    """Producer and consumer spans; built only when OpenTelemetry is installed."""

    def __init__(self, tracer_provider: Any = None) -> None:
        from opentelemetry import context, trace  # noqa: PLC0415 - the optional dependency, imported only here
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: PLC0415

        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self._provider = tracer_provider
        self._tracer = (tracer_provider or trace).get_tracer("router")

    def _active(self) -> bool:
        """False while no SDK is configured (the API's proxy provider): spans would be no-ops anyway."""
        return self._provider is not None or not isinstance(self._trace.get_tracer_provider(),
                                                            self._trace.ProxyTracerProvider)

    @contextlib.contextmanager
    def send(self, what: str) -> Iterator[_Send | None]:
        """A PRODUCER span around an enqueue of ``what`` (a task type, or "batch"); yields None when inactive."""
        if not self._active():
            yield None
            return
        with self._tracer.start_as_current_span(f"send {what}", kind=self._trace.SpanKind.PRODUCER,
                                                attributes={"messaging.system": SYSTEM,
                                                            "messaging.operation.type": "send"}) as span:
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            yield _Send(span, carrier.get("traceparent"))

    def middleware(self) -> ConsumerSpans:
        """The worker middleware that runs each handler in a CONSUMER span."""
        return ConsumerSpans(self)


class _Send:
    """The producer span of an enqueue: its traceparent, and where the task went (set once routed)."""

    def __init__(self, span: Any, traceparent: str | None) -> None:
        self._span = span
        self.traceparent = traceparent

    def routed(self, task_id: str, service: str, queue: str, count: int = 1) -> None:
        attributes: dict[str, Any] = {"messaging.destination.name": f"{service}/{queue}"}
        if count == 1:
            attributes["messaging.message.id"] = task_id
        else:
            attributes["messaging.batch.message_count"] = count
        self._span.set_attributes(attributes)


class ConsumerSpans:
    """Worker middleware (see :class:`router.worker.execution.Middleware`): ``before`` starts the CONSUMER span,
    a child of the producer's and linked to it, and makes it current for the handler (its own spans nest inside);
    ``after`` records the outcome and ends it. Both run in the handler's thread (or task, for ``async def``)."""

    def __init__(self, tracing: Tracing) -> None:
        self._t = tracing
        self._open: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def before(self, task: Task) -> None:
        t = self._t
        if not t._active():
            return
        parent = t._propagator.extract({"traceparent": task.traceparent}) if task.traceparent else None
        links = []
        if parent is not None:
            producer = t._trace.get_current_span(parent).get_span_context()
            if producer.is_valid:
                links.append(t._trace.Link(producer))
        span = t._tracer.start_span(
            f"process {task.type}", context=parent, kind=t._trace.SpanKind.CONSUMER, links=links,
            attributes={"messaging.system": SYSTEM, "messaging.operation.type": "process",
                        "messaging.destination.name": f"{task.service}/{task.queue}",
                        "messaging.message.id": task.id, "router.task.type": task.type,
                        "router.task.attempt": task.attempt},
        )
        token = t._context.attach(t._trace.set_span_in_context(span))
        with self._lock:
            self._open[id(task)] = (span, token)

    def after(self, task: Task, error: BaseException | None) -> None:
        with self._lock:
            found = self._open.pop(id(task), None)
        if found is None:
            return
        span, token = found
        t = self._t
        if error is not None:
            span.record_exception(error)
            span.set_status(t._trace.Status(t._trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
        span.end()
        with contextlib.suppress(ValueError):  # detached in another context: the span has ended all the same
            t._context.detach(token)
