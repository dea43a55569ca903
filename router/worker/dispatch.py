"""What a leased message becomes: a delivery for a handler, or a dead letter with a reason.

Every message in Redis is untrusted (another client, a bug or an attacker may have written any bytes), so a
freshly leased delivery is decoded and checked here, and whatever cannot run goes to the queue's archive at once,
never retried:

* ``malformed``: an id or envelope that does not decode (bad JSON, wrong field types, an unknown version), kept
  as its raw bytes (up to 1 MB) for inspection;
* ``missing_message``: an id whose stored message is gone;
* ``unknown_type``: a type this worker has no handler for, or that another service owns (a stray message on a
  shared Redis: the failure router exists to remove, dead-lettered instead of retried);
* ``payload_invalid``: a payload its task's JSON Schema refuses (the producer's guard would have; another client
  or an older schema wrote it);
* ``corrupt``: its bookkeeping is unusable (a lost-lease counter that is not a number);
* ``lease_expired``: a task whose lease expired too many times, see :mod:`router.worker.leases`;
* ``deadline_exceeded``: a task delivered after its ``deadline``.

A delivery the dequeue marked as cancelled (someone cancelled the task while a worker that then died held it)
never runs: it ends as cancelled (:meth:`Dispatcher.cancel`), unless its message cannot be read.

Corruption found outside a delivery (stray active members, orphaned messages) is handled by
:mod:`router.worker.integrity`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema.protocols import Validator

from router.clock import Clock, to_ms
from router.registry.fastcheck import Check, compile_fast
from router.registry.model import Registry, ServiceSpec, TaskSpec
from router.registry.payloads import evaluation_failure, payload_validator, payload_violations, thaw
from router.service import HandlerEntry, Service
from router.storage.envelope import MalformedMessage, decode
from router.storage.keys import QueueKeys
from router.storage.protocol import RawDelivery
from router.storage.taskids import check_task_id
from router.task import Task
from router.worker.leases import SOLO_FROM_LOST_LEASES, lost_lease_verdict
from router.worker.settlement import Settlements
from router.worker.state import Delivery


class Dispatcher:
    """Turns raw deliveries of one service into runnable deliveries, dead-lettering the rest."""

    def __init__(self, registry: Registry, spec: ServiceSpec, app: Service, outcomes: Settlements,
                 clock: Clock) -> None:
        self._registry = registry
        self._clock = clock
        self._spec = spec
        self._app = app
        self._outcomes = outcomes
        self._checks: dict[str, tuple[Check | None, Validator]] = {}

    def dispatch(self, qk: QueueKeys, d: RawDelivery) -> tuple[Delivery, HandlerEntry] | None:
        """The delivery and its handler, or None when the message was dead-lettered instead."""
        try:
            check_task_id(d.task_id)
            env = decode(d.envelope)
        except ValueError as exc:
            self._outcomes.archive_raw(qk, d, "malformed", str(exc))
            return None
        except MalformedMessage as exc:
            self._outcomes.archive_raw(qk, d, exc.reason, exc.detail)
            return None
        spec = self._registry.tasks.get(env.type)
        entry = self._app.get(env.type)
        if spec is None or spec.service != self._spec.name or entry is None:
            owner = spec.service if spec else "no service"
            why = f"{env.type!r} has no handler here (owner: {owner})"
            self._outcomes.archive(qk, d.member, env, "unknown_type", why)
            return None
        if d.corrupt is not None:
            self._outcomes.archive(qk, d.member, env, "corrupt", d.corrupt)
            return None
        invalid = self._payload_problem(spec, env.payload)
        if invalid is not None:
            self._outcomes.archive(qk, d.member, env, "payload_invalid", invalid)
            return None
        max_retry = env.max_retry if env.max_retry is not None else spec.max_retry
        too_often = lost_lease_verdict(d.lost_leases, max_retry)
        if too_often is not None:
            self._outcomes.archive(qk, d.member, env, "lease_expired", too_often)
            return None
        timeout_s = env.timeout_s or spec.timeout_s
        if env.deadline_ms is not None:
            left_s = (env.deadline_ms - to_ms(self._clock())) / 1000
            if left_s <= 0:
                self._outcomes.archive(qk, d.member, env, "deadline_exceeded", "delivered after its deadline")
                return None
            timeout_s = min(timeout_s, left_s)
        task = Task(
            d.task_id, env.type, env.payload, self._spec.name, qk.queue, env.failures + d.lost_leases + 1,
            max_retry, timeout_s, env.enqueued_at_ms, env.deadline_ms, traceparent=env.traceparent,
        )
        return Delivery(qk, d.member, task, env, entry.is_async, solo=d.lost_leases >= SOLO_FROM_LOST_LEASES), entry

    def cancel(self, qk: QueueKeys, d: RawDelivery) -> None:
        """End a delivery whose task was cancelled before this lease (see lua/dequeue.lua): it never runs. A message
        that does not decode is dead-lettered as :meth:`dispatch` would (its lock, if any, cannot be named)."""
        try:
            check_task_id(d.task_id)
            env = decode(d.envelope)
        except ValueError as exc:
            self._outcomes.archive_raw(qk, d, "malformed", str(exc))
            return
        except MalformedMessage as exc:
            self._outcomes.archive_raw(qk, d, exc.reason, exc.detail)
            return
        self._outcomes.cancel_leased(qk, d.member, d.task_id, env, "cancelled while it ran; its worker died "
                                     "before stopping it, so it ends now instead of running again")

    def _payload_problem(self, spec: TaskSpec, payload: Mapping[str, Any]) -> str | None:
        """Why ``payload`` violates its task's schema, or None (the fast path first, as the guard does)."""
        found = self._checks.get(spec.type)
        if found is None:
            found = self._checks[spec.type] = (compile_fast(thaw(spec.payload_schema)), payload_validator(spec))
        fast, validator = found
        try:
            if (fast is not None and fast(payload)) or validator.is_valid(payload):
                return None
            return "; ".join(f"{v.path}: {v.message}" for v in payload_violations(spec, payload)[:10])
        except RecursionError:
            return "the payload is nested too deeply to check"
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # the schema library failing (rpds panics included) must not crash the worker
            return f"the payload schema {evaluation_failure(exc)}"
