"""Pure semantic checks of single registry values: Redis URLs, cron specs and time zones.

Each check returns None when the value is fine, else a message that says what is wrong and how to fix it. Names
(services, queues, prefixes, task types) follow the one naming rule of :mod:`router.names`.
"""

from __future__ import annotations

import zoneinfo
from urllib.parse import urlsplit

from croniter import croniter

REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL redis-py can connect to."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"redis.url {url!r} is malformed ({exc}); use redis://host:6379/0"
    if parts.scheme not in REDIS_SCHEMES:
        return f"redis.url {url!r} must start with redis://, rediss:// (TLS) or unix://"
    if parts.scheme != "unix" and not parts.hostname:
        return f"redis.url {url!r} has no host; use redis://host:{port or 6379}/0"
    return None


def cron_spec_problem(spec: str) -> str | None:
    """Why croniter cannot schedule ``spec``."""
    if croniter.is_valid(spec):
        return None
    return f"cron spec {spec!r} does not parse; use five fields 'minute hour day-of-month month day-of-week', " \
           "e.g. '*/5 * * * *' or '0 2 * * *'"


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone known to this machine's tz database."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris', 'America/New_York' or 'UTC'"
    return None
