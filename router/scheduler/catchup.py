"""Which slots a tick fires: every slot that is on time, and for missed ones what the entry's ``catch_up`` says.

A slot is **on time** when the tick sees it at most ``grace_s`` after its fire time: the scheduler was up and just
a little late (a slow tick, a short Redis failover, a replica taking over from one that died). On-time slots all
fire, under every policy. Older slots were **missed** (every scheduler was down, or Redis was, for longer than the
grace); the entry's policy picks among them, and only among those within ``window_s`` of now:

* ``latest`` (default): the most recent missed slot fires once, unless an on-time slot follows it (that one stands
  in for it). A nightly job after a weekend outage runs once, not three times.
* ``all``: every missed slot fires, oldest first, at most ``cap`` of them (the newest).
* ``none``: missed slots never fire.

Pure: no I/O, no clock. Times are whole seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.registry.model import CatchUp
from router.scheduler.cron import CronSchedule


@dataclass(frozen=True)
class Plan:
    """What one tick fires for one entry."""

    #: Fire instants to claim and enqueue, ascending.
    slots: tuple[int, ...]
    #: Missed slots the policy dropped, among those looked at.
    skipped: int = 0
    #: True when there were more missed slots than ``cap`` looked at (older ones, dropped too).
    more: bool = False


def plan(schedule: CronSchedule, policy: CatchUp, cursor: int, now: int, *, window_s: int, grace_s: int,
         cap: int) -> Plan:
    """The slots to fire in ``(cursor, now]``, looking back at most ``window_s``; see the module docstring."""
    start = max(cursor, now - window_s)
    found = schedule.fires(start, now, cap + 1)
    more = len(found) > cap
    if more:
        found = found[1:]
    on_time = [s for s in found if now - s <= grace_s]
    missed = [s for s in found if now - s > grace_s]
    if policy is CatchUp.ALL:
        chosen = missed + on_time
    elif policy is CatchUp.LATEST:
        chosen = on_time or missed[-1:]
    else:
        chosen = on_time
    return Plan(tuple(chosen), len(found) - len(chosen), more)
