"""services.yaml -> frozen :class:`~router.registry.Registry`: the only reader of the registry and the environment.

:func:`load` reads the root file and its includes (positioned safe YAML, see :mod:`~router.registry.yamlsource`),
checks each against the services schema, expands ``${VAR}`` in the ``redis`` section, builds the specs while
running every semantic check (ownership, prefixes, names, queues, payload schemas, cron), and either returns a
frozen Registry or raises one :class:`~router.errors.ConfigError` carrying every problem found, each with file, line and column.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from router.errors import ConfigError, Problem
from router.names import name_problem, task_type_problem
from router.registry import payloads, values
from router.registry.docschema import schema_problems, suggest, where
from router.registry.envsubst import interpolate
from router.registry.metaschema import certainly_valid
from router.registry.model import CronSpec, PriorityMode, QueueSpec, Registry, ServiceSpec, SourceLocation, TaskSpec
from router.registry.yamlsource import MAX_FILE_BYTES, Path, YamlDocument, read_yaml

DEFAULT_PAYLOAD_SCHEMA: Mapping[str, Any] = MappingProxyType({"type": "object"})


def load(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Registry:
    """Read, check and freeze the registry at ``path`` and every file it includes.

    Args:
        path: the root services.yaml; problems name files as given here, includes relative to it.
        env: variables for ``${VAR}`` in the ``redis`` section (default: the process environment).

    Returns:
        The frozen Registry.

    Raises:
        ConfigError: with every problem found, each with file, line, column, code and a fix.
    """
    with _gc_paused():
        return _Loader(os.environ if env is None else env).load(os.fspath(path))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC during a load: it builds ~10^5 acyclic containers, and the collections their
    allocation triggers find nothing to free while costing about a fifth of the load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class _Defaults:
    max_retry: int = 25
    timeout_s: float = 1800.0
    retention_s: float | None = None


class _Loader:
    """One load: the files read so far, the problems found, and per-load caches."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []
        self.docs: list[YamlDocument] = []
        self.included_from: dict[str, str] = {}
        self.ref_files: dict[str, tuple[Any, str | None]] = {}
        self.verdicts: dict[str, list[tuple[tuple[str | int, ...], str]]] = {}
        self.tasks: dict[str, TaskSpec] = {}
        self.bad_schema: set[str] = set()

    def load(self, path: str) -> Registry:
        self.read(path, (), None)
        registry = self.build() if self.docs else None
        if self.problems or registry is None:
            order = {doc.file: i for i, doc in enumerate(self.docs)}
            raise ConfigError(sorted(self.problems, key=lambda p: (order.get(p.file, -1), p.line, p.column)))
        return registry

    # -- files and includes ------------------------------------------------------------------------------------

    def read(self, file: str, stack: tuple[tuple[str, str], ...], origin: tuple[YamlDocument, Path] | None) -> None:
        real = os.path.realpath(file)
        if origin is not None and not self.check_include(file, real, stack, origin):
            return
        doc, problems = read_yaml(file)
        if origin is not None and doc is None and problems and problems[0].code in ("file-missing", "file-unreadable"):
            what = "not found" if problems[0].code == "file-missing" else "unreadable"
            problems = [origin[0].problem(origin[1], f"included file {file!r} is {what}; paths are relative to "
                                          f"{origin[0].file!r}, fix the path or remove the entry", "include-missing")]
        self.problems += problems
        if doc is None:
            return
        self.included_from[real] = f"{origin[0].file}:{origin[0].locate(origin[1])[0]}" if origin else file
        self.docs.append(doc)
        self.problems += schema_problems(doc, included=origin is not None)
        includes = doc.data.get("include") if isinstance(doc.data, dict) else None
        for i, entry in enumerate(includes if isinstance(includes, list) else []):
            if isinstance(entry, str) and entry:
                child = os.path.normpath(os.path.join(os.path.dirname(file), entry))
                self.read(child, (*stack, (real, file)), (doc, ("include", i)))

    def check_include(self, file: str, real: str, stack: tuple[tuple[str, str], ...],
                      origin: tuple[YamlDocument, Path]) -> bool:
        doc, path = origin
        reals = [r for r, _ in stack]
        if real in reals:
            cycle = " -> ".join([name for _, name in stack[reals.index(real):]] + [file])
            self.problems.append(doc.problem(path, f"include cycle: {cycle}; remove one of these includes",
                                             "include-cycle"))
            return False
        if real in self.included_from:
            message = f"{file!r} is already included (from {self.included_from[real]}); include each file once"
            self.problems.append(doc.problem(path, message, "include-duplicate"))
            return False
        return True

    # -- building ----------------------------------------------------------------------------------------------

    def build(self) -> Registry:
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
                    message = f"service {name!r} is declared twice (first at {_at(first)}); declare it in one file"
                    self.problems.append(doc.problem(("services", name), message, "duplicate-service", key=True))
                elif isinstance(raw, dict):
                    services[name] = self.service(doc, name, raw, defaults)
        self.check_prefixes(services)
        return Registry(
            services=MappingProxyType(services),
            tasks=MappingProxyType(self.tasks),
            cron=self.cron_entries(),
            redis_url=self.redis_url(root, data),
            max_payload_bytes=_int(limits.get("max_payload_bytes"), 512 * 1024),
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
            location=_loc(doc, path, key=True),
            app_location=_loc(doc, (*path, "app")) if "app" in raw else None,
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
            payload_schema=self.payload_schema(doc, (*path, "payload"), task_type, raw.get("payload")),
            max_retry=_int(raw.get("max_retry"), defaults.max_retry),
            timeout_s=_num(raw.get("timeout_s"), defaults.timeout_s),
            unique_s=_opt_num(raw.get("unique_s")),
            retention_s=_opt_num(raw.get("retention_s"), defaults.retention_s),
            location=_loc(doc, path, key=True),
        )
        other = self.tasks.get(task_type)
        if other is not None:
            message = (f"task type {task_type!r} is declared twice: by service {service.name!r} here and by service "
                       f"{other.service!r} at {_at(other.location)}; a task type has exactly one owner, remove one "
                       "declaration")
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
                    f"({_at(first.location)}); services sharing a prefix share every key, queue and ACL, so give "
                    f"{spec.name!r} its own `prefix:`", "prefix-duplicate", key=not explicit))

    # -- payload schemas ---------------------------------------------------------------------------------------

    def payload_schema(self, doc: YamlDocument, path: Path, task_type: str, raw: Any) -> Any:
        if raw is None:
            return DEFAULT_PAYLOAD_SCHEMA
        if isinstance(raw, bool):
            return raw
        if not isinstance(raw, dict):
            return DEFAULT_PAYLOAD_SCHEMA
        ref = raw.get("$ref")
        if len(raw) == 1 and isinstance(ref, str) and not ref.startswith("#"):
            schema, error = self.ref_file(doc, ref)
            if error is None:
                error = "; ".join(f"{where(p) if p else 'top level'}: {m}" for p, m in self.verdict(schema)) or None
                error = error and f"payload schema {ref!r} of {task_type!r} is not a valid JSON Schema: {error}"
            if error is not None:
                self.bad_schema.add(task_type)
                self.problems.append(doc.problem((*path, "$ref"), error, "payload-schema"))
                return DEFAULT_PAYLOAD_SCHEMA
            return payloads.freeze(schema)
        for where_in, message in self.verdict(raw):
            self.bad_schema.add(task_type)
            self.problems.append(doc.problem((*path, *where_in), f"payload schema of {task_type!r} is not a valid "
                                             f"JSON Schema: {message}", "payload-schema"))
        return payloads.freeze(raw)

    def verdict(self, schema: Any) -> list[tuple[tuple[str | int, ...], str]]:
        """The metaschema and $ref problems of ``schema``, computed once per distinct schema per load."""
        refs: list[str] = []
        if certainly_valid(schema, refs=refs):
            return [(tuple(p), m) for p, m in payloads.internal_ref_errors(schema)] if refs else []
        key = payloads.canonical(schema)
        found = self.verdicts.get(key)
        if found is None:
            found = [(tuple(e.path), payloads.schema_error_message(e)) for e in payloads.schema_errors(schema)]
            if not found:
                found = [(tuple(p), m) for p, m in payloads.internal_ref_errors(schema)]
            self.verdicts[key] = found
        return found

    def ref_file(self, doc: YamlDocument, ref: str) -> tuple[Any, str | None]:
        """The JSON Schema in file ``ref`` (relative to ``doc``), or why it cannot be used; cached per file."""
        file = os.path.normpath(os.path.join(os.path.dirname(doc.file), ref))
        if "#" in ref:
            return None, f"$ref {ref!r}: point at a whole schema file (no '#fragment'), or inline the schema"
        found = self.ref_files.get(file)
        if found is None:
            found = self.ref_files[file] = _read_json_schema(file, doc.file)
        return found

    # -- cron --------------------------------------------------------------------------------------------------

    def cron_entries(self) -> tuple[CronSpec, ...]:
        result: list[CronSpec] = []
        names: dict[str, CronSpec] = {}
        for doc in self.docs:
            entries = doc.data.get("cron") if isinstance(doc.data, dict) else None
            for i, raw in enumerate(entries if isinstance(entries, list) else []):
                spec = self.cron_entry(doc, ("cron", i), raw) if isinstance(raw, dict) else None
                if spec is None:
                    continue
                if spec.name in names:
                    self.problems.append(doc.problem(("cron", i, "name"), f"cron entry {spec.name!r} is declared "
                                         f"twice (first at {_at(names[spec.name].location)}); cron names must be "
                                         "unique, rename one", "duplicate-cron"))
                    continue
                names[spec.name] = spec
                result.append(spec)
        return tuple(result)

    def cron_entry(self, doc: YamlDocument, path: Path, raw: Mapping[str, Any]) -> CronSpec | None:
        name, task, spec = raw.get("name"), raw.get("task"), raw.get("spec")
        timezone, payload = raw.get("timezone", "UTC"), raw.get("payload", {})
        if not (isinstance(name, str) and isinstance(task, str) and isinstance(spec, str)
                and isinstance(timezone, str) and isinstance(payload, dict)):
            return None  # the schema check has reported it
        self.name_check(doc, (*path, "name"), name_problem("cron name", name))
        self.name_check(doc, (*path, "spec"), values.cron_spec_problem(spec), code="cron-spec")
        self.name_check(doc, (*path, "timezone"), values.timezone_problem(timezone), code="cron-timezone")
        owner = self.tasks.get(task)
        if owner is None:
            self.problems.append(doc.problem((*path, "task"), f"cron entry {name!r} enqueues unknown task type "
                                 f"{task!r}{suggest(task, self.tasks)}; declare it under a service's `tasks:` or "
                                 "fix the name", "cron-unknown-task"))
        elif task not in self.bad_schema:
            for violation in payloads.payload_validator(owner).iter_errors(payload):
                self.problems.append(doc.problem((*path, "payload", *violation.absolute_path),
                                     f"cron entry {name!r}: payload does not match the schema of {task!r}: "
                                     f"{violation.message}", "cron-payload"))
        return CronSpec(name=name, task=task, spec=spec, timezone=timezone, payload=payloads.freeze(payload),
                        location=_loc(doc, path))


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


def _loc(doc: YamlDocument, path: Path, *, key: bool = False) -> SourceLocation:
    line, column = doc.locate(path, key=key)
    return SourceLocation(doc.file, line, column)


def _at(location: SourceLocation | None) -> str:
    return f"{location.file}:{location.line}" if location else "unknown location"


def _read_json_schema(file: str, referrer: str) -> tuple[Any, str | None]:
    try:
        if os.path.getsize(file) > MAX_FILE_BYTES:
            return None, f"payload schema file {file!r} is over {MAX_FILE_BYTES} bytes"
        with open(file, encoding="utf-8") as fh:
            schema = json.load(fh)
    except FileNotFoundError:
        return None, f"payload schema file {file!r} not found ($ref paths are relative to {referrer!r})"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read payload schema file {file!r}: {exc}"
    except json.JSONDecodeError as exc:
        return None, f"{file}:{exc.lineno}:{exc.colno}: payload schema is not valid JSON ({exc.msg})"
    except RecursionError:
        return None, f"payload schema file {file!r} nests too deeply"
    if not isinstance(schema, (dict, bool)):
        return None, f"payload schema file {file!r} must hold a JSON object (a schema), not {type(schema).__name__}"
    return schema, None
