"""The registry's ``cron:`` entries: names, specs, time zones, the task each enqueues, its payload and its catch-up
policy.

Besides what croniter refuses, two likely mistakes in a spec are caught here: a six-field spec written seconds
FIRST, as Asynq and Quartz users do (croniter reads the sixth field as the seconds: ``*/30 * * * * *`` is "every
second of minutes 0 and 30", not "every 30 seconds"), and a spec that can never fire (``0 0 31 2 *``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from croniter import croniter
from croniter.croniter import CroniterBadDateError

from router.errors import Problem
from router.names import name_problem
from router.quoting import quote
from router.registry import payloads, values
from router.registry.messages import suggest
from router.registry.model import CatchUp, CronSpec, TaskSpec
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
        catch_up = raw.get("catch_up", CatchUp.LATEST.value)
        if not (isinstance(name, str) and isinstance(task, str) and isinstance(spec, str)
                and isinstance(timezone, str) and isinstance(payload, dict)
                and isinstance(catch_up, str) and catch_up in {c.value for c in CatchUp}):
            return None  # the schema check has reported it
        self.name_check(doc, (*path, "name"), name_problem("cron name", name))
        self.name_check(doc, (*path, "spec"), spec_problem(spec), "cron-spec")
        self.name_check(doc, (*path, "timezone"), values.timezone_problem(timezone), "cron-timezone")
        owner = self.tasks.get(task)
        if owner is None:
            hint = self.task_hints.get(task)
            if hint is None:
                hint = self.task_hints[task] = suggest(task, self.tasks)
            self.problems.append(doc.problem((*path, "task"), f"cron entry {quote(name)} enqueues unknown task type "
                                 f"{quote(task)}{hint}; declare it under a service's `tasks:` or fix the name",
                                 "cron-unknown-task"))
        elif owner.aggregate is not None:
            self.problems.append(doc.problem((*path, "task"), f"cron entry {quote(name)} enqueues {quote(task)}, "
                                 "a task that aggregates: its tasks join a group, which a cron entry cannot name; "
                                 f"point the entry at {quote(owner.aggregate.into)} or at a plain task",
                                 "cron-aggregate"))
        elif owner.unique_s is not None:
            self.problems.append(doc.problem((*path, "task"), f"cron entry {quote(name)} enqueues {quote(task)}, "
                                 "a unique task: cron fires are already exactly once per slot and do not take "
                                 "unique locks; drop `unique_s` from the task, or enqueue it from a cron target's "
                                 "handler", "cron-unique"))
        elif task not in self.bad_schema:
            self.payload_check(doc, path, name, owner, payload)
        return CronSpec(name=name, task=task, spec=spec, timezone=timezone, payload=payloads.freeze(payload),
                        catch_up=CatchUp(catch_up), location=doc.location(path))


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


#: Where :func:`spec_problem` starts looking for a first fire (any fixed date does: it only asks "ever?").
_PROBE_START = datetime(2024, 1, 1)


def spec_problem(spec: str) -> str | None:
    """Why ``spec`` cannot be a cron entry's spec: croniter cannot read it, it is a six-field spec most likely
    written seconds first, or it never fires."""
    problem = values.cron_spec_problem(spec)
    fields = spec.split()
    if problem is not None:
        if spec.strip().startswith("@every"):
            return f"{problem}. There is no @every; for every 30 seconds write '* * * * * */30' (seconds LAST)"
        if len(fields) == 6:
            return f"{problem}. A sixth field is the seconds and comes LAST (croniter's order), e.g. " \
                   "'*/5 * * * * 30' is second 30 of every fifth minute"
        return problem
    if len(fields) == 6 and fields[5] == "*" and fields[0] != "*":
        return f"cron spec {spec!r} fires every second of the minutes '{fields[0]}': the sixth field is the " \
               "seconds and comes LAST (croniter's order), not first as in Asynq or Quartz. For every 30 seconds " \
               "write '* * * * * */30'; for second 0 of every fifth minute '*/5 * * * * 0'; if you do mean every " \
               "second of those minutes, write the seconds as 0-59"
    try:
        croniter(spec, _PROBE_START).get_next(datetime)
    except CroniterBadDateError:
        return f"cron spec {spec!r} never fires (no date matches it, e.g. 31 February); fix the day or month"
    return None


