"""The registry's ``cron:`` entries: names, specs, time zones, the task each enqueues and its payload."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.errors import Problem
from router.names import name_problem
from router.quoting import quote
from router.registry import payloads, values
from router.registry.messages import suggest
from router.registry.model import CronSpec, TaskSpec
from router.registry.yamlsource import Path, YamlDocument


class CronEntries:
    """Builds the cron entries of every document, reporting problems located in the document."""

    def __init__(self, problems: list[Problem], tasks: Mapping[str, TaskSpec], bad_schema: set[str]) -> None:
        self.problems = problems
        self.tasks = tasks
        self.bad_schema = bad_schema
        # "did you mean" per unknown task type: aliases can repeat one entry thousands of times.
        self.task_hints: dict[str, str] = {}

    def name_check(self, doc: YamlDocument, path: Path, message: str | None, code: str = "name-invalid") -> None:
        if message is not None:
            self.problems.append(doc.problem(path, message, code))

    def build(self, docs: list[YamlDocument]) -> tuple[CronSpec, ...]:
        """Every valid cron entry of ``docs``, in order."""
        result: list[CronSpec] = []
        names: dict[str, CronSpec] = {}
        for doc in docs:
            entries = doc.data.get("cron") if isinstance(doc.data, dict) else None
            if entries:  # a setting is honoured or refused, never silently ignored
                self.problems.append(doc.problem(("cron",), "cron entries are not supported yet: router has no "
                                                 "scheduler so far, so they would never fire; remove the `cron:` "
                                                 "section", "not-supported", key=True))
            for i, raw in enumerate(entries if isinstance(entries, list) else []):
                spec = self.cron_entry(doc, ("cron", i), raw) if isinstance(raw, dict) else None
                if spec is None:
                    continue
                if spec.name in names:
                    first = names[spec.name].location or "unknown location"
                    self.problems.append(doc.problem(("cron", i, "name"), f"cron entry {quote(spec.name)} is declared "
                                         f"twice (first at {first}); cron names must be unique, rename one",
                                         "duplicate-cron"))
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
        self.name_check(doc, (*path, "spec"), values.cron_spec_problem(spec), "cron-spec")
        self.name_check(doc, (*path, "timezone"), values.timezone_problem(timezone), "cron-timezone")
        owner = self.tasks.get(task)
        if owner is None:
            hint = self.task_hints.get(task)
            if hint is None:
                hint = self.task_hints[task] = suggest(task, self.tasks)
            self.problems.append(doc.problem((*path, "task"), f"cron entry {quote(name)} enqueues unknown task type "
                                 f"{quote(task)}{hint}; declare it under a service's `tasks:` or fix the name",
                                 "cron-unknown-task"))
        elif task not in self.bad_schema:
            self.payload_check(doc, path, name, owner, payload)
        return CronSpec(name=name, task=task, spec=spec, timezone=timezone, payload=payloads.freeze(payload),
                        location=doc.location(path))

    def payload_check(self, doc: YamlDocument, path: Path, name: str, owner: TaskSpec, payload: Any) -> None:
        """Report each way ``payload`` violates ``owner``'s schema. Safe on its own, whatever the schema: the load
        normally refuses a schema that cannot be evaluated before this runs, but this check does not rely on it."""
        try:
            violations = payloads.validation_errors(payloads.payload_validator(owner), payload)
        except payloads.SchemaEvaluationError as exc:
            self.problems.append(doc.problem((*path, "payload"), f"cron entry {quote(name)}: the schema of "
                                 f"{quote(owner.type)} {exc}; fix that schema", "cron-payload"))
            return
        for violation in violations:
            self.problems.append(doc.problem((*path, "payload", *violation.absolute_path),
                                 f"cron entry {quote(name)}: payload does not match the schema of "
                                 f"{quote(owner.type)}: {payloads.bounded(violation.message)}", "cron-payload"))


