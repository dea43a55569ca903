"""The task lifecycle: looking a task up (and waiting for it), cancelling it, ending a cancelled delivery, flushing
an aggregation group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.storage.keys import QueueKeys
from router.storage.protocol.scripts import CANCEL, CANCELLED, FLUSH, LOOKUP, Arg, Call, Envelope, text, wire

__all__ = [
    "CANCEL_OUTCOMES",
    "WAIT_ENTER",
    "WAIT_LEAVE",
    "Flush",
    "Lookup",
    "cancel",
    "cancelled",
    "flush",
    "lookup",
    "parse_cancel",
    "parse_lookup",
]

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
    return Lookup(text(reply[0]), text(reply[1]), bytes(env) if env else None)


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
    return text(reply[0]), text(reply[1])


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
