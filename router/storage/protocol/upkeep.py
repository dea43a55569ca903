"""Keeping queues healthy: the maintenance sweep (recovery, promotion, due groups), the integrity sweep and the
quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from router.storage.keys import QueueKeys
from router.storage.protocol.scripts import MAINTAIN, QUARANTINE, SWEEP, Arg, Call, Envelope, text, wire

__all__ = [
    "MaintenanceResult",
    "QuarantineItem",
    "SweepResult",
    "maintain",
    "parse_maintain",
    "parse_sweep",
    "quarantine",
    "sweep",
]

# -- maintenance and integrity ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaintenanceResult:
    """What a maintenance sweep of one queue did and found."""

    recovered: int
    promoted: int
    #: Milliseconds until the next lease expires or task falls due, or None when nothing waits.
    next_due_in_ms: int | None
    pending: int
    #: Corrupt entries waiting in the queue's quarantine to be archived.
    quarantined: int
    #: Ids of the aggregation groups due to be flushed (at most 10 per sweep).
    due_groups: list[str] = field(default_factory=list)


def maintain(qk: QueueKeys, now_ms: int, grace_ms: int, limit: int = 500) -> Call:
    """Recover leases expired more than ``grace_ms`` ago (Redis's clock) and promote tasks due at ``now_ms``."""
    keys = (qk.active, qk.pending, qk.retry, qk.scheduled, qk.lost, qk.wake, qk.stats, qk.leased, qk.quarantine,
            qk.groups)
    return Call(MAINTAIN, keys, (now_ms, grace_ms, limit))


def parse_maintain(reply: Any) -> MaintenanceResult:
    """Read the reply to a :func:`maintain` call."""
    due = int(reply[2])
    return MaintenanceResult(int(reply[0]), int(reply[1]), due if due >= 0 else None, int(reply[3]), int(reply[4]),
                             [text(g) for g in reply[5]])


@dataclass(frozen=True)
class SweepResult:
    """What one integrity sweep call covered, and how many corrupt entries wait in the quarantine."""

    #: The structures whose pass ended in this call, and those it looked at.
    wrapped: frozenset[str]
    scanned: frozenset[str]
    quarantined: int


def sweep(qk: QueueKeys, count: int, pending_max: int, new_pass: bool = False) -> Call:
    """Check the next ``count`` entries of each structure for corruption (see lua/sweep.lua)."""
    keys = (qk.messages, qk.pending, qk.active, qk.scheduled, qk.retry, qk.archived, qk.completed, qk.leased,
            qk.lost, qk.quarantine, qk.sweep, qk.stats, qk.cancelled)
    return Call(SWEEP, keys, (count, pending_max, "1" if new_pass else "0"))


def parse_sweep(reply: Any) -> SweepResult:
    """Read the reply to a :func:`sweep` call."""
    return SweepResult(frozenset(map(text, reply[0])), frozenset(map(text, reply[1])), int(reply[2]))


#: A quarantined entry to archive: (entry as stored, id to archive under, envelope with the reason), optionally
#: followed by the "until finished" unique lock the task holds (its key, or None).
QuarantineItem = tuple[bytes, str, Envelope] | tuple[bytes, str, Envelope, str | None]


def quarantine(qk: QueueKeys, now_ms: int, items: Sequence[QuarantineItem]) -> Call:
    """Archive quarantined entries, releasing the unique lock an archived task holds and telling its waiters."""
    args: list[Arg] = [now_ms]
    keys = [qk.quarantine, qk.messages, qk.archived, qk.stats, qk.leased, qk.pending, qk.scheduled, qk.retry,
            qk.completed, qk.lost, qk.cancelled, qk.waiters]
    for item in items:
        entry, task_id, envelope = item[0], item[1], item[2]
        lock = item[3] if len(item) == 4 else None
        index = 0
        if lock is not None:
            keys.append(lock)
            index = len(keys)
        args.extend((entry, wire(task_id), envelope, index))
    return Call(QUARANTINE, tuple(keys), tuple(args))
