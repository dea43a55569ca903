"""The one table of exit codes every ``router`` command uses (docs/cli.md shows it; a test keeps them equal)."""

from __future__ import annotations

from enum import IntEnum

from router.errors import (
    BrokerError,
    ConfigError,
    HandlerError,
    LocalRedisError,
    RouterError,
    UnknownService,
    WorkerCrashed,
)


class ExitCode(IntEnum):
    """Process exit codes of the ``router`` commands."""

    OK = 0
    INVALID = 1
    USAGE = 2
    HANDLERS = 3
    REDIS = 4
    CRASH = 5


#: What each code means, in the words docs/cli.md uses.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "Success: the registry is valid, the worker or scheduler stopped cleanly (signal, --burst "
                 "drained, --once done), the demo's tasks all reached their owners.",
    ExitCode.INVALID: "The registry is invalid (every problem is printed with file, line and column); a worker "
                      "group gave up on a crashing child; the demo saw a misrouted or unfinished task.",
    ExitCode.USAGE: "Usage error: an unknown option or bad value, a registry file that cannot be read, or a "
                    "service that is not in the registry.",
    ExitCode.HANDLERS: "A service's handler set cannot be imported or disagrees with the registry.",
    ExitCode.REDIS: "Redis cannot be used: unreachable within the connect wait (a --burst worker, a --once "
                    "scheduler, status, the demo), or it refused a command (authentication, ACL, out of memory). A "
                    "long-running worker or scheduler waits out outages instead.",
    ExitCode.CRASH: "An internal loop of a worker died; the process exits rather than staying up half-alive.",
}


def exit_code_for(error: BaseException) -> ExitCode | None:
    """The exit code for an error a command let through, or None when it is not one a user can cause."""
    if not isinstance(error, RouterError):
        return None
    if isinstance(error, ConfigError):
        return ExitCode.INVALID
    if isinstance(error, UnknownService):
        return ExitCode.USAGE
    if isinstance(error, HandlerError):
        return ExitCode.HANDLERS
    if isinstance(error, (BrokerError, LocalRedisError)):
        return ExitCode.REDIS
    if isinstance(error, WorkerCrashed):
        return ExitCode.CRASH
    return None
