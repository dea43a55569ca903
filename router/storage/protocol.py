"""The Redis protocol of router as pure data: which script, which keys, which arguments, and how to read replies.

Sync and asyncio brokers both execute the :class:`Call` values built here, so the two clients share one
implementation of every state transition. Nothing in this module performs I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from router.storage.keys import QueueKeys
from router.storage.taskids import member

Arg = str | int | float | bytes


@dataclass(frozen=True)
class Script:
    """A Lua script shipped in ``router/lua``; ``sha`` is what EVALSHA needs."""

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
CRON_FIRE = _load("cron_fire")
ALL_SCRIPTS = (ENQUEUE, DEQUEUE, ACK, RETRY, ARCHIVE, REQUEUE, EXTEND, MAINTAIN, CRON_FIRE)


@dataclass(frozen=True)
class Call:
    """One script invocation: every key it touches is in ``keys`` (ACL and cluster need that)."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


ENQUEUE_CREATED = 1
ENQUEUE_REPEATED = 2
ENQUEUE_CONFLICT = 0


def enqueue(qk: QueueKeys, items: Sequence[tuple[str, str] | tuple[str, str, int]]) -> Call:
    """Store each (task id, envelope[, run-at ms]) of one queue: pending at once, or scheduled until run-at."""
    args: list[Arg] = []
    for item in items:
        args.extend((item[0], item[1], item[2] if len(item) == 3 else 0))
    keys = (qk.messages, qk.pending, qk.wake, qk.stats, qk.done, qk.scheduled)
    return Call(ENQUEUE, keys, tuple(args))


def parse_enqueue(reply: Any) -> list[int]:
    return [int(x) for x in reply]


@dataclass(frozen=True)
class RawDelivery:
    """A leased task as the dequeue script returned it, not yet decoded."""

    task_id: str
    token: int
    envelope: bytes | None
    lost_leases: int

    @property
    def member(self) -> str:
        """The active-set member that identifies this delivery (and fences stale ones)."""
        return member(self.task_id, self.token)


def dequeue(qk: QueueKeys, deadline_ms: int, limit: int) -> Call:
    keys = (qk.pending, qk.active, qk.messages, qk.paused, qk.seq, qk.wake, qk.lost)
    return Call(DEQUEUE, keys, (deadline_ms, limit))


def parse_dequeue(reply: Any) -> list[RawDelivery]:
    out: list[RawDelivery] = []
    for i in range(0, len(reply), 4):
        raw_id, token, env, lost = reply[i], reply[i + 1], reply[i + 2], reply[i + 3]
        task_id = raw_id.decode("utf-8", "surrogateescape") if isinstance(raw_id, bytes) else str(raw_id)
        out.append(RawDelivery(task_id, int(token), env, int(lost) if lost is not None else 0))
    return out


@dataclass(frozen=True)
class Completion:
    """A successful delivery to acknowledge; ``retain_until_ms`` 0 deletes the message at once."""

    member: str
    retain_until_ms: int = 0
    envelope: str = ""


@dataclass(frozen=True)
class Tombstones:
    """How long, and how many, ids of completed tasks are remembered to refuse a late repeat of their enqueue."""

    window_ms: int = 300_000
    cap: int = 100_000


def ack(qk: QueueKeys, now_ms: int, items: Sequence[Completion], tombstones: Tombstones | None = None) -> Call:
    """Complete ``items`` of one queue whose leases the caller holds; read the reply with :func:`parse_ack`."""
    t = tombstones or Tombstones()
    args: list[Arg] = [now_ms, t.window_ms, t.cap]
    for c in items:
        args.extend((c.member, c.retain_until_ms, c.envelope))
    return Call(ACK, (qk.active, qk.messages, qk.lost, qk.completed, qk.stats, qk.done), tuple(args))


def parse_members(reply: Any) -> list[str]:
    """Delivery members in a reply (the stale ones of an ack, the lost ones of an extend)."""
    return [m.decode("utf-8", "surrogateescape") if isinstance(m, bytes) else str(m) for m in reply]


@dataclass(frozen=True)
class AckResult:
    """What an ack call did: how many deliveries it completed, and the members it refused as stale."""

    completed: int
    stale: list[str]


_ACK_HEAD, _ACK_ITEM = 3, 3  # ack's arguments: now, window, cap; then one triple per completion


def parse_ack(call: Call, reply: Any) -> AckResult:
    """Read the reply to an :func:`ack` call."""
    stale = parse_members(reply)
    return AckResult((len(call.args) - _ACK_HEAD) // _ACK_ITEM - len(stale), stale)


def retry(qk: QueueKeys, member: str, retry_at_ms: int, envelope: str) -> Call:
    keys = (qk.active, qk.retry, qk.messages, qk.lost, qk.stats)
    return Call(RETRY, keys, (member, retry_at_ms, envelope))


def archive(qk: QueueKeys, member: str, now_ms: int, envelope: str, max_size: int, max_age_ms: int) -> Call:
    keys = (qk.active, qk.archived, qk.messages, qk.lost, qk.stats)
    return Call(ARCHIVE, keys, (wire(member), now_ms, envelope, max_size, now_ms - max_age_ms))


def wire(text: str) -> str | bytes:
    """``text`` as sent to Redis: ids read back with surrogateescape (garbage pushed by another client that is
    not UTF-8) go out as their original bytes, so the member they name is found again."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def requeue(qk: QueueKeys, members: Sequence[str]) -> Call:
    return Call(REQUEUE, (qk.active, qk.pending, qk.wake, qk.stats), tuple(members))


def extend(qk: QueueKeys, deadline_ms: int, members: Sequence[str]) -> Call:
    return Call(EXTEND, (qk.active,), (deadline_ms, *members))


@dataclass(frozen=True)
class MaintenanceResult:
    recovered: int
    promoted: int
    next_due_ms: int | None
    pending: int


def maintain(qk: QueueKeys, now_ms: int, lease_cutoff_ms: int, limit: int = 500) -> Call:
    keys = (qk.active, qk.pending, qk.retry, qk.scheduled, qk.lost, qk.wake, qk.stats)
    return Call(MAINTAIN, keys, (now_ms, lease_cutoff_ms, limit))


def parse_maintain(reply: Any) -> MaintenanceResult:
    due = float(reply[2])
    return MaintenanceResult(int(reply[0]), int(reply[1]), int(due) if due >= 0 else None, int(reply[3]))


CRON_ENQUEUED = 1
CRON_CLAIMED_ALREADY = 0
CRON_ID_TAKEN = 2


@dataclass(frozen=True)
class CronFire:
    """One fire of a cron entry: its fire time, the task id derived from it, and the encoded envelope."""

    fire_ms: int
    task_id: str
    envelope: str


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
