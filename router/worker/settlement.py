"""Turning handler outcomes into state transitions, batched for the worker's next round trip.

Completions become ack calls (one per queue per round trip); failures become retry or archive calls, each
fenced by the delivery token. Nothing here talks to Redis: the worker sends :meth:`Settlements.calls` with its
next fetch and hands the replies back to :meth:`Settlements.apply`, which settles each call on its own reply.
Outcomes stay queued until their call succeeds, so a Redis outage or a refused call delays them but loses none (if
the worker dies instead, the leases of the unsettled deliveries expire and those tasks run again: at least once).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from router.clock import Clock, to_ms
from router.errors import DeadlineExceeded, SkipRetry
from router.registry.model import Registry
from router.storage import protocol
from router.storage.envelope import Envelope, encode, encode_result, undecodable
from router.storage.keys import QueueKeys
from router.worker.backoff import Backoff
from router.worker.execution import HandlerTimeout
from router.worker.observe import Settled, TaskObserver
from router.worker.state import Delivery

log = structlog.get_logger(__name__)

#: A timeout this close to the task's deadline is the deadline (the two timers are not exactly in step).
DEADLINE_SLACK_MS = 50


@dataclass(frozen=True)
class ArchivePolicy:
    """Bounds of the dead letter per queue."""

    max_size: int
    max_age_s: float


class Settlements:
    """Outcomes waiting to be written, and the counters of what landed."""

    def __init__(
        self,
        registry: Registry,
        completed_by: str,
        clock: Clock,
        backoff: Backoff,
        archive: ArchivePolicy,
        tombstones: protocol.Tombstones,
        observer: TaskObserver | None = None,
    ) -> None:
        self._registry = registry
        self._observer = observer
        self._completed_by = completed_by
        self._clock = clock
        self._backoff = backoff
        self._archive_policy = archive
        self._tombstones = tombstones
        self._acks: dict[QueueKeys, list[protocol.Completion]] = {}
        # Retry and archive calls, with the counter each one bumps when it lands.
        self._outbox: list[tuple[protocol.Call, str]] = []
        # For each call the last calls() built: what to record when it lands, and how to queue it again if not.
        self._built: list[tuple[Callable[[Any], None], Callable[[], None]]] = []
        self.stats = {"processed": 0, "failed": 0, "retried": 0, "archived": 0, "cancelled": 0, "stale": 0,
                      "requeued": 0}

    def complete(self, run: Delivery, result: Any) -> None:
        """Queue the ack of a successful delivery, keeping its result when the task type retains results (up to
        the registry's ``limits.max_result_bytes``: a larger result is replaced by a note saying so)."""
        spec = self._registry.tasks[run.task.type]
        lock = _lock_of(run.qk, run.envelope)
        if spec.retention_s:
            now = self._clock()
            kept = replace(run.envelope, result=encode_result(result), completed_by=self._completed_by,
                           completed_at_ms=to_ms(now))
            env = encode(kept)
            limit = self._registry.max_result_bytes
            if len(env) > limit and len(env) - len(encode(replace(kept, result=None))) > limit:
                note = (f"the result was not kept: it is over limits.max_result_bytes ({limit} bytes); return a "
                        "reference to data stored elsewhere, or raise the limit in services.yaml")
                env = encode(replace(kept, result=None, last_error=note))
                log.warning("result_too_large", task_id=run.task.id, type=run.task.type, limit=limit)
            item = protocol.Completion(run.member, to_ms(now + spec.retention_s), env, lock)
        else:
            item = protocol.Completion(member=run.member, unique_lock=lock)
        self._acks.setdefault(run.qk, []).append(item)
        if self._observer is not None:
            self._observe(run.qk.queue, run.task.type, "processed", None)

    def fail(self, run: Delivery, error: BaseException) -> None:
        """Queue a retry with backoff, or the archive when retries are exhausted or the handler said SkipRetry."""
        env, task = run.envelope, run.task
        if isinstance(error, HandlerTimeout) and env.deadline_ms is not None \
                and to_ms(self._clock()) >= env.deadline_ms - DEADLINE_SLACK_MS:
            error = DeadlineExceeded(env.deadline_ms)  # it ran into its deadline, not its own timeout
        message = f"{type(error).__name__}: {error}"
        failures = task.attempt
        if isinstance(error, SkipRetry):
            self.archive(run.qk, run.member, env, "skip_retry", message, failures=failures)
        elif isinstance(error, DeadlineExceeded):
            self.archive(run.qk, run.member, env, "deadline_exceeded", message, failures=failures)
        elif failures > task.max_retry:
            self.archive(run.qk, run.member, env, "max_retry_exceeded", message, failures=failures)
        else:
            delay = self._backoff(failures, error)
            now = self._clock()
            retry_at = int((now + delay) * 1000)
            if env.deadline_ms is not None and retry_at >= env.deadline_ms:  # a retry could only start too late
                why = f"{message}; its next attempt would start after its deadline"
                self.archive(run.qk, run.member, env, "deadline_exceeded", why, failures=failures)
                return
            new_env = encode(replace(env, failures=failures, last_error=message[:2000]))
            call = protocol.retry(run.qk, run.member, retry_at, new_env, now_ms=int(now * 1000))
            self._outbox.append((call, "retried"))
            if self._observer is not None:
                self._observe(run.qk.queue, task.type, "retried", None)
            log.info("task_retry_scheduled", task_id=task.id, type=task.type, attempt=failures,
                     retry_in_s=round(delay, 3), error=message[:500])

    def archive(
        self, qk: QueueKeys, member: str, env: Envelope, reason: str, error: str, failures: int | None = None
    ) -> None:
        """Queue the move of a delivery to the dead letter with ``reason`` and the last error."""
        failures = env.failures if failures is None else failures
        dead = replace(env, reason=reason, last_error=error[:2000], failures=failures)
        p = self._archive_policy
        now_ms = int(self._clock() * 1000)
        call = protocol.archive(qk, member, now_ms, encode(dead), p.max_size, int(p.max_age_s * 1000),
                                _lock_of(qk, env))
        self._outbox.append((call, "archived"))
        if self._observer is not None:
            self._observe(qk.queue, env.type, "archived", reason)
        log.warning("task_archived", member=member, type=env.type, queue=qk.queue, reason=reason, error=error[:500])

    def cancelled(self, run: Delivery, detail: str) -> None:
        """Queue the end of a delivery whose task was cancelled (it stopped, or never started)."""
        self.cancel_leased(run.qk, run.member, run.task.id, run.envelope, detail)

    def cancel_leased(self, qk: QueueKeys, member: str, task_id: str, env: Envelope, detail: str) -> None:
        """Queue the end, as cancelled, of the leased delivery ``member`` whose message is ``env``; its "until
        finished" unique lock is released in the same step."""
        ended = replace(env, reason="cancelled", last_error=detail[:2000])
        call = protocol.cancelled(qk, member, to_ms(self._clock()), encode(ended), _lock_of(qk, env))
        self._outbox.append((call, "cancelled"))
        log.info("task_cancelled", task_id=task_id, type=env.type, queue=qk.queue, detail=detail[:500])

    def _observe(self, queue: str, task_type: str, outcome: Settled, reason: str | None) -> None:
        assert self._observer is not None
        known = task_type if task_type in self._registry.tasks else "<unknown>"  # untrusted: never a raw label
        try:
            self._observer.task_settled(queue, known, outcome, reason)
        except Exception as exc:  # an observer's failure is not the task's
            log.warning("observer_failed", hook="task_settled", error=f"{type(exc).__name__}: {exc}")

    def archive_raw(self, qk: QueueKeys, d: protocol.RawDelivery, reason: str, detail: str) -> None:
        """Dead-letter a message that could not be decoded, keeping its bytes (up to 1 MB) for inspection."""
        self.archive(qk, d.member, undecodable(d.envelope, reason, detail), reason, detail)

    def calls(self) -> list[protocol.Call]:
        """Every queued transition: retries and archives first, then one ack call per queue."""
        calls: list[protocol.Call] = []
        self._built = []
        for entry in self._outbox:
            call, what = entry
            calls.append(call)
            self._built.append((functools.partial(self._count, what), functools.partial(self._queue_again, entry)))
        if self._acks:
            now_ms = int(self._clock() * 1000)
            for qk, items in self._acks.items():
                call = protocol.ack(qk, now_ms, items, self._tombstones)
                calls.append(call)
                again = functools.partial(self._acks_again, qk, items)
                self._built.append((functools.partial(self._count_ack, call), again))
        return calls

    def apply(self, calls: Sequence[protocol.Call], replies: Sequence[Any]) -> Exception | None:
        """Settle each of :meth:`calls` on its own reply (from ``SyncBroker.run_each``): forget the outcomes whose
        call succeeded, keep the others queued for the next round trip. Returns the first failure, if any."""
        if not calls:
            return None
        built, self._built = self._built, []
        self._outbox, self._acks = [], {}
        first_error: Exception | None = None
        for (landed, again), reply in zip(built, replies):
            if isinstance(reply, Exception):
                first_error = first_error or reply
                again()
            else:
                landed(reply)
        return first_error

    def _queue_again(self, entry: tuple[protocol.Call, str]) -> None:
        self._outbox.append(entry)

    def _acks_again(self, qk: QueueKeys, items: list[protocol.Completion]) -> None:
        self._acks.setdefault(qk, []).extend(items)

    def _count(self, what: str, reply: Any) -> None:
        if int(reply) == 1:
            self.stats[what] += 1
            if what != "cancelled":
                self.stats["failed"] += 1
        else:
            self.stats["stale"] += 1
            log.warning("stale_completion_refused", what=what, reason="lease no longer held")

    def _count_ack(self, call: protocol.Call, reply: Any) -> None:
        acked = protocol.parse_ack(call, reply)
        self.stats["processed"] += acked.completed
        self.stats["stale"] += len(acked.stale)
        for member in acked.stale:
            log.warning("stale_completion_refused", member=member, reason="lease no longer held")


def _lock_of(qk: QueueKeys, env: Envelope) -> str | None:
    """The "until finished" unique lock a task releases when it ends, if it has one."""
    return qk.unique(env.unique) if env.unique else None
