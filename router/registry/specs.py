"""Building the frozen specs from a registry's documents: services, queues, tasks, prefixes and the Redis URL,
with every semantic check reported as a located Problem (ownership, prefixes, names, queues)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import islice
from types import MappingProxyType
from typing import Any

from router.errors import Problem
from router.names import name_problem, task_type_problem
from router.quoting import quote
from router.registry import aggregates, values
from router.registry.containment import RegistryTree
from router.registry.cronspecs import CronEntries
from router.registry.envsubst import interpolate
from router.registry.limits import NodeBudget
from router.registry.messages import suggest
from router.registry.model import AggregateSpec, PriorityMode, QueueSpec, Registry, ServiceSpec, TaskSpec, UniquePolicy
from router.registry.payloadrefs import PayloadSchemas
from router.registry.yamlsource import Path, YamlDocument


@dataclass(frozen=True)
class _Defaults:
    max_retry: int = 25
    timeout_s: float = 1800.0
    retention_s: float | None = None


class SpecBuilder:
    """Turns the documents of one load into a Registry, appending every problem found to ``problems``."""

    def __init__(self, docs: list[YamlDocument], env: Mapping[str, str], problems: list[Problem],
                 tree: RegistryTree, budget: NodeBudget) -> None:
        self.docs = docs
        self.env = env
        self.problems = problems
        self.tasks: dict[str, TaskSpec] = {}
        self.declared_payload: set[str] = set()
        self.schemas = PayloadSchemas(problems, tree, budget)
        # "did you mean" per (service, queue): aliases can put one unknown queue on thousands of tasks.
        self.queue_hints: dict[tuple[str, str], str] = {}
        self._queue_names: dict[str, dict[str, None]] = {}

    def build(self) -> Registry:
        """The registry the documents declare (check ``problems`` before trusting it)."""
        root = self.docs[0]
        data = root.data if isinstance(root.data, dict) else {}
        limits = _mapping(data.get("limits"))
        raw_defaults = _mapping(data.get("defaults"))
        defaults = _Defaults(
            max_retry=_int(raw_defaults.get("max_retry"), 25),
            timeout_s=_num(raw_defaults.get("timeout_s"), 1800.0),
            retention_s=_opt_num(raw_defaults.get("retention_s")),
        )
        services: dict[str, ServiceSpec] = {}
        for doc in self.docs:
            entries = _mapping(doc.data.get("services") if isinstance(doc.data, dict) else None)
            for name, raw in entries.items():
                if name in services:
                    first = services[name].location
                    message = (f"service {quote(name)} is declared twice (first at {first or 'unknown location'}); "
                               "declare it in one file")
                    self.problems.append(doc.problem(("services", name), message, "duplicate-service", key=True))
                elif isinstance(raw, dict):
                    services[name] = self.service(doc, name, raw, defaults)
        self.check_prefixes(services)
        aggregates.link(services, self.tasks, self.declared_payload, self.docs, self.problems)
        return Registry(
            services=MappingProxyType(services),
            tasks=MappingProxyType(self.tasks),
            cron=CronEntries(self.problems, self.tasks, self.schemas.bad_schema).build(self.docs),
            redis_url=self.redis_url(root, data),
            max_payload_bytes=_int(limits.get("max_payload_bytes"), 512 * 1024),
            max_result_bytes=_int(limits.get("max_result_bytes"), 1024 * 1024),
            path=root.file,
        )

    def redis_url(self, doc: YamlDocument, data: Mapping[str, Any]) -> str:
        url = _mapping(data.get("redis")).get("url")
        if not isinstance(url, str):
            return "redis://localhost:6379/0"
        expanded, error = interpolate(url, self.env)
        if error is not None:
            self.problems.append(doc.problem(("redis", "url"), error, "env"))
        else:
            self.name_check(doc, ("redis", "url"), values.redis_url_problem(expanded), code="redis-url")
        return expanded

    def service(self, doc: YamlDocument, name: str, raw: Mapping[str, Any], defaults: _Defaults) -> ServiceSpec:
        path: Path = ("services", name)
        self.name_check(doc, path, name_problem("service name", name), key=True)
        prefix = raw.get("prefix", name)
        prefix = prefix if isinstance(prefix, str) else name
        if "prefix" in raw:
            self.name_check(doc, (*path, "prefix"), name_problem("prefix", prefix), code="prefix-invalid")
        queues = self.queues(doc, path, raw.get("queues"))
        priority = raw.get("priority", "weighted")
        app = raw.get("app")
        spec = ServiceSpec(
            name=name, prefix=prefix, queues=queues, tasks=MappingProxyType({}),
            app=app if isinstance(app, str) else None,
            concurrency=_int(raw.get("concurrency"), 10),
            priority=PriorityMode(priority) if priority in ("weighted", "strict") else PriorityMode.WEIGHTED,
            location=doc.location(path, key=True),
            app_location=doc.location((*path, "app")) if "app" in raw else None,
        )
        tasks: dict[str, TaskSpec] = {}
        for task_type, task_raw in _mapping(raw.get("tasks")).items():
            task = self.task(doc, spec, task_type, task_raw, defaults)
            if task is not None:
                tasks[task_type] = task
        return replace(spec, tasks=MappingProxyType(tasks))

    def queues(self, doc: YamlDocument, path: Path, raw: Any) -> tuple[QueueSpec, ...]:
        if raw is None:
            return (QueueSpec("default", 1),)
        items: list[tuple[Any, Any, Path]]
        if isinstance(raw, list):
            items = [(q, None, (*path, "queues", i)) for i, q in enumerate(raw)]
        elif isinstance(raw, dict):
            items = [(q, v, (*path, "queues", q)) for q, v in raw.items()]
        else:
            return ()
        result = []
        for queue, options, qpath in items:
            if not isinstance(queue, str):
                continue
            self.name_check(doc, qpath, name_problem("queue name", queue), key=isinstance(raw, dict))
            weight = _mapping(options).get("weight")
            result.append(QueueSpec(queue, _int(weight, 1)))
        return tuple(result)

    def task(self, doc: YamlDocument, service: ServiceSpec, task_type: str, raw: Any,
             defaults: _Defaults) -> TaskSpec | None:
        path: Path = ("services", service.name, "tasks", task_type)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            return None
        self.name_check(doc, path, task_type_problem(task_type), key=True)
        policy = raw.get("unique_policy", UniquePolicy.TTL.value)
        if "unique_policy" in raw and "unique_s" not in raw:  # honoured or refused: a policy without a window
            self.problems.append(doc.problem((*path, "unique_policy"), "unique_policy needs unique_s (the window, "
                                             "or for until_finished the longest a lock may outlive a lost task)",
                                             "unique"))
        if "payload" in raw:
            self.declared_payload.add(task_type)
        queue = raw.get("queue", "default")
        queue = queue if isinstance(queue, str) else "default"
        declared = self.queue_names(service)
        if declared and queue not in declared:
            origin = "" if "queue" in raw else " (the default queue)"
            hint = self.queue_hints.get((service.name, queue))
            if hint is None:
                hint = self.queue_hints[(service.name, queue)] = suggest(queue, declared)
            first = list(islice(declared, 20))
            shown = ", ".join(q if len(q) <= 40 else q[:40] + "…" for q in first) + (
                ", …" if len(declared) > 20 else "")
            self.problems.append(doc.problem(
                (*path, "queue") if "queue" in raw else path,
                f"task {quote(task_type)} is on queue {quote(queue)}{origin}, which service {quote(service.name)} "
                f"does not declare{hint}; declared queues: {shown}. Set `queue:` to one of them or add "
                f"{quote(queue)} under services.{service.name[:64]}.queues", "unknown-queue",
                key="queue" not in raw))
        spec = TaskSpec(
            type=task_type, service=service.name, queue=queue,
            payload_schema=self.schemas.payload_schema(doc, (*path, "payload"), task_type, raw.get("payload")),
            max_retry=_int(raw.get("max_retry"), defaults.max_retry),
            timeout_s=_num(raw.get("timeout_s"), defaults.timeout_s),
            unique_s=_opt_num(raw.get("unique_s")),
            unique_policy=UniquePolicy(policy) if policy in {p.value for p in UniquePolicy} else UniquePolicy.TTL,
            retention_s=_opt_num(raw.get("retention_s"), defaults.retention_s),
            aggregate=_aggregate(raw.get("aggregate")),
            location=doc.location(path, key=True),
        )
        other = self.tasks.get(task_type)
        if other is not None:
            message = (f"task type {quote(task_type)} is declared twice: by service {quote(service.name)} here and "
                       f"by service {quote(other.service)} at {other.location or 'unknown location'}; a task type "
                       "has exactly one owner, remove one declaration")
            self.problems.append(doc.problem(path, message, "duplicate-task", key=True))
            return None
        self.tasks[task_type] = spec
        return spec

    def queue_names(self, service: ServiceSpec) -> dict[str, None]:
        """The service's queue names, in order, as a dict: looked up once per task, so never a list scan."""
        names = self._queue_names.get(service.name)
        if names is None:
            names = self._queue_names[service.name] = dict.fromkeys(q.name for q in service.queues)
        return names

    def name_check(self, doc: YamlDocument, path: Path, message: str | None, *, key: bool = False,
                   code: str = "name-invalid") -> None:
        if message is not None:
            self.problems.append(doc.problem(path, message, code, key=key))

    def check_prefixes(self, services: Mapping[str, ServiceSpec]) -> None:
        owners: dict[str, ServiceSpec] = {}
        for spec in services.values():
            first = owners.setdefault(spec.prefix, spec)
            if first is not spec:
                doc = next(d for d in self.docs if spec.location and d.file == spec.location.file)
                explicit = spec.location is not None and ("services", spec.name, "prefix") in doc.values
                self.problems.append(doc.problem(
                    ("services", spec.name, "prefix") if explicit else ("services", spec.name),
                    f"prefix {quote(spec.prefix)} of service {quote(spec.name)} is already the prefix of service "
                    f"{quote(first.name)} ({first.location or 'unknown location'}); services sharing a prefix share "
                    f"every key, queue and ACL, so give {quote(spec.name)} its own `prefix:`", "prefix-duplicate",
                    key=not explicit))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None: not a number, a boolean, or too large for a float. The schema check
    has reported those; the specs take their defaults so the rest of the load goes on."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _int(value: Any, default: int) -> int:
    number = _number(value)
    if number is None or not number.is_integer():
        return default
    return value if isinstance(value, int) else int(number)


def _num(value: Any, default: float) -> float:
    number = _number(value)
    return default if number is None else number


def _opt_num(value: Any, default: float | None = None) -> float | None:
    number = _number(value)
    return default if number is None else number


def _aggregate(raw: Any) -> AggregateSpec | None:
    """The declared aggregation (the schema check has reported a malformed one), checked later across tasks."""
    if not isinstance(raw, dict) or not isinstance(raw.get("into"), str):
        return None
    return AggregateSpec(into=raw["into"], grace_s=_num(raw.get("grace_s"), 5.0),
                         max_delay_s=_num(raw.get("max_delay_s"), 60.0), max_size=_int(raw.get("max_size"), 100))
