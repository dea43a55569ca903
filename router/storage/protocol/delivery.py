"""Enqueueing, leasing and settling tasks: enqueue, dequeue, ack, retry, archive, requeue, extend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from router.storage import taskids
from router.storage.keys import QueueKeys, hour_of
from router.storage.protocol.scripts import (
    ACK,
    ARCHIVE,
    DEQUEUE,
    ENQUEUE,
    EXTEND,
    REQUEUE,
    RETRY,
    Arg,
    Call,
    Envelope,
    text,
    wire,
)

__all__ = [
    "ARCHIVE_MAX_AGE_S",
    "ARCHIVE_MAX_SIZE",
    "ENQUEUE_CONFLICT",
    "ENQUEUE_CREATED",
    "ENQUEUE_DUPLICATE",
    "ENQUEUE_REPEATED",
    "AckResult",
    "Completion",
    "Dequeued",
    "EnqueueItem",
    "GroupJoin",
    "RawDelivery",
    "Tombstones",
    "UniqueLock",
    "ack",
    "archive",
    "dequeue",
    "enqueue",
    "extend",
    "parse_ack",
    "parse_dequeue",
    "parse_enqueue",
    "parse_members",
    "requeue",
    "retry",
]

# -- enqueue ------------------------------------------------------------------------------------------------------

ENQUEUE_CREATED = 1
ENQUEUE_REPEATED = 2
ENQUEUE_CONFLICT = 0
ENQUEUE_DUPLICATE = 3


@dataclass(frozen=True)
class UniqueLock:
    """The lock a unique task takes at enqueue: its key, how long it lasts, and its digest (released by the task's
    end when ``until_finished``)."""

    key: str
    ttl_ms: int
    digest: str
    until_finished: bool = False


@dataclass(frozen=True)
class GroupJoin:
    """The group an aggregated task joins, with the bounds that decide when the group is flushed."""

    key: str
    name: str
    grace_ms: int
    max_delay_ms: int
    max_size: int


@dataclass(frozen=True)
class EnqueueItem:
    """One task to store: its id, envelope, run-at time (0: now), and a unique lock or a group when it has one."""

    task_id: str
    envelope: Envelope
    run_at_ms: int = 0
    unique: UniqueLock | None = None
    group: GroupJoin | None = None


def enqueue(qk: QueueKeys, items: Sequence[EnqueueItem]) -> Call:
    """Store the ``items`` of one queue: pending at once, scheduled until run-at, or waiting in their group."""
    keys = [qk.messages, qk.pending, qk.wake, qk.stats, qk.done, qk.scheduled, qk.groups, qk.group_start]
    args: list[Arg] = []
    for item in items:
        opts = ""
        if item.unique is not None:
            keys.append(item.unique.key)
            opts = f"u {len(keys)} {item.unique.ttl_ms} {int(item.unique.until_finished)}"
        if item.group is not None:
            g = item.group
            keys.append(g.key)
            opts += ("|" if opts else "") + f"g {len(keys)} {g.grace_ms} {g.max_delay_ms} {g.max_size} {g.name}"
        args.extend((item.task_id, item.envelope, item.run_at_ms, opts))
    return Call(ENQUEUE, tuple(keys), tuple(args))


def parse_enqueue(reply: Any) -> list[tuple[int, str]]:
    """One (``ENQUEUE_*`` code, detail) per item of an :func:`enqueue` call; the detail of
    :data:`ENQUEUE_DUPLICATE` is the id of the task holding the lock."""
    return [(int(reply[i]), text(reply[i + 1])) for i in range(0, len(reply), 2)]


# -- dequeue ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawDelivery:
    """A leased task as the dequeue script returned it, not yet decoded."""

    task_id: str
    token: int
    envelope: bytes | None
    lost_leases: int
    #: Why the delivery's bookkeeping is unusable (a lost-lease counter that is not a number), or None.
    corrupt: str | None = None

    @property
    def member(self) -> str:
        """The active-set member that identifies this delivery (and fences stale ones)."""
        return taskids.member(self.task_id, self.token)


@dataclass(frozen=True)
class Dequeued:
    """What a dequeue call returned: the leased deliveries, and what the script noted while leasing them."""

    deliveries: list[RawDelivery]
    #: Pending ids dropped as second references to a task already leased or in another state.
    duplicates: list[str]
    #: The new value of the token counter when it had to be reset (it was not a number), else None.
    seq_reset: str | None = None
    #: Ids of tasks cancelled while they ran whose lease a crash returned to pending: leased in this call like the
    #: others, but to be ended as cancelled (:func:`cancelled`), never run.
    cancelled: list[str] = field(default_factory=list)


def dequeue(qk: QueueKeys, lease_ms: int, limit: int, solo_from: int = 0) -> Call:
    """Lease up to ``limit`` pending tasks for ``lease_ms`` (deadlines by Redis's clock); a task whose lease was
    lost ``solo_from`` times or more (0: never) is leased alone."""
    keys = (qk.pending, qk.active, qk.messages, qk.paused, qk.seq, qk.wake, qk.lost, qk.leased, qk.stats, qk.done,
            qk.retry, qk.scheduled, qk.archived, qk.completed, qk.cancel_requests, qk.cancelled, qk.waiters)
    return Call(DEQUEUE, keys, (lease_ms, limit, solo_from))


def parse_dequeue(reply: Any) -> Dequeued:
    """Read the reply to a :func:`dequeue` call."""
    notes, flat = reply[0], reply[1:]
    duplicates: list[str] = []
    cancelled: list[str] = []
    seq_reset: str | None = None
    for i in range(0, len(notes) - 1, 2):
        what, detail = text(notes[i]), text(notes[i + 1])
        if what == "duplicate":
            duplicates.append(detail)
        elif what == "cancelled":
            cancelled.append(detail)
        elif what == "seq_reset":
            seq_reset = detail
    out: list[RawDelivery] = []
    for i in range(0, len(flat), 4):
        raw_id, token, env, lost = flat[i], flat[i + 1], flat[i + 2], flat[i + 3]
        count, corrupt = 0, None
        if lost is not None:
            try:
                count = int(lost)
            except ValueError:
                corrupt = f"its lost-lease counter {bytes(lost)[:100]!r} is not a number"
        out.append(RawDelivery(text(raw_id), int(token), env, count, corrupt))
    return Dequeued(out, duplicates, seq_reset, cancelled)


# -- settling -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """A successful delivery to acknowledge; ``retain_until_ms`` 0 deletes the message at once. ``unique_lock``
    is the "until finished" lock the task releases, if any."""

    member: str
    retain_until_ms: int = 0
    envelope: Envelope = ""
    unique_lock: str | None = None


@dataclass(frozen=True)
class Tombstones:
    """How long, and how many, ids of completed tasks are remembered to refuse a late repeat of their enqueue."""

    window_ms: int = 300_000
    cap: int = 100_000


_ACK_HEAD, _ACK_ITEM = 3, 4  # ack's arguments: now, window, cap; then one quadruple per completion


def ack(qk: QueueKeys, now_ms: int, items: Sequence[Completion], tombstones: Tombstones | None = None) -> Call:
    """Complete ``items`` of one queue whose leases the caller holds; read the reply with :func:`parse_ack`."""
    t = tombstones or Tombstones()
    keys = [qk.active, qk.messages, qk.lost, qk.completed, qk.stats, qk.done, qk.leased, qk.waiters,
            qk.cancel_requests, qk.minutes(hour_of(now_ms))]
    args: list[Arg] = [now_ms, t.window_ms, t.cap]
    for c in items:
        lock = 0
        if c.unique_lock is not None:
            keys.append(c.unique_lock)
            lock = len(keys)
        args.extend((wire(c.member), c.retain_until_ms, c.envelope, lock))
    return Call(ACK, tuple(keys), tuple(args))


def parse_members(reply: Any) -> list[str]:
    """Delivery members in a reply (the stale ones of an ack, the lost ones of an extend)."""
    return [text(m) for m in reply]


@dataclass(frozen=True)
class AckResult:
    """What an ack call did: how many deliveries it completed, and the members it refused as stale."""

    completed: int
    stale: list[str]


def parse_ack(call: Call, reply: Any) -> AckResult:
    """Read the reply to an :func:`ack` call."""
    stale = parse_members(reply)
    return AckResult((len(call.args) - _ACK_HEAD) // _ACK_ITEM - len(stale), stale)


def retry(qk: QueueKeys, member: str, retry_at_ms: int, envelope: Envelope, *, now_ms: int) -> Call:
    """Schedule a failed delivery to run again at ``retry_at_ms``, if the caller still holds its lease (the
    failure is counted in the minute of ``now_ms``)."""
    keys = (qk.active, qk.retry, qk.messages, qk.lost, qk.stats, qk.leased, qk.minutes(hour_of(now_ms)))
    return Call(RETRY, keys, (wire(member), retry_at_ms, envelope, now_ms))


#: Default bounds of a queue's dead letter, and of its cancelled set (WorkerSettings can change the archive's).
ARCHIVE_MAX_SIZE = 10_000
ARCHIVE_MAX_AGE_S = 90 * 86400.0


def archive(qk: QueueKeys, member: str, now_ms: int, envelope: Envelope, max_size: int, max_age_ms: int,
            unique_lock: str | None = None) -> Call:
    """Move a delivery to the dead letter (bounded by ``max_size`` and ``max_age_ms``), if its lease is held,
    releasing its "until finished" ``unique_lock`` if it holds it."""
    keys = (qk.active, qk.archived, qk.messages, qk.lost, qk.stats, qk.leased, qk.waiters, qk.cancel_requests,
            qk.minutes(hour_of(now_ms)),
            *((unique_lock,) if unique_lock else ()))
    return Call(ARCHIVE, keys, (wire(member), now_ms, envelope, max_size, now_ms - max_age_ms))


def requeue(qk: QueueKeys, members: Sequence[str]) -> Call:
    """Give held deliveries back to the front of pending (shutdown), without counting a failure."""
    return Call(REQUEUE, (qk.active, qk.pending, qk.wake, qk.stats, qk.leased), tuple(wire(m) for m in members))


def extend(qk: QueueKeys, lease_ms: int, members: Sequence[str]) -> Call:
    """Extend held leases to ``lease_ms`` from now (Redis's clock); read the lost ones with parse_members."""
    return Call(EXTEND, (qk.active,), (lease_ms, *(wire(m) for m in members)))
