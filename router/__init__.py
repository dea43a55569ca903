"""router: a Redis task queue for fleets of services sharing one Redis, routed by one registry."""

from __future__ import annotations

from router.errors import (
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
    TaskIdConflict,
    UnknownTaskType,
    Violation,
)
from router.producer.client import AsyncClient, Client
from router.registry import CronSpec, PriorityMode, QueueSpec, Registry, ServiceSpec, TaskSpec, UniquePolicy, load
from router.registry.model import CatchUp
from router.scheduler import Scheduler, SchedulerSettings
from router.service import Service
from router.task import Task, TaskInfo, TaskState
from router.worker import Worker, WorkerSettings

__all__ = [
    "AppLoadError",
    "AsyncClient",
    "BrokerError",
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
    "TaskIdConflict",
    "TaskInfo",
    "TaskSpec",
    "TaskState",
    "UniquePolicy",
    "UnknownTaskType",
    "Violation",
    "Worker",
    "WorkerSettings",
    "load",
]
