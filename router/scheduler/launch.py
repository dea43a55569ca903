"""What ``router scheduler`` does: load the registry, pick the cron entries, then run the scheduler (or one tick).

A long-running scheduler waits Redis outages out (:meth:`Scheduler.run`). ``--once`` fires what is due now (slots
missed since the last claim, by each entry's catch-up policy) and exits; it gives Redis
:data:`ONCE_CONNECT_WAIT_S` to answer, like a ``--burst`` worker.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import structlog
from redis.exceptions import AuthenticationError

from router.errors import BrokerError
from router.redisurl import redact
from router.registry.loader import load
from router.scheduler.scheduler import Scheduler
from router.scheduler.settings import SchedulerSettings
from router.storage.connection import TRANSIENT_ERRORS

log = structlog.get_logger(__name__)

#: How long ``--once`` tries to reach Redis before it gives up (exit code 4).
ONCE_CONNECT_WAIT_S = 10.0


@dataclass(frozen=True)
class SchedulerCommand:
    """Everything ``router scheduler`` was asked to do."""

    registry_path: str
    url: str | None = None
    services: tuple[str, ...] = ()
    once: bool = False
    settings: SchedulerSettings | None = None


def run_scheduler(cmd: SchedulerCommand) -> int:
    """Run the scheduler to completion; returns the process exit code (0).

    Raises ConfigError for a bad registry, UnknownService for an unknown ``--service``, BrokerError when Redis
    refuses us (or ``--once`` cannot reach it).
    """
    registry = load(cmd.registry_path)
    scheduler = Scheduler(registry, url=cmd.url, services=cmd.services, settings=cmd.settings)
    try:
        if not scheduler.entries:
            log.warning("no_cron_entries", registry=cmd.registry_path, services=list(cmd.services),
                        hint="nothing to fire: add `cron:` entries to the registry (or check --service)")
        if cmd.once:
            _once(scheduler, cmd.url or registry.redis_url)
        else:
            scheduler.run()
    finally:
        scheduler.close()
    return 0


def _once(scheduler: Scheduler, url: str) -> None:
    started = time.monotonic()
    backoff = 0.1
    while True:
        try:
            result = scheduler.tick()
        except AuthenticationError as exc:  # does not heal by waiting
            raise BrokerError(f"Redis refused the credentials: {exc}; fix the URL's user/password") from exc
        except TRANSIENT_ERRORS as exc:
            waited = time.monotonic() - started
            if waited >= ONCE_CONNECT_WAIT_S:
                raise BrokerError(f"cannot reach Redis at {redact(url)} after {waited:.0f} s ({exc}); check --url, "
                                  "ROUTER_REDIS_URL or the registry's redis.url, and that Redis is up") from exc
            time.sleep(backoff * (0.5 + random.random()))  # waiting for Redis to come back, not for work
            backoff = min(backoff * 2, 2.0)
            continue
        log.info("scheduler_once", entries=[e.name for e in scheduler.entries], fired=len(result.fired),
                 claimed_elsewhere=len(result.claimed_elsewhere), refused=len(result.refused),
                 skipped=sum(result.skipped.values()))
        scheduler.withdraw()
        return
