"""Group aggregation as a registry declares it: ``aggregate: {into, grace_s, max_delay_s, max_size}`` on a member
task type, checked across the registry, and the payload schema the ``into`` task gets (derived, never declared).

Members and their aggregate live on one queue of one service: a flush moves members into one task atomically, and
a Lua script can only do that within one cluster slot, which a queue is. The ``into`` task's handler receives::

    {"group": "<group name>", "items": [<member payload>, ...]}

so its payload schema is derived from the member type's: an object with ``group`` (a string) and ``items`` (an
array of member payloads, 1 to ``max_size`` of them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from router.errors import Problem
from router.registry import payloads
from router.registry.model import AggregateSpec, ServiceSpec, TaskSpec, UniquePolicy
from router.registry.yamlsource import Path, YamlDocument


def derived_schema(member: TaskSpec, aggregate: AggregateSpec) -> Mapping[str, Any]:
    """The payload schema of ``aggregate.into``: the group's name and its members' payloads."""
    schema: Mapping[str, Any] = payloads.freeze({
        "type": "object",
        "required": ["group", "items"],
        "additionalProperties": False,
        "properties": {
            "group": {"type": "string"},
            "items": {"type": "array", "minItems": 1, "maxItems": aggregate.max_size,
                      "items": payloads.thaw(member.payload_schema)},
        },
    })
    return schema


def link(services: dict[str, ServiceSpec], tasks: dict[str, TaskSpec], declared_payload: set[str],
         docs: list[YamlDocument], problems: list[Problem]) -> None:
    """Check every aggregate declaration and give each ``into`` task its derived schema (in place)."""
    targets: dict[str, str] = {}
    for member in list(tasks.values()):
        agg = member.aggregate
        if agg is None:
            continue
        doc = _doc_of(member, docs)
        path: Path = ("services", member.service, "tasks", member.type, "aggregate", "into")
        into = tasks.get(agg.into)
        why = _refusal(member, agg, into, targets)
        if why is not None:
            problems.append(doc.problem(path, why, "aggregate") if doc else Problem("<registry>", 1, 1, why,
                                                                                    "aggregate"))
            continue
        assert into is not None
        if agg.into in declared_payload:
            into_doc = _doc_of(into, docs)
            message = (f"task {agg.into!r} is the aggregate of {member.type!r}: its payload schema is derived "
                       "(group and items), remove its `payload:`")
            if into_doc is not None:
                problems.append(into_doc.problem(("services", into.service, "tasks", into.type, "payload"), message,
                                                 "aggregate"))
            continue
        targets[agg.into] = member.type
        updated = replace(into, payload_schema=derived_schema(member, agg))
        tasks[agg.into] = updated
        svc = services[into.service]
        services[into.service] = replace(svc, tasks=MappingProxyType({**svc.tasks, agg.into: updated}))


def _refusal(member: TaskSpec, agg: AggregateSpec, into: TaskSpec | None, targets: Mapping[str, str]) -> str | None:
    if member.unique_s is not None and member.unique_policy is UniquePolicy.UNTIL_FINISHED:
        return (f"aggregate of {member.type!r}: a member never finishes on its own (its work ends in the aggregate "
                "task), so an until_finished unique lock would be held for its whole window; use unique_policy: ttl")
    if into is None:
        return f"aggregate of {member.type!r}: no task type {agg.into!r} is declared; declare it in the same service"
    if into.service != member.service or into.queue != member.queue:
        return (f"aggregate of {member.type!r}: {agg.into!r} must be on the same service and queue "
                f"({member.service}/{member.queue}), since members and their aggregate move in one atomic step; "
                f"it is on {into.service}/{into.queue}")
    if into.type == member.type or into.aggregate is not None:
        return f"aggregate of {member.type!r}: {agg.into!r} may not aggregate itself; point `into:` at a plain task"
    if agg.into in targets:
        return f"{agg.into!r} is already the aggregate of {targets[agg.into]!r}; give each member type its own"
    return None


def _doc_of(spec: TaskSpec, docs: list[YamlDocument]) -> YamlDocument | None:
    location = spec.location
    return next((d for d in docs if location is not None and d.file == location.file), None)
