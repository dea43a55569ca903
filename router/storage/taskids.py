"""How a task is named: the id a producer generates or accepts, and the delivery member that fences a lease.

* **Generated ids** (:data:`new_task_id`): a random 12-character URL-safe prefix per process (72 bits) and a
  counter, about 0.3 us each instead of the 2-4 us of a fresh ``secrets`` call per task. The prefix is drawn
  again in a forked child, so two processes never share one.
* **Caller-chosen ids** (:func:`check_task_id`): 1-128 printable ASCII characters without braces or
  whitespace; checked at every entry point (enqueue options, decoded deliveries, heartbeat ids).
* **Delivery members**: a leased task sits in ``Q:active`` as ``"<task id>:<token>"`` (:func:`member`), the
  token a per-queue counter (``Q:seq``) bumped by every dequeue. Ack, retry, archive and lease extension name the
  member, so a worker that lost its lease (its token is stale) cannot settle a task another worker now owns. The
  Lua scripts split a member with the pattern ``'^(.*):%d+$'``, the inverse of :func:`member`.

Ids are unique per queue, not per service: a queue is one cluster slot, and no script can check a whole service.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets

MAX_TASK_ID_LEN = 128
_TASK_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_TASK_ID_LEN}}}")
_MEMBER = re.compile(r"(.*):(\d+)", re.DOTALL)


class _TaskIds:
    """The generator behind :data:`new_task_id`."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_urlsafe(9)
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


#: A new unique task id (URL-safe, 13-28 characters).
new_task_id = _TaskIds()


def check_task_id(value: object) -> str:
    """``value`` if it is a valid task id (1-128 printable ASCII, no braces, no whitespace), else ValueError."""
    if not isinstance(value, str) or not _TASK_ID.fullmatch(value) or "{" in value or "}" in value:
        raise ValueError(
            f"invalid task id {value!r}: use 1-{MAX_TASK_ID_LEN} printable ASCII characters without "
            "braces or whitespace"
        )
    return value


def member(task_id: str, token: int) -> str:
    """The active-set member of one delivery of ``task_id``."""
    return f"{task_id}:{token}"


def split_member(value: str) -> tuple[str, int] | None:
    """(task id, token) of a delivery member, or None when ``value`` is not one (corrupt bookkeeping)."""
    found = _MEMBER.fullmatch(value)
    return (found.group(1), int(found.group(2))) if found else None
