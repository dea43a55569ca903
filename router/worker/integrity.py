"""A queue heals itself: the integrity sweep, and the archiving of what it (or the maintenance) quarantined.

Corrupt bookkeeping (an active member that is not a delivery this queue issued, a retry or scheduled id whose
message is gone, a message nothing references) must never stop a queue. ``lua/maintain.lua`` and
``lua/sweep.lua`` move what they find to the queue's quarantine list atomically; here each entry gets an envelope
that says what was wrong (reason ``corrupt``, ``missing_message`` or ``orphan``, the bad entry kept for
inspection) and ``lua/quarantine.lua`` archives it, so nothing is dropped silently. Each archived entry is logged
(``corrupt_entry_archived``) and counted in the queue's stats.

A long-running worker sweeps a slice of each structure every :data:`SWEEP_EVERY_S`; a burst worker makes one full
pass before it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import structlog

from router.clock import Clock, to_ms
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.envelope import Envelope, MalformedMessage, decode, encode, undecodable
from router.storage.keys import QueueKeys
from router.storage.taskids import new_task_id

log = structlog.get_logger(__name__)

#: Seconds between two sweep slices of a long-running worker (an idle queue's sweep costs ~20 commands).
SWEEP_EVERY_S = 60.0
#: Entries of each structure one slice looks at.
SLICE = 100
#: A full pass (burst) looks at this many per call.
FULL_PASS_SLICE = 10_000
#: Orphaned messages are searched for only while pending is at most this long (the search is linear in it).
PENDING_SEARCH_MAX = 10_000
#: Quarantined entries archived per round trip.
BATCH = 100


class Integrity:
    """Sweeps one service's queues and archives their quarantined entries."""

    def __init__(self, queues: Sequence[QueueKeys], clock: Clock) -> None:
        self._queues = list(queues)
        self._clock = clock

    def slice(self, broker: SyncBroker) -> int:
        """Sweep the next slice of every queue; archive what is quarantined. Returns entries archived."""
        replies = broker.run_many([protocol.sweep(qk, SLICE, PENDING_SEARCH_MAX) for qk in self._queues])
        return sum(self.archive_quarantined(broker, qk) for qk, reply in zip(self._queues, replies)
                   if protocol.parse_sweep(reply).quarantined)

    def full_pass(self, broker: SyncBroker) -> int:
        """Sweep every structure of every queue once from the start; archive what is quarantined."""
        archived = 0
        for qk in self._queues:
            wrapped: set[str] = set()
            for calls in range(1000):  # a SCAN pass ends in a few calls; the bound only guards against a bad cursor
                call = protocol.sweep(qk, FULL_PASS_SLICE, PENDING_SEARCH_MAX, new_pass=calls == 0)
                result = protocol.parse_sweep(broker.run(call))
                wrapped |= result.wrapped
                if wrapped >= result.scanned:
                    break
            archived += self.archive_quarantined(broker, qk)
        return archived

    def archive_quarantined(self, broker: SyncBroker, qk: QueueKeys) -> int:
        """Archive every entry waiting in ``qk``'s quarantine, with an envelope saying what was wrong."""
        archived = 0
        while True:
            entries = broker.quarantined(qk, BATCH)
            if not entries:
                return archived
            orphans = [entry.split(b"\0", 1)[1] for entry in entries if entry.startswith(b"orphan\0")]
            stored = dict(zip(orphans, broker.messages(qk, [_text(o) for o in orphans]))) if orphans else {}
            items = [self._archived_as(qk, entry, stored) for entry in entries]
            done = int(broker.run(protocol.quarantine(qk, to_ms(self._clock()), items)))
            archived += done
            if done == 0:  # another worker took them meanwhile, or they were re-referenced: look again
                continue

    def _archived_as(self, qk: QueueKeys, entry: bytes,
                     stored: dict[bytes, bytes | None]) -> tuple[bytes, str, bytes, str | None]:
        kind, _, rest = entry.partition(b"\0")
        now_ms = to_ms(self._clock())
        lock = None
        if kind == b"orphan":
            task_id = _text(rest)
            why = "the message was referenced by no queue structure (pending, active, retry, scheduled, ...)"
            env = _orphan_envelope(stored.get(rest), now_ms, why)
            # An orphan never runs, so it never releases its "until finished" lock: the archive does.
            lock = qk.unique(env.unique) if env.unique else None
        elif kind == b"missing":
            structure, _, raw_id = rest.partition(b"\0")
            task_id = _text(raw_id)
            why = f"task id {task_id!r} was in {_text(structure)} but its message was gone"
            env = Envelope(type="<missing>", payload={"structure": _text(structure), "id": task_id},
                           enqueued_at_ms=now_ms, reason="missing_message", last_error=why)
        else:
            task_id = f"corrupt-{new_task_id()}"
            why = f"active-set member {_text(rest)[:200]!r} is not a delivery this queue issued"
            env = Envelope(type="<corrupt>", payload={"structure": "active", "entry": _text(rest)[:10_000]},
                           enqueued_at_ms=now_ms, reason="corrupt", last_error=why)
        log.warning("corrupt_entry_archived", queue=qk.queue, id=task_id, reason=env.reason, error=why)
        return entry, task_id, encode(env), lock


def _orphan_envelope(raw: bytes | None, now_ms: int, why: str) -> Envelope:
    try:
        return replace(decode(raw), reason="orphan", last_error=why)
    except MalformedMessage:
        return undecodable(raw, "orphan", why, now_ms)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")
