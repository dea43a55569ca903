"""The tunables of one cron scheduler process, with the defaults ``router scheduler`` shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerSettings:
    """Tunables of a scheduler; defaults suit production, tests compress the timings."""

    #: Period of the scheduler's heartbeat (its TTL is three periods).
    heartbeat_s: float = 5.0
    #: Missed slots older than this never fire, whatever the entry's ``catch_up``. Each claim is kept this long
    #: after the entry's next slot, so a replica coming back within the window never fires a claimed slot again.
    catch_up_window_s: float = 86400.0
    #: A slot seen at most this late is on time and fires under every catch-up policy (a slow tick, a short Redis
    #: failover, a replica taking over from one that died); older ones were missed.
    grace_s: float = 60.0
    #: Most missed slots ``catch_up: all`` fires for one entry at once (the newest; older ones are dropped, logged).
    max_catch_up: int = 1000
    #: How long the live workers of a service, read from their heartbeats, are trusted before being read again.
    live_check_s: float = 5.0
    #: ``no_live_worker`` is logged at most once per entry per this many seconds.
    no_worker_warn_s: float = 60.0
    #: Longest sleep of the loop between ticks: it wakes for the next fire, but also at least this often, so a
    #: wall clock stepped by NTP is noticed within this long.
    max_sleep_s: float = 1.0
