"""The enqueue-time guard: registry lookup, option checks and payload validation, with no I/O.

``Guard.route`` turns (task type, payload, options) into a :class:`Route` (service, queue, keys, task id and the
encoded envelope) or raises a :class:`~router.errors.GuardError`, so a refused enqueue never writes to Redis.
The sync and asyncio clients both call it; compiled payload validators and queue keys are cached per type.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jsonschema.protocols import Validator

from router.clock import Clock, system_clock
from router.errors import InvalidOption, PayloadInvalid, PayloadTooLarge, UnknownTaskType, Violation
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
from router.storage.taskids import check_task_id, new_task_id

ENQUEUE_OPTIONS = frozenset({"queue", "max_retry", "timeout_s", "task_id", "process_in", "process_at"})
MAX_RETRY_LIMIT = 1000


@dataclass(frozen=True)
class Route:
    """Where an accepted enqueue goes and what it writes."""

    task_id: str
    task_type: str
    service: str
    queue: str
    keys: QueueKeys
    envelope: str
    run_at_ms: int = 0  # 0: run now; otherwise the task waits in the scheduled set until then
    generated_id: bool = True  # False when the caller chose the id


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
    ) -> Route:
        """Check one enqueue and encode it; raises a GuardError subclass saying what to fix.

        ``process_in`` (seconds from now) or ``process_at`` (a timezone-aware datetime, or seconds since the epoch)
        delays the task; a time already past runs it at once.
        """
        compiled = self._compiled.get(task_type) or self._compile(task_type)
        spec = compiled.spec
        keys = compiled.keys if queue is None or queue == spec.queue else self._override_queue(spec, queue)
        extra: dict[str, Any] | None = None
        if max_retry is not None or timeout_s is not None:
            extra = self._overrides(max_retry, timeout_s)
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
            size = len(payload_json.encode("utf-8"))
            if size > limit:
                raise PayloadTooLarge(task_type, size, limit)
        now_s = self._clock()
        run_at_ms = 0 if process_in is None and process_at is None else _run_at_ms(now_s, process_in, process_at)
        envelope = encode_new(task_type, payload_json, int(now_s * 1000), extra)
        return Route(task_id, task_type, spec.service, keys.queue, keys, envelope, run_at_ms, generated)

    def route_options(self, task_type: str, payload: Mapping[str, Any], options: Mapping[str, Any]) -> Route:
        """:meth:`route` with options from a mapping; an unknown option is an InvalidOption, not a TypeError."""
        unknown = set(options) - ENQUEUE_OPTIONS
        if unknown:
            name = sorted(unknown)[0]
            raise InvalidOption(name, f"no such enqueue option; use {', '.join(sorted(ENQUEUE_OPTIONS))}")
        return self.route(task_type, payload, **options)

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

    @staticmethod
    def _overrides(max_retry: int | None, timeout_s: float | None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if max_retry is not None:
            is_int = isinstance(max_retry, int) and not isinstance(max_retry, bool)
            if not is_int or not 0 <= max_retry <= MAX_RETRY_LIMIT:
                raise InvalidOption("max_retry", f"must be an integer from 0 to {MAX_RETRY_LIMIT}, got {max_retry!r}")
            extra["r"] = max_retry
        if timeout_s is not None:
            ok = isinstance(timeout_s, (int, float)) and not isinstance(timeout_s, bool)
            if not ok or not math.isfinite(timeout_s) or timeout_s <= 0:
                raise InvalidOption("timeout_s", f"must be a positive number of seconds, got {timeout_s!r}")
            extra["to"] = timeout_s
        return extra


def _encode(task_type: str, payload: Mapping[str, Any]) -> str:
    """The payload's JSON text, or PayloadInvalid saying why JSON cannot carry it."""
    try:
        return encode_payload(payload)
    except (TypeError, ValueError) as exc:
        raise PayloadInvalid(task_type, [Violation("$", f"not representable as JSON: {exc}")]) from None
    except RecursionError:
        raise PayloadInvalid(task_type, [Violation("$", "nested too deeply to encode")]) from None


def _run_at_ms(now_s: float, process_in: float | None, process_at: float | datetime | None) -> int:
    """When a delayed task should run (ms since the epoch), or 0 for "now"; refuses contradictory delays."""
    if process_in is not None and process_at is not None:
        raise InvalidOption("process_in", "give process_in or process_at, not both")
    if process_in is not None:
        if not _is_number(process_in) or not math.isfinite(process_in) or process_in < 0:
            raise InvalidOption("process_in", f"must be a finite number of seconds >= 0, got {process_in!r}")
        at_s = now_s + process_in
    elif isinstance(process_at, datetime):
        if process_at.tzinfo is None or process_at.utcoffset() is None:
            raise InvalidOption("process_at", "a naive datetime is ambiguous; give one with a tzinfo (e.g. UTC)")
        at_s = process_at.timestamp()
    else:
        if not _is_number(process_at) or not math.isfinite(process_at):  # type: ignore[arg-type]
            raise InvalidOption("process_at", f"must be an aware datetime or epoch seconds, got {process_at!r}")
        at_s = float(process_at)  # type: ignore[arg-type]
    return int(at_s * 1000) if at_s > now_s else 0


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
