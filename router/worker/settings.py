"""The tunables of one worker process, with the defaults the CLI shows (``router worker --help`` reads them here)."""

from __future__ import annotations

from dataclasses import dataclass

from router.storage.protocol import ARCHIVE_MAX_AGE_S, ARCHIVE_MAX_SIZE


@dataclass(frozen=True)
class WorkerSettings:
    """Tunables of one worker process; defaults suit production, tests compress the timings."""

    #: Handlers running at once, sync and async together (the CLI's default is the service's ``concurrency``).
    concurrency: int = 10
    #: Tasks leased ahead of free handler slots (None: as many as ``concurrency``). They are leased in Redis
    #: like running ones, so a crash loses none of them; at shutdown the unstarted ones go back at once.
    prefetch: int | None = None
    #: Lease per delivery; running tasks extend it every third of it, expired ones are recovered.
    lease_s: float = 30.0
    #: On SIGTERM/SIGINT, how long running tasks may finish before they are requeued.
    shutdown_timeout_s: float = 10.0
    #: Period of the heartbeat (its TTL is three periods).
    heartbeat_s: float = 5.0
    #: Longest pause between recovery and promotion sweeps (sooner when something falls due).
    maintenance_s: float = 5.0
    #: Clock-skew allowance before an expired lease is recovered.
    recovery_grace_s: float = 1.0
    #: Dead-letter entries kept per queue; the oldest are dropped beyond it.
    archive_max_size: int = ARCHIVE_MAX_SIZE
    #: Dead-letter entries older than this are dropped.
    archive_max_age_s: float = ARCHIVE_MAX_AGE_S
    #: Completed (not retained) task ids are remembered this long, up to ``dedupe_max`` per queue, so repeating
    #: an enqueue whose outcome was unknown cannot run the task a second time.
    dedupe_window_s: float = 300.0
    dedupe_max: int = 100_000
