"""What a worker checks once before its loop: that Redis answers, and Redis settings that can lose tasks.

A ``--burst`` worker that cannot reach Redis within :data:`BURST_CONNECT_WAIT_S` fails (exit code 4, naming the
URL); a long-running one logs ``redis_unavailable`` and waits it out with backoff, and logs ``worker_started`` only
once connected. Signals stop the wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import structlog

from router.errors import BrokerError
from router.redisurl import redact
from router.storage.broker import SyncBroker
from router.storage.connection import TRANSIENT_ERRORS

log = structlog.get_logger(__name__)

_REDIS_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, BrokerError)

#: How long a burst worker tries to reach Redis before it gives up.
BURST_CONNECT_WAIT_S = 10.0


def wait_for_redis(broker: SyncBroker, url: str, burst: bool, pause: Callable[[float], bool]) -> bool:
    """Block until Redis answers a PING. ``pause(seconds)`` waits between attempts and returns True when the
    worker was asked to stop meanwhile. Returns False when stopped before Redis answered.

    Raises:
        BrokerError: a burst worker could not reach Redis within :data:`BURST_CONNECT_WAIT_S`, or Redis refused
            the credentials.
    """
    started = time.monotonic()
    backoff = 0.1
    logged = False
    while True:
        try:
            broker.ping()
        except TRANSIENT_ERRORS as exc:
            waited = time.monotonic() - started
            if burst and waited >= BURST_CONNECT_WAIT_S:
                raise BrokerError(f"cannot reach Redis at {redact(url)} after {waited:.0f} s ({exc}); check "
                                  "--url, ROUTER_REDIS_URL or the registry's redis.url, and that Redis is up") from exc
            if not logged:
                log.warning("redis_unavailable", url=redact(url), error=str(exc), hint="waiting for Redis")
                logged = True
            if pause(backoff * (0.5 + random.random())):
                return False
            backoff = min(backoff * 2, 2.0)
            continue
        if logged:
            log.info("redis_available", outage_s=round(time.monotonic() - started, 3))
        return True


def warn_about_server(broker: SyncBroker) -> None:
    """Warn once about ``appendonly no`` and evicting ``maxmemory-policy``; silent if CONFIG is denied."""
    try:
        config = broker.server_config(("appendonly", "maxmemory-policy"))
    except _REDIS_ERRORS:
        return
    if config.get("appendonly") == "no":
        log.warning("redis_config_risky", setting="appendonly no",
                    hint="a Redis restart loses every queued task; set appendonly yes (fsync everysec)")
    policy = config.get("maxmemory-policy")
    if policy not in (None, "noeviction"):
        log.warning("redis_config_risky", setting=f"maxmemory-policy {policy}",
                    hint="eviction can drop queue keys and leases; set maxmemory-policy noeviction")
