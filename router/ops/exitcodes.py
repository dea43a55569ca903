"""The one table of exit codes every ``router`` command uses (docs/cli.md shows it; a test keeps them equal)."""

from __future__ import annotations

from enum import IntEnum

from router.errors import (
    AmbiguousTaskId,
    BrokerError,
    ConfigError,
    DuplicateTask,
    EnqueueOutcomeUnknown,
    GuardError,
    HandlerError,
    LocalRedisError,
    RouterError,
    ServeError,
    TaskIdConflict,
    TaskNotFound,
    UnknownQueue,
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
    TASK_STATE = 6


#: What each code means, in the words docs/cli.md uses.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "Success: the registry is valid, the worker or scheduler stopped cleanly (signal, --burst "
                 "drained, --once done), the demo's tasks all reached their owners, a listing was shown or an "
                 "action applied.",
    ExitCode.INVALID: "The registry is invalid (every problem is printed with file, line and column); a worker "
                      "group gave up on a crashing child; the demo saw a misrouted or unfinished task.",
    ExitCode.USAGE: "Usage error: an unknown option or bad value, a registry file that cannot be read, a "
                    "service or queue that is not in the registry, an enqueue the guard refused (unknown type, "
                    "invalid payload), a bulk action that was not confirmed, or a metrics or exporter port that "
                    "cannot be listened on.",
    ExitCode.HANDLERS: "A service's handler set cannot be imported or disagrees with the registry.",
    ExitCode.REDIS: "Redis cannot be used: unreachable within the connect wait (a --burst worker, a --once "
                    "scheduler, status, the demo, the inspector's commands), or it refused a command "
                    "(authentication, ACL, out of memory), or an enqueue's outcome is unknown. A long-running worker "
                    "or scheduler waits out outages instead.",
    ExitCode.CRASH: "An internal loop of a worker died; the process exits rather than staying up half-alive.",
    ExitCode.TASK_STATE: "A task named by a command is unknown, or not in a state the action applies to (a running "
                         "or finished task), or an enqueue's task id is taken; the others were acted on.",
}


def exit_code_for(error: BaseException) -> ExitCode | None:
    """The exit code for an error a command let through, or None when it is not one a user can cause."""
    if not isinstance(error, RouterError):
        return None
    if isinstance(error, ConfigError):
        return ExitCode.INVALID
    if isinstance(error, (UnknownService, UnknownQueue, GuardError, ServeError)):
        return ExitCode.USAGE
    if isinstance(error, (TaskIdConflict, DuplicateTask, TaskNotFound)):
        return ExitCode.TASK_STATE
    if isinstance(error, AmbiguousTaskId):
        return ExitCode.USAGE
    if isinstance(error, EnqueueOutcomeUnknown):
        return ExitCode.REDIS
    if isinstance(error, HandlerError):
        return ExitCode.HANDLERS
    if isinstance(error, (BrokerError, LocalRedisError)):
        return ExitCode.REDIS
    if isinstance(error, WorkerCrashed):
        return ExitCode.CRASH
    return None
