"""The cron scheduler: fires the registry's cron entries, exactly once per slot whatever the number of replicas.

One module per job: :mod:`~router.scheduler.cron` (fire times and the DST rules), :mod:`~router.scheduler.catchup`
(on-time and missed slots, the catch-up policies), :mod:`~router.scheduler.entries` (entries bound to their
queues), :mod:`~router.scheduler.scheduler` (the tick and the loop), :mod:`~router.scheduler.liveness` (the
no-live-worker warning), :mod:`~router.scheduler.heartbeat`, :mod:`~router.scheduler.signals`,
:mod:`~router.scheduler.settings` and :mod:`~router.scheduler.launch` (what ``router scheduler`` does).
"""

from __future__ import annotations

from router.scheduler.scheduler import Scheduler, TickResult
from router.scheduler.settings import SchedulerSettings

__all__ = ["Scheduler", "SchedulerSettings", "TickResult"]
