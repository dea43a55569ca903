"""router: a Redis task queue for fleets of services sharing one Redis, routed by one registry."""

from __future__ import annotations

from router.errors import (
    AmbiguousTaskId,
    AppLoadError,
    BrokerError,
    ConfigError,
    DuplicateHandler,
    DuplicateTask,
    EnqueueError,
    EnqueueOutcomeUnknown,
    GuardError,
    HandlerError,
    HandlerMismatch,
    InvalidOption,
    NoLiveWorker,
    PayloadInvalid,
    PayloadTooLarge,
    Problem,
    RouterError,
    SkipRetry,
    TaskCancelled,
    TaskIdConflict,
    TaskNotFound,
    UnknownTaskType,
    Violation,
    WaitTimeout,
)
from router.producer.asyncclient import AsyncClient
from router.producer.client import Client
from router.registry import CronSpec, PriorityMode, QueueSpec, Registry, ServiceSpec, TaskSpec, UniquePolicy, load
from router.registry.model import CatchUp
from router.scheduler import Scheduler, SchedulerSettings
from router.service import Service
from router.task import CancelOutcome, CancelResult, Task, TaskDetail, TaskInfo, TaskState
from router.worker import Worker, WorkerSettings

__all__ = [
    "AmbiguousTaskId",
    "AppLoadError",
    "AsyncClient",
    "BrokerError",
    "CancelOutcome",
    "CancelResult",
    "CatchUp",
    "Client",
    "ConfigError",
    "CronSpec",
    "DuplicateHandler",
    "DuplicateTask",
    "EnqueueError",
    "EnqueueOutcomeUnknown",
    "GuardError",
    "HandlerError",
    "HandlerMismatch",
    "InvalidOption",
    "NoLiveWorker",
    "PayloadInvalid",
    "PayloadTooLarge",
    "PriorityMode",
    "Problem",
    "QueueSpec",
    "Registry",
    "RouterError",
    "Scheduler",
    "SchedulerSettings",
    "Service",
    "ServiceSpec",
    "SkipRetry",
    "Task",
    "TaskCancelled",
    "TaskDetail",
    "TaskIdConflict",
    "TaskInfo",
    "TaskNotFound",
    "TaskSpec",
    "TaskState",
    "UniquePolicy",
    "UnknownTaskType",
    "Violation",
    "WaitTimeout",
    "Worker",
    "WorkerSettings",
    "load",
]
