"""Building the frozen specs from a registry's documents: services, queues, tasks, prefixes and the Redis URL,
with every semantic check reported as a located Problem (ownership, prefixes, names, queues)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from router.errors import Problem
from router.names import name_problem, task_type_problem
from router.registry import aggregates, values
from router.registry.cronspecs import CronEntries
from router.registry.docschema import suggest
from router.registry.envsubst import interpolate
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

    def __init__(self, docs: list[YamlDocument], env: Mapping[str, str], problems: list[Problem]) -> None:
        self.docs = docs
        self.env = env
        self.problems = problems
        self.tasks: dict[str, TaskSpec] = {}
        self.declared_payload: set[str] = set()
        self.schemas = PayloadSchemas(problems)

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
                    message = (f"service {name!r} is declared twice (first at {first or 'unknown location'}); "
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
        declared = [q.name for q in service.queues]
        if declared and queue not in declared:
            origin = "" if "queue" in raw else " (the default queue)"
            self.problems.append(doc.problem(
                (*path, "queue") if "queue" in raw else path,
                f"task {task_type!r} is on queue {queue!r}{origin}, which service {service.name!r} does not declare"
                f"{suggest(queue, declared)}; declared queues: {', '.join(declared)}. Set `queue:` to one of them "
                f"or add {queue!r} under services.{service.name}.queues", "unknown-queue", key="queue" not in raw))
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
            message = (f"task type {task_type!r} is declared twice: by service {service.name!r} here and by service "
                       f"{other.service!r} at {other.location or 'unknown location'}; a task type has exactly one "
                       "owner, remove one declaration")
            self.problems.append(doc.problem(path, message, "duplicate-task", key=True))
            return None
        self.tasks[task_type] = spec
        return spec

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
                    f"prefix {spec.prefix!r} of service {spec.name!r} is already the prefix of service {first.name!r} "
                    f"({first.location or 'unknown location'}); services sharing a prefix share every key, queue "
                    f"and ACL, so give {spec.name!r} its own `prefix:`", "prefix-duplicate", key=not explicit))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value) if float(value).is_integer() else default  # NaN and infinities are not integers


def _num(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _opt_num(value: Any, default: float | None = None) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default




def _aggregate(raw: Any) -> AggregateSpec | None:
    """The declared aggregation (the schema check has reported a malformed one), checked later across tasks."""
    if not isinstance(raw, dict) or not isinstance(raw.get("into"), str):
        return None
    return AggregateSpec(into=raw["into"], grace_s=_num(raw.get("grace_s"), 5.0),
                         max_delay_s=_num(raw.get("max_delay_s"), 60.0), max_size=_int(raw.get("max_size"), 100))
