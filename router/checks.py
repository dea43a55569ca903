"""Pure semantic checks of single registry values: names, prefixes, Redis URLs, cron specs and time zones.

Each check returns None when the value is fine, else a message that says what is wrong and how to fix it. They
hold the rules that keep Redis keys unambiguous: names and prefixes end up inside keys and hash tags
(``<prefix>:{<service>:<queue>}:...``), so colons, braces and whitespace are refused and lengths are bounded.
"""

from __future__ import annotations

import re
import zoneinfo
from urllib.parse import urlsplit

from croniter import croniter

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
TASK_TYPE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
_NAME = re.compile(NAME_PATTERN)
_TASK_TYPE = re.compile(TASK_TYPE_PATTERN)
REDIS_SCHEMES = ("redis", "rediss", "unix")


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot be a service name, queue name, key prefix or cron name (``kind`` says which)."""
    if _NAME.fullmatch(name):
        return None
    return f"{kind} {name!r} {_why(name, 64, colons=False)}; use 1-64 of A-Z a-z 0-9 _ . - (starting with a " \
           "letter or digit)"


def task_type_problem(name: str) -> str | None:
    """Why ``name`` cannot be a task type (dots and colons are fine: ``email.welcome``, ``email:deliver``)."""
    if _TASK_TYPE.fullmatch(name):
        return None
    return f"task type {name!r} {_why(name, 128, colons=True)}; use 1-128 of A-Z a-z 0-9 _ . : - (starting " \
           "with a letter or digit)"


def _why(name: str, limit: int, *, colons: bool) -> str:
    if not name:
        return "is empty"
    if len(name) > limit:
        return f"is {len(name)} characters long, over {limit}"
    if any(c.isspace() for c in name):
        return "contains whitespace"
    if "{" in name or "}" in name:
        return "contains a brace, which would break the Redis Cluster hash tag of its keys"
    if ":" in name and not colons:
        return "contains a colon, the separator of Redis key parts, so its keys could collide with another's"
    if not name[0].isascii() or not name[0].isalnum():
        return "must start with an ASCII letter or digit"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_.-:"))})
    return f"contains {', '.join(map(repr, bad))}"


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
