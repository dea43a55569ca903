"""The operators' actions and read-only views of the Inspector: pause, unpause, run, delete, overview, page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.storage.keys import QueueKeys
from router.storage.protocol.scripts import DELETE, OVERVIEW, PAGE, PAUSE, RUN, UNPAUSE, Arg, Call, Envelope, text, wire

__all__ = [
    "DELETABLE",
    "PAGE_WINDOW",
    "RUNNABLE",
    "Overview",
    "PageEntry",
    "RawPage",
    "delete",
    "delete_batch",
    "overview",
    "page",
    "parse_delete",
    "parse_overview",
    "parse_page",
    "parse_run",
    "pause",
    "run",
    "unpause",
]

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
    return [text(x) for x in reply]


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
    return int(reply[0]), [text(x) for x in reply[1:]]


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
    stats = {text(raw_stats[i]): _int(raw_stats[i + 1]) or 0 for i in range(0, len(raw_stats) - 1, 2)}
    minutes: dict[int, dict[str, int]] = {}
    for flat in hashes:
        for i in range(0, len(flat) - 1, 2):
            kind, _, minute = text(flat[i]).partition(":")
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
        PageEntry(text(reply[i]), reply[i + 1] if reply[i + 1] is not None else None,
                  float(reply[i + 2]) if reply[i + 2] is not None else None)
        for i in range(3, len(reply) - 2, 3)
    ]
    return RawPage(int(reply[0]), int(reply[1]), _int(reply[2]) or 0, entries)
