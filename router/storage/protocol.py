"""The Redis protocol of router as pure data: which script, which keys, which arguments, and how to read replies.

Sync and asyncio brokers both execute the :class:`Call` values built here, so the two clients share one
implementation of every state transition. Nothing in this module performs I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from router.storage import taskids
from router.storage.keys import QueueKeys, hour_of

Arg = str | int | float | bytes
#: An encoded envelope, as text or as the UTF-8 bytes the guard already produced.
Envelope = str | bytes


@dataclass(frozen=True)
class Script:
    """A Lua script shipped in ``router/storage/lua``; ``sha`` is what EVALSHA needs."""

    name: str
    source: str
    sha: str


def _load(name: str) -> Script:
    source = resources.files("router.storage").joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


ENQUEUE = _load("enqueue")
DEQUEUE = _load("dequeue")
ACK = _load("ack")
RETRY = _load("retry")
ARCHIVE = _load("archive")
REQUEUE = _load("requeue")
EXTEND = _load("extend")
MAINTAIN = _load("maintain")
SWEEP = _load("sweep")
QUARANTINE = _load("quarantine")
PAUSE = _load("pause")
UNPAUSE = _load("unpause")
RUN = _load("run")
DELETE = _load("delete")
OVERVIEW = _load("overview")
PAGE = _load("page")
CRON_FIRE = _load("cron_fire")
LOOKUP = _load("lookup")
CANCEL = _load("cancel")
CANCELLED = _load("cancelled")
FLUSH = _load("flush")
ALL_SCRIPTS = (ENQUEUE, DEQUEUE, ACK, RETRY, ARCHIVE, REQUEUE, EXTEND, MAINTAIN, SWEEP, QUARANTINE, CRON_FIRE, LOOKUP,
               CANCEL, CANCELLED, FLUSH, PAUSE, UNPAUSE, RUN, DELETE, OVERVIEW, PAGE)


@dataclass(frozen=True)
class Call:
    """One script invocation: every key it touches is in ``keys`` (ACL and cluster need that)."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


def wire(text: str) -> str | bytes:
    """``text`` as sent to Redis: ids read back with surrogateescape (garbage pushed by another client that is
    not UTF-8) go out as their original bytes, so the member they name is found again."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


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
    return [(int(reply[i]), _text(reply[i + 1])) for i in range(0, len(reply), 2)]


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
        what, detail = _text(notes[i]), _text(notes[i + 1])
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
        out.append(RawDelivery(_text(raw_id), int(token), env, count, corrupt))
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
    return [_text(m) for m in reply]


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
                             [_text(g) for g in reply[5]])


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
    return SweepResult(frozenset(map(_text, reply[0])), frozenset(map(_text, reply[1])), int(reply[2]))


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


# -- operators' actions (the Inspector) -----------------------------------------------------------------------------


def pause(qk: QueueKeys, now_ms: int) -> Call:
    """Pause a queue: workers lease nothing from it until :func:`unpause`. Reply: 1 paused now, 0 already."""
    return Call(PAUSE, (qk.paused,), (now_ms,))


def unpause(qk: QueueKeys) -> Call:
    """Unpause a queue and wake an idle worker at once. Reply: 1 unpaused now, 0 it was not paused."""
    return Call(UNPAUSE, (qk.paused, qk.pending, qk.wake), ())


#: States an operator may run (make pending now), and may delete from.
RUNNABLE = ("archived", "retry", "scheduled")
DELETABLE = ("pending", "scheduled", "retry", "archived", "completed", "cancelled")


def run(qk: QueueKeys, state: str, items: Sequence[tuple[str, Envelope]]) -> Call:
    """Make each (task id, envelope) pending if it is in ``state`` (one of :data:`RUNNABLE`, or ``"*"`` for any);
    the envelope (``""`` keeps the stored one) replaces an archived task's. Reply: see :func:`parse_run`."""
    if state != "*" and state not in RUNNABLE:
        raise ValueError(f"cannot run tasks that are {state}; runnable states: {', '.join(RUNNABLE)}")
    args: list[Arg] = [state]
    for task_id, envelope in items:
        args.extend((wire(task_id), envelope))
    keys = (qk.archived, qk.retry, qk.scheduled, qk.pending, qk.messages, qk.wake, qk.stats, qk.lost)
    return Call(RUN, keys, tuple(args))


def parse_run(reply: Any) -> list[str]:
    """Per id of a :func:`run` call: the state it was taken from, or ``""`` when it was in none it could leave."""
    return [_text(x) for x in reply]


def _delete_keys(qk: QueueKeys) -> tuple[str, ...]:
    return (qk.pending, qk.scheduled, qk.retry, qk.archived, qk.completed, qk.messages, qk.lost, qk.leased,
            qk.stats, qk.cancelled, qk.waiters)


def delete(qk: QueueKeys, state: str, task_ids: Sequence[str]) -> Call:
    """Delete the tasks ``task_ids`` from ``state`` (one of :data:`DELETABLE`, or ``"*"``: wherever each is);
    a running task is refused. Reply: see :func:`parse_delete`."""
    if state != "*" and state not in DELETABLE:
        raise ValueError(f"cannot delete tasks that are {state}; deletable states: {', '.join(DELETABLE)}")
    return Call(DELETE, _delete_keys(qk), ("ids", state, *(wire(t) for t in task_ids)))


def delete_batch(qk: QueueKeys, state: str, limit: int) -> Call:
    """Delete up to ``limit`` tasks of ``state`` (the oldest pending, the lowest-scored of a set): one bounded step
    of "delete all". Reply: see :func:`parse_delete`."""
    if state not in DELETABLE:
        raise ValueError(f"cannot delete tasks that are {state}; deletable states: {', '.join(DELETABLE)}")
    return Call(DELETE, _delete_keys(qk), ("batch", state, int(limit)))


def parse_delete(reply: Any) -> tuple[int, list[str]]:
    """(tasks deleted, per id of an id-wise call: the state it was deleted from, ``"active"`` or ``""``)."""
    return int(reply[0]), [_text(x) for x in reply[1:]]


# -- read-only views (the Inspector) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """One queue at a glance, as :func:`overview` reads it."""

    #: When the queue was paused (ms), or None when it is not.
    paused_since_ms: int | None
    #: The stored envelope of the oldest pending task (the next to run), if any.
    oldest_pending: bytes | None
    stats: dict[str, int]
    sizes: dict[str, int]
    #: Per-minute counters: minute (since the epoch) -> {"p": processed, "f": failed}.
    minutes: dict[int, dict[str, int]]


def overview(qk: QueueKeys, states: Sequence[tuple[str, str, bool]], hours: Sequence[int]) -> Call:
    """Read a queue's sizes (each (state name, key, is a LIST)), pause flag, oldest pending envelope, counters and
    the per-minute counter hashes of ``hours``, in one step."""
    keys = (qk.paused, qk.messages, qk.stats, qk.pending, *(key for _, key, _ in states),
            *(qk.minutes(h) for h in hours))
    return Call(OVERVIEW, keys, (len(states), *("l" if is_list else "z" for _, _, is_list in states)))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_overview(states: Sequence[tuple[str, str, bool]], reply: Any) -> Overview:
    """Read the reply to an :func:`overview` call; anything that is not a number (corrupt data) reads as 0."""
    paused, oldest, raw_stats, sizes, hashes = reply
    stats = {_text(raw_stats[i]): _int(raw_stats[i + 1]) or 0 for i in range(0, len(raw_stats) - 1, 2)}
    minutes: dict[int, dict[str, int]] = {}
    for flat in hashes:
        for i in range(0, len(flat) - 1, 2):
            kind, _, minute = _text(flat[i]).partition(":")
            at = _int(minute)
            if kind in ("p", "f") and at is not None:
                minutes.setdefault(at, {"p": 0, "f": 0})[kind] = _int(flat[i + 1]) or 0
    paused_ms = None if paused is None else (_int(paused) or 0)
    return Overview(paused_ms, oldest, stats, {name: int(n) for (name, _, _), n in zip(states, sizes)}, minutes)


@dataclass(frozen=True)
class PageEntry:
    """One task of a page: the member as stored (``<id>:<token>`` in the active set), envelope and score."""

    member: str
    envelope: bytes | None
    score: float | None


@dataclass(frozen=True)
class RawPage:
    """What :func:`page` read: where the page started, the state's size, the token counter, the entries."""

    start: int
    total: int
    seq: int
    entries: list[PageEntry]


#: How far around its expected place a list page looks for the previous page's last task.
PAGE_WINDOW = 1000


def page(qk: QueueKeys, key: str, kind: str, limit: int, position: int, anchor: str = "", seq: int | None = None,
         anchor_score: float | None = None) -> Call:
    """Read one page of the state stored at ``key`` (``kind``: ``"l"`` a LIST, ``"z"`` a ZSET of ids, ``"a"`` the
    active set), starting after ``anchor`` (the previous page's last member) or at ``position``."""
    args = (kind, int(limit), int(position), wire(anchor), "" if seq is None else int(seq),
            "-inf" if anchor_score is None else repr(float(anchor_score)), PAGE_WINDOW)
    return Call(PAGE, (key, qk.messages, qk.seq), args)


def parse_page(reply: Any) -> RawPage:
    """Read the reply to a :func:`page` call."""
    entries = [
        PageEntry(_text(reply[i]), reply[i + 1] if reply[i + 1] is not None else None,
                  float(reply[i + 2]) if reply[i + 2] is not None else None)
        for i in range(3, len(reply) - 2, 3)
    ]
    return RawPage(int(reply[0]), int(reply[1]), _int(reply[2]) or 0, entries)


# -- cron ---------------------------------------------------------------------------------------------------------

CRON_ENQUEUED = 1
CRON_CLAIMED_ALREADY = 0
CRON_ID_TAKEN = 2


@dataclass(frozen=True)
class CronFire:
    """One fire of a cron entry: its fire time, the task id derived from it, and the encoded envelope."""

    fire_ms: int
    task_id: str
    envelope: Envelope


def cron_fire(qk: QueueKeys, entry: str, keep_ms: int, fires: Sequence[CronFire]) -> Call:
    """Claim ``fires`` of the cron entry ``entry`` (ascending fire times) and enqueue each one claimed on ``qk``,
    the queue of the entry's task; the claim is kept ``keep_ms``. Read the reply with :func:`parse_cron_fire`."""
    args: list[Arg] = [max(1, keep_ms)]
    for f in fires:
        args.extend((f.fire_ms, f.task_id, f.envelope))
    keys = (qk.cron(entry), qk.messages, qk.pending, qk.wake, qk.stats, qk.done)
    return Call(CRON_FIRE, keys, tuple(args))


def parse_cron_fire(reply: Any) -> list[int]:
    """One code per fire: :data:`CRON_ENQUEUED`, :data:`CRON_CLAIMED_ALREADY` or :data:`CRON_ID_TAKEN`."""
    return [int(x) for x in reply]


# -- the task lifecycle: lookup, cancellation, aggregation ---------------------------------------------------------

def _lookup_keys(qk: QueueKeys) -> tuple[str, ...]:
    """The stores a lookup reads, in the order lookup.lua takes them."""
    return (qk.messages, qk.leased, qk.scheduled, qk.retry, qk.archived, qk.completed, qk.cancelled, qk.done,
            qk.waiters)


WAIT_ENTER = "enter"
WAIT_LEAVE = "leave"


@dataclass(frozen=True)
class Lookup:
    """One task as :func:`lookup` found it: its state word (see lua/lookup.lua), the state's detail (a time in
    ms, or the delivery token of an active task) and its stored envelope, if any."""

    state: str
    detail: str
    envelope: bytes | None


def lookup(qk: QueueKeys, task_id: str, waiter: str = "") -> Call:
    """Find task ``task_id`` of one queue; ``waiter`` :data:`WAIT_ENTER` also counts one more waiter for its end
    (in the same step), :data:`WAIT_LEAVE` one less."""
    return Call(LOOKUP, _lookup_keys(qk), (wire(task_id), waiter))


def parse_lookup(reply: Any) -> Lookup:
    """Read the reply to a :func:`lookup` call."""
    env = reply[2]
    return Lookup(_text(reply[0]), _text(reply[1]), bytes(env) if env else None)


CANCEL_OUTCOMES = ("cancelled", "requested", "already_cancelled", "finished", "unknown")


def cancel(qk: QueueKeys, task_id: str, now_ms: int, max_size: int, max_age_ms: int, group_id: str | None = None,
           unique_lock: str | None = None) -> Call:
    """Cancel task ``task_id``: at once if it has not started (pending, scheduled, retrying, or aggregating in
    ``group_id``), else by a request its worker acts on. The cancelled set is bounded like the archive. Returns
    (outcome, state before) with :func:`parse_cancel`."""
    keys = [qk.messages, qk.pending, qk.scheduled, qk.retry, qk.leased, qk.cancelled, qk.cancel_requests, qk.stats,
            qk.archived, qk.completed, qk.done, qk.waiters, qk.groups, qk.group_start]
    group_index = lock_index = 0
    if group_id is not None:
        keys.append(qk.group(group_id))
        group_index = len(keys)
    if unique_lock is not None:
        keys.append(unique_lock)
        lock_index = len(keys)
    args = (wire(task_id), now_ms, group_index, group_id or "", lock_index, max_size, now_ms - max_age_ms)
    return Call(CANCEL, tuple(keys), args)


def parse_cancel(reply: Any) -> tuple[str, str]:
    """(outcome, state before) of a :func:`cancel` call; the outcome is one of :data:`CANCEL_OUTCOMES`."""
    return _text(reply[0]), _text(reply[1])


def cancelled(qk: QueueKeys, member: str, now_ms: int, envelope: Envelope, unique_lock: str | None = None) -> Call:
    """End a delivery whose task was cancelled while it ran (if the caller still holds its lease): 1 when done."""
    keys = (qk.active, qk.cancelled, qk.messages, qk.lost, qk.stats, qk.leased, qk.cancel_requests, qk.waiters,
            *((unique_lock,) if unique_lock else ()))
    return Call(CANCELLED, keys, (wire(member), now_ms, envelope))


@dataclass(frozen=True)
class Flush:
    """One flush of an aggregation group: the ``members`` consumed (oldest first, as read), the aggregate task
    (``task_id`` '' when every member had to be archived), and the members archived instead, as (id, envelope)."""

    group_id: str
    members: Sequence[str]
    task_id: str
    envelope: Envelope
    archived: Sequence[tuple[str, Envelope]] = ()


def flush(qk: QueueKeys, f: Flush, now_ms: int, rest_due_in_ms: int, max_size: int) -> Call:
    """Replace the first members of a group by its aggregate task, if the group still starts with them."""
    keys = (qk.group(f.group_id), qk.messages, qk.pending, qk.wake, qk.stats, qk.groups, qk.group_start, qk.archived,
            qk.done, qk.waiters)
    args: list[Arg] = [f.group_id, len(f.members), f.task_id, f.envelope, now_ms, rest_due_in_ms, max_size]
    args.extend(wire(m) for m in f.members)
    for task_id, env in f.archived:
        args.extend((wire(task_id), env))
    return Call(FLUSH, keys, tuple(args))
