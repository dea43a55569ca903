"""The enqueue options beyond routing, each checked into what the enqueue script needs: policy overrides
(``max_retry``, ``timeout_s``), delays (``process_in``, ``process_at``), a ``deadline``, a unique task's lock
(``unique_s`` in the registry, ``unique_key``), and a group to aggregate in (``group``). Pure code, no I/O; every
refusal is an :class:`~router.errors.InvalidOption` naming the option and the fix."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from router.clock import to_ms
from router.errors import InvalidOption
from router.names import name_problem
from router.registry.model import TaskSpec, UniquePolicy
from router.storage.envelope import MAX_RETRY_LIMIT, MAX_TIMEOUT_S
from router.storage.keys import QueueKeys, group_id_of
from router.storage.protocol import GroupJoin, UniqueLock

#: The longest ``unique_key`` accepted (it is hashed; the bound only keeps messages and logs readable).
MAX_UNIQUE_KEY_LEN = 1024


def overrides(max_retry: int | None, timeout_s: float | None) -> dict[str, Any]:
    """The envelope fields of the policy overrides (``r``, ``to``)."""
    extra: dict[str, Any] = {}
    if max_retry is not None:
        if not _is_int(max_retry) or not 0 <= max_retry <= MAX_RETRY_LIMIT:
            raise InvalidOption("max_retry", f"must be an integer from 0 to {MAX_RETRY_LIMIT}, got {max_retry!r}")
        extra["r"] = max_retry
    if timeout_s is not None:
        if not _is_number(timeout_s) or not math.isfinite(timeout_s) or not 0 < timeout_s < MAX_TIMEOUT_S:
            raise InvalidOption("timeout_s", f"must be a positive number of seconds below {MAX_TIMEOUT_S:g}, "
                                             f"got {timeout_s!r}")
        extra["to"] = timeout_s
    return extra


def run_at_ms(now_s: float, process_in: float | None, process_at: float | datetime | None) -> int:
    """When a delayed task should run (ms since the epoch), or 0 for "now"; refuses contradictory delays."""
    if process_in is not None and process_at is not None:
        raise InvalidOption("process_in", "give process_in or process_at, not both")
    if process_in is not None:
        if not _is_number(process_in) or not math.isfinite(process_in) or process_in < 0:
            raise InvalidOption("process_in", f"must be a finite number of seconds >= 0, got {process_in!r}")
        at_s = now_s + process_in
    else:
        at_s = _instant("process_at", process_at)
    return to_ms(at_s) if at_s > now_s else 0


def deadline_ms(now_s: float, deadline: float | datetime, run_at_ms: int = 0) -> int:
    """The deadline (ms since the epoch) of a task that must start and finish by ``deadline``; refused when it
    is past, or not after the delayed start ``run_at_ms`` (0: none): either way the task could never run."""
    at_s = _instant("deadline", deadline)
    if at_s <= now_s:
        raise InvalidOption("deadline", "is already past: the task could never run; give a later time")
    at_ms = to_ms(at_s)
    if run_at_ms and at_ms <= run_at_ms:
        raise InvalidOption("deadline", "is not after the delayed start (process_in/process_at): the task would be "
                                        "archived as deadline_exceeded without running; give a later deadline or "
                                        "a shorter delay")
    return at_ms


def unique_lock(spec: TaskSpec, keys: QueueKeys, payload_json: str, unique_key: str | None) -> UniqueLock | None:
    """The lock a unique task takes at enqueue, or None for a task type without ``unique_s``.

    The lock is named by the SHA-1 of the task type and its payload as canonical JSON (sorted keys), or of the
    type and ``unique_key`` when one is given; it lives in the queue the task goes to (``Q:unique:<digest>``).
    """
    if unique_key is not None and spec.unique_s is None:
        raise InvalidOption("unique_key", f"task type {spec.type!r} is not unique: set `unique_s` on it in "
                                          "services.yaml, or drop unique_key")
    if spec.unique_s is None:
        return None
    if unique_key is None:
        canonical = json.dumps(json.loads(payload_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        material = f"{spec.type}\0p\0{canonical}"
    elif isinstance(unique_key, str) and 0 < len(unique_key) <= MAX_UNIQUE_KEY_LEN:
        material = f"{spec.type}\0k\0{unique_key}"
    else:
        raise InvalidOption("unique_key", f"must be a non-empty string of at most {MAX_UNIQUE_KEY_LEN} "
                                          f"characters, got {unique_key!r}")
    digest = hashlib.sha1(material.encode("utf-8", "surrogatepass")).hexdigest()
    # At least 1 ms: a window under a millisecond (the schema allows any positive number) would round to PX 0,
    # which Redis refuses, failing every enqueue of the type.
    return UniqueLock(keys.unique(digest), max(1, to_ms(spec.unique_s)), digest,
                      spec.unique_policy is UniquePolicy.UNTIL_FINISHED)


def group_join(spec: TaskSpec, keys: QueueKeys, group: str | None, delayed: bool,
               deadline: bool = False) -> GroupJoin | None:
    """The group an aggregated task joins, or None; refuses a group for a type that does not aggregate, and the
    options a member cannot honour (a delay, a deadline: its work runs inside the aggregate task)."""
    agg = spec.aggregate
    if group is None:
        if agg is not None:
            raise InvalidOption("group", f"task type {spec.type!r} aggregates into {agg.into!r}: give group=...")
        return None
    if agg is None:
        raise InvalidOption("group", f"task type {spec.type!r} does not aggregate; declare `aggregate:` on it in "
                                     "services.yaml, or drop group")
    problem = name_problem("group", group)
    if problem is not None:
        raise InvalidOption("group", problem)
    if delayed:
        raise InvalidOption("group", "a group member waits in its group, not in the scheduled set: drop "
                                     "process_in/process_at")
    if deadline:
        raise InvalidOption("deadline", "a group member runs inside its aggregate task, which has no deadline of its "
                                        "own: drop deadline, or bound the wait with the aggregate's max_delay_s")
    group_id = group_id_of(spec.type, group)
    return GroupJoin(keys.group(group_id), group_id, to_ms(agg.grace_s), to_ms(agg.max_delay_s), agg.max_size)


def extra_fields(base: Mapping[str, Any] | None, **fields: Any) -> dict[str, Any] | None:
    """``base`` with the ``fields`` that are not None, or None when nothing is set (the hot path adds nothing)."""
    extra = dict(base or {})
    extra.update((k, v) for k, v in fields.items() if v is not None)
    return extra or None


def _instant(option: str, value: float | datetime | None) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidOption(option, "a naive datetime is ambiguous; give one with a tzinfo (e.g. UTC)")
        return value.timestamp()
    if not _is_number(value) or not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidOption(option, f"must be an aware datetime or epoch seconds, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
