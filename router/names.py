"""The one naming rule for everything that ends up inside a Redis key: services, queues, prefixes, cron names
and task types.

Names are placed in keys and hash tags (``<prefix>:{<service>:<queue>}:...``), so braces (they would break the
cluster hash tag), colons (the key separator) and whitespace are refused and lengths are bounded. Task types
may contain colons and dots (``email.welcome``, ``email:deliver``) because they never become a key part.
The registry loader reports :func:`name_problem` as a located problem; the key schema raises
:func:`check_name`'s ValueError at every other entry point.
"""

from __future__ import annotations

import re

from router.quoting import quote

NAME_MAX = 64
TASK_TYPE_MAX = 128
NAME_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{NAME_MAX - 1}}}"
TASK_TYPE_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9_.:\-]{{0,{TASK_TYPE_MAX - 1}}}"
_NAME = re.compile(NAME_PATTERN)
_TASK_TYPE = re.compile(TASK_TYPE_PATTERN)


def name_problem(kind: str, name: object) -> str | None:
    """Why ``name`` cannot be a service name, queue name, key prefix or cron name (``kind`` says which), or None."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return None
    return f"{kind} {quote(name)} {_why(name, NAME_MAX, colons=False)}; use 1-{NAME_MAX} of A-Z a-z 0-9 _ . - " \
           "(starting with a letter or digit)"


def task_type_problem(name: object) -> str | None:
    """Why ``name`` cannot be a task type, or None."""
    if isinstance(name, str) and _TASK_TYPE.fullmatch(name):
        return None
    return f"task type {quote(name)} {_why(name, TASK_TYPE_MAX, colons=True)}; use 1-{TASK_TYPE_MAX} of A-Z a-z 0-9 " \
           "_ . : - (starting with a letter or digit)"


def check_name(kind: str, name: object) -> str:
    """``name`` if it is a valid service, queue or prefix name, else raise ValueError saying why."""
    problem = name_problem(kind, name)
    if problem is not None:
        raise ValueError(f"invalid {problem}")
    return name  # type: ignore[return-value]  # name_problem accepted it, so it is a str


def _why(name: object, limit: int, *, colons: bool) -> str:
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
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
