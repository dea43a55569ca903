"""Pure semantic checks of single registry values: Redis URLs (read as :mod:`router.redisurl` reads them for the
connection layer), cron specs and time zones.

Each check returns None when the value is fine, else a message that says what is wrong and how to fix it. Names
(services, queues, prefixes, task types) follow the one naming rule of :mod:`router.names`.
"""

from __future__ import annotations

import zoneinfo

from croniter import croniter

from router.quoting import quote
from router.redisurl import url_problem


def redis_url_problem(url: str) -> str | None:
    """Why router cannot connect to ``url`` (any scheme :mod:`router.storage.connection` supports)."""
    problem = url_problem(url)
    return None if problem is None else f"redis.url: {problem}"


def cron_spec_problem(spec: str) -> str | None:
    """Why croniter cannot schedule ``spec``."""
    if croniter.is_valid(spec):
        return None
    return f"cron spec {quote(spec)} does not parse; use five fields 'minute hour day-of-month month day-of-week', " \
           "e.g. '*/5 * * * *' or '0 2 * * *'"


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone known to this machine's tz database."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {quote(name)}; use an IANA name such as 'Europe/Paris', 'America/New_York' or 'UTC'"
    return None
