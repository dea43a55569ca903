"""The enqueue-time guard: registry lookup, option checks and payload validation, with no I/O.

``Guard.route`` turns (task type, payload, options) into a :class:`Route` (service, queue, keys, task id and the
encoded envelope) or raises a :class:`~router.errors.GuardError`, so a refused enqueue never writes to Redis.
The sync and asyncio clients both call it; compiled payload validators and queue keys are cached per type.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jsonschema.protocols import Validator

from router.clock import Clock, system_clock
from router.errors import InvalidOption, PayloadInvalid, PayloadTooLarge, UnknownTaskType, Violation
from router.producer import options
from router.registry.fastcheck import Check, compile_fast
from router.registry.model import Registry, TaskSpec
from router.registry.payloads import (
    SchemaEvaluationError,
    evaluation_failure,
    payload_validator,
    payload_violations,
    thaw,
)
from router.storage.envelope import encode_new, encode_payload
from router.storage.keys import QueueKeys, queue_keys
from router.storage.protocol import EnqueueItem, GroupJoin, UniqueLock
from router.storage.taskids import check_task_id, new_task_id

ENQUEUE_OPTIONS = frozenset({"queue", "max_retry", "timeout_s", "task_id", "process_in", "process_at", "deadline",
                             "unique_key", "group"})


@dataclass(frozen=True)
class Route:
    """Where an accepted enqueue goes and what it writes."""

    task_id: str
    task_type: str
    service: str
    queue: str
    keys: QueueKeys
    envelope: bytes  # UTF-8, as stored
    run_at_ms: int = 0  # 0: run now; otherwise the task waits in the scheduled set until then
    generated_id: bool = True  # False when the caller chose the id
    unique: UniqueLock | None = None  # the lock a unique task takes
    group: GroupJoin | None = None  # the group an aggregated task joins

    def item(self) -> EnqueueItem:
        """What the enqueue script stores for this route."""
        return EnqueueItem(self.task_id, self.envelope, self.run_at_ms, self.unique, self.group)


@dataclass(frozen=True)
class _Compiled:
    spec: TaskSpec
    validator: Validator
    fast: Check | None  # certainly-valid shortcut for simple schemas; jsonschema decides everything else
    keys: QueueKeys


class Guard:
    """Routes enqueues by the registry and refuses bad ones before they reach Redis."""

    def __init__(self, registry: Registry, *, clock: Clock = system_clock) -> None:
        self.registry = registry
        self._clock = clock
        self._compiled: dict[str, _Compiled] = {}
        self._queue_keys: dict[tuple[str, str], QueueKeys] = {}

    def route(
        self,
        task_type: str,
        payload: Mapping[str, Any],
        *,
        queue: str | None = None,
        max_retry: int | None = None,
        timeout_s: float | None = None,
        task_id: str | None = None,
        process_in: float | None = None,
        process_at: float | datetime | None = None,
        deadline: float | datetime | None = None,
        unique_key: str | None = None,
        group: str | None = None,
        traceparent: str | None = None,
    ) -> Route:
        """Check one enqueue and encode it; raises a GuardError subclass saying what to fix.

        ``process_in`` (seconds from now) or ``process_at`` (a timezone-aware datetime, or seconds since the epoch)
        delays the task; a time already past runs it at once. ``deadline`` (same forms) archives the task as
        ``deadline_exceeded`` if it has not finished by then. ``unique_key`` names a unique task's lock instead of
        its payload; ``group`` is the group an aggregated task joins (see :mod:`router.producer.options`).
        ``traceparent`` (the client's producer span, see :mod:`router.tracing`) travels in the envelope.
        """
        compiled = self._compiled.get(task_type) or self._compile(task_type)
        spec = compiled.spec
        keys = compiled.keys if queue is None or queue == spec.queue else self._override_queue(spec, queue)
        extra: dict[str, Any] | None = None
        if max_retry is not None or timeout_s is not None:
            extra = options.overrides(max_retry, timeout_s)
        if traceparent is not None:
            extra = {**(extra or {}), "tp": traceparent}
        generated = task_id is None
        if task_id is None:
            task_id = new_task_id()
        else:
            try:
                check_task_id(task_id)
            except ValueError as exc:
                raise InvalidOption("task_id", str(exc)) from None
        if not isinstance(payload, Mapping):
            got = type(payload).__name__
            raise PayloadInvalid(task_type, [Violation("$", f"payload must be an object, got {got}")])
        self._validate(compiled, task_type, payload)
        payload_json = _encode(task_type, payload)
        limit = self.registry.max_payload_bytes
        if len(payload_json) * 4 > limit:  # cheap bound first: UTF-8 is at most 4 bytes a character
            size = len(payload_json.encode("utf-8", "surrogatepass"))
            if size > limit:
                raise PayloadTooLarge(task_type, size, limit)
        now_s = self._clock()
        delayed = process_in is not None or process_at is not None
        run_at_ms = options.run_at_ms(now_s, process_in, process_at) if delayed else 0
        unique = group_join = None
        if spec.unique_s is not None or spec.aggregate is not None or unique_key or group or deadline is not None:
            unique = options.unique_lock(spec, keys, payload_json, unique_key)
            group_join = options.group_join(spec, keys, group, delayed, deadline is not None)
            dl = options.deadline_ms(now_s, deadline, run_at_ms) if deadline is not None else None
            extra = options.extra_fields(
                extra, dl=dl,
                u=unique.digest if unique is not None and unique.until_finished else None, g=group)
        try:
            envelope = encode_new(task_type, payload_json, int(now_s * 1000), extra).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate in a string: valid Python, not valid Unicode text
            raise PayloadInvalid(task_type, [Violation("$", "a string holds a lone UTF-16 surrogate, which is not "
                                                            "valid Unicode; fix how the text was decoded")]) from None
        return Route(task_id, task_type, spec.service, keys.queue, keys, envelope, run_at_ms, generated, unique,
                     group_join)

    def route_options(self, task_type: str, payload: Mapping[str, Any], options: Mapping[str, Any],
                      traceparent: str | None = None) -> Route:
        """:meth:`route` with options from a mapping; an unknown option is an InvalidOption, not a TypeError."""
        unknown = set(options) - ENQUEUE_OPTIONS
        if unknown:
            name = sorted(unknown)[0]
            raise InvalidOption(name, f"no such enqueue option; use {', '.join(sorted(ENQUEUE_OPTIONS))}")
        return self.route(task_type, payload, **options, traceparent=traceparent)

    @staticmethod
    def _validate(compiled: _Compiled, task_type: str, payload: Mapping[str, Any]) -> None:
        """Raise PayloadInvalid unless ``payload`` matches the schema; a validator that fails on its own instead of
        deciding (a schema that recurses without end, an unresolvable reference, arithmetic that overflows) is a
        PayloadInvalid too, never a raw exception out of ``enqueue``."""
        try:
            fast = compiled.fast
            if (fast is not None and fast(payload)) or compiled.validator.is_valid(payload):
                return
            violations = payload_violations(compiled.spec, payload)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # SchemaEvaluationError, or what the validator raised (rpds panics included)
            _encode(task_type, payload)  # a payload JSON cannot carry is the likelier cause, and the better message
            message = str(exc) if isinstance(exc, SchemaEvaluationError) else evaluation_failure(exc)
            raise PayloadInvalid(task_type, [Violation("$", f"the payload schema {message}")]) from None
        raise PayloadInvalid(task_type, violations)

    def _compile(self, task_type: str) -> _Compiled:
        spec = self.registry.tasks.get(task_type)
        if spec is None:
            names = list(self.registry.tasks)
            raise UnknownTaskType(task_type, difflib.get_close_matches(str(task_type), names, n=3, cutoff=0.6))
        fast = compile_fast(thaw(spec.payload_schema))
        compiled = _Compiled(spec, payload_validator(spec), fast, self._keys(spec.service, spec.queue))
        self._compiled[task_type] = compiled
        return compiled

    def _keys(self, service: str, queue: str) -> QueueKeys:
        qk = self._queue_keys.get((service, queue))
        if qk is None:
            qk = self._queue_keys[(service, queue)] = queue_keys(self.registry.services[service], queue)
        return qk

    def _override_queue(self, spec: TaskSpec, queue: str) -> QueueKeys:
        svc = self.registry.services[spec.service]
        if svc.queue(queue) is None:
            names = ", ".join(q.name for q in svc.queues)
            raise InvalidOption(
                "queue",
                f"service {spec.service!r} (owner of {spec.type!r}) has no queue {queue!r}; "
                f"use one of: {names}",
            )
        return self._keys(spec.service, queue)


def _encode(task_type: str, payload: Mapping[str, Any]) -> str:
    """The payload's JSON text, or PayloadInvalid saying why JSON cannot carry it."""
    try:
        return encode_payload(payload)
    except (TypeError, ValueError) as exc:
        raise PayloadInvalid(task_type, [Violation("$", f"not representable as JSON: {exc}")]) from None
    except RecursionError:
        raise PayloadInvalid(task_type, [Violation("$", "nested too deeply to encode")]) from None
