"""Firing cron entries: claim a slot and enqueue its task in one script."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.storage.keys import QueueKeys
from router.storage.protocol.scripts import CRON_FIRE, Arg, Call, Envelope

__all__ = ["CRON_CLAIMED_ALREADY", "CRON_ENQUEUED", "CRON_ID_TAKEN", "CronFire", "cron_fire", "parse_cron_fire"]

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
