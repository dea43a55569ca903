"""One enqueue call's worth of tasks: guarded routes grouped into one script call per queue, and the replies read
back into TaskInfos or the first refusal. Shared by both clients; no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router.errors import BrokerError, DuplicateTask, EnqueueOutcomeUnknown, TaskIdConflict
from router.producer.guard import Guard, Route
from router.storage import protocol
from router.storage.keys import QueueKeys
from router.task import TaskInfo, TaskState

#: An item of ``enqueue_many``: (type, payload) or (type, payload, options).
BulkItem = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]


@dataclass(frozen=True)
class Batch:
    """The routes of one enqueue, and the calls that store them."""

    routes: list[Route]
    calls: list[protocol.Call]
    slots: list[list[int]]  # for each call, the indexes of its routes


def prepare(guard: Guard, items: Iterable[BulkItem], traceparent: str | None = None) -> Batch:
    """Guard every item first (so a refused item writes nothing), then group them into one call per queue; each
    envelope carries ``traceparent`` (the producer span of the batch) when given."""
    routes: list[Route] = []
    for item in items:
        options: Mapping[str, Any] = item[2] if len(item) == 3 else {}
        routes.append(guard.route_options(item[0], item[1], options, traceparent))
    groups: dict[QueueKeys, list[int]] = {}
    for i, route in enumerate(routes):
        groups.setdefault(route.keys, []).append(i)
    calls = [protocol.enqueue(qk, [routes[i].item() for i in idx]) for qk, idx in groups.items()]
    return Batch(routes, calls, list(groups.values()))


def single(route: Route) -> Batch:
    """The batch of one route (the hot path of ``enqueue``)."""
    return Batch([route], [protocol.enqueue(route.keys, [route.item()])], [[0]])


def finish(batch: Batch, replies: Sequence[Any], retried: bool = False) -> list[TaskInfo]:
    """TaskInfos for the batch, or the first refusal in item order (``TaskIdConflict``, ``DuplicateTask``) carrying
    the others, which were enqueued. After a retry, a conflict on an id the client generated can only be its own
    earlier attempt, which landed (and may even have run already): that is success."""
    infos: list[TaskInfo] = []
    refused: list[tuple[Route, str | None]] = []  # (route, the lock holder of a duplicate, or None: an id conflict)
    outcome: dict[int, tuple[int, str]] = {}
    for idx, reply in zip(batch.slots, replies):
        for i, result in zip(idx, protocol.parse_enqueue(reply)):
            outcome[i] = result
    for i, route in enumerate(batch.routes):
        code, holder = outcome[i]
        if code == protocol.ENQUEUE_CONFLICT and not (retried and route.generated_id):
            refused.append((route, None))
        elif code == protocol.ENQUEUE_DUPLICATE:
            refused.append((route, holder))
        else:
            infos.append(TaskInfo(route.task_id, route.task_type, route.service, route.queue, _state_of(route)))
    if refused:
        first, lock_holder = refused[0]
        if lock_holder is None:
            raise TaskIdConflict(first.task_id, first.service, first.queue, infos)
        raise DuplicateTask(first.task_type, lock_holder, first.service, first.queue, infos)
    return infos


def _state_of(route: Route) -> TaskState:
    if route.group is not None:
        return TaskState.AGGREGATING
    return TaskState.SCHEDULED if route.run_at_ms else TaskState.PENDING


def heartbeats_unreadable(cause: BaseException) -> BrokerError:
    """The error of a live guard that could not read the heartbeats (nothing was enqueued)."""
    return BrokerError(f"live guard could not read worker heartbeats ({cause}); nothing was enqueued, "
                       "retry when Redis is reachable")


def unreachable(cause: BaseException) -> BrokerError:
    """The error of a read or cancel that could not reach Redis (nothing was changed)."""
    return BrokerError(f"Redis could not be reached ({cause}); nothing was changed, retry when it is reachable")




def outcome_unknown(batch: Batch, cause: BaseException) -> EnqueueOutcomeUnknown:
    """The error of an enqueue that may or may not have landed, carrying every id to repeat it with."""
    return EnqueueOutcomeUnknown(batch.routes[0].task_id, cause, [r.task_id for r in batch.routes])
