"""The structural check of a registry file against ``services.schema.json``, as located, fixable Problems.

jsonschema finds the violations; this module turns each one into a Problem at the line and column of the
offending node (of the key itself for unknown keys) with a message that names the setting in YAML terms and says
what would be accepted. The schema ships as package data and its validators are built once per process.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from itertools import islice
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from router.errors import Problem
from router.quoting import quote
from router.registry.messages import suggest, where
from router.registry.payloads import bounded
from router.registry.yamlsource import Path, YamlDocument

# Violations taken from one validation: past this many, a file has bigger problems than the next one, and every
# violation costs memory (jsonschema keeps the instance, its path and a message quoting it).
MAX_VIOLATIONS = 1000

_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "empty"}
_RANGE = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


@cache
def services_schema() -> Mapping[str, Any]:
    """The JSON Schema of services.yaml, loaded from package data."""
    text = resources.files("router").joinpath("schemas/services.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validators() -> tuple[Validator, Validator, Validator, Mapping[str, Validator] | None]:
    """Validators for a root file and an included one (both skipping task bodies), for a task body, and for
    each property of a task body.

    Task bodies are checked separately and memoised: a fleet repeats the same few values thousands of times,
    and jsonschema costs tens of microseconds per task. Local refs are inlined first, since resolving a "$ref"
    costs jsonschema more than checking the value it names.
    """
    schema = services_schema()
    skeleton = copy.deepcopy(dict(schema))
    skeleton["$defs"]["service"]["properties"]["tasks"]["additionalProperties"] = True
    outline = _inline_refs(skeleton, skeleton, 0)
    task = _inline_refs(schema["$defs"]["task"], schema, 0)
    # Per-property checking is exact only while the task schema is a plain object of independent properties.
    independent = set(task) <= {"type", "additionalProperties", "properties", "description"}
    by_property = {k: Draft202012Validator(v) for k, v in task["properties"].items()} if independent else None
    return (Draft202012Validator(outline), Draft202012Validator(outline["$defs"]["fragment"]),
            Draft202012Validator(task), by_property)


def _inline_refs(node: Any, root: Mapping[str, Any], depth: int) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/name"}`` replaced by the definition (the schema has no cycles)."""
    if depth > 32:
        raise ValueError("services.schema.json: $ref nesting too deep (a cycle?)")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(root["$defs"][ref[len("#/$defs/"):]], root, depth + 1)
        return {k: _inline_refs(v, root, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, root, depth + 1) for v in node]
    return node


def schema_problems(doc: YamlDocument, *, included: bool) -> list[Problem]:
    """Every violation of the services schema in ``doc`` (an included file follows ``$defs/fragment``)."""
    root, fragment, task_validator, by_property = _validators()
    validator = fragment if included else root
    found: list[tuple[Path, ValidationError]] = [((), e) for e in islice(validator.iter_errors(doc.data),
                                                                          MAX_VIOLATIONS)]
    memo: dict[str, list[ValidationError]] = {}
    for base, task in _tasks(doc.data):
        if by_property is not None and type(task) is dict and all(k in by_property for k in task):
            for key, value in task.items():
                found += [((*base, key), e) for e in _memo_errors(by_property[key], key, value, memo)]
        else:
            found += [(base, e) for e in _memo_errors(task_validator, "", task, memo)]
    problems: list[Problem] = []
    seen: set[tuple[Path, str]] = set()
    for base, error in found:
        for problem_path, message, code, on_key in _describe(error, included, base):
            if (problem_path, message) not in seen:
                seen.add((problem_path, message))
                problems.append(doc.problem(problem_path, message, code, key=on_key))
    return problems


def _memo_errors(validator: Validator, name: str, value: Any, memo: dict[str, list[ValidationError]]) -> \
        list[ValidationError]:
    # A payload is a schema of its own, checked later; here only its type matters.
    if name == "payload" and type(value) is dict:
        value = {}
    elif not name and type(value) is dict and type(value.get("payload")) is dict:
        value = {**value, "payload": {}}
    key = f"{name}\0{json.dumps(value, sort_keys=True, default=repr)}"
    errors = memo.get(key)
    if errors is None:
        errors = memo[key] = list(islice(validator.iter_errors(value), MAX_VIOLATIONS))
    return errors


def _tasks(data: Any) -> Iterator[tuple[Path, Any]]:
    services = data.get("services") if isinstance(data, dict) else None
    for name, service in (services.items() if isinstance(services, dict) else ()):
        tasks = service.get("tasks") if isinstance(service, dict) else None
        for task_type, task in (tasks.items() if isinstance(tasks, dict) else ()):
            yield ("services", name, "tasks", task_type), task


def _describe(error: ValidationError, included: bool, base: Path) -> Iterator[tuple[Path, str, str, bool]]:
    path: Path = (*base, *error.absolute_path)
    kind = str(error.validator)
    value: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    here = where(path)
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        allowed = list(schema.get("properties", {}))
        for key in instance:
            if key not in allowed:
                extra = " (included files may hold only include, services and cron)" if included and not path else ""
                yield ((*path, key), f"unknown key {quote(key)} in {here}{suggest(key, allowed)}; allowed keys: "
                       f"{', '.join(allowed)}{extra}", "unknown-key", True)
    elif kind == "required" and isinstance(instance, Mapping):
        missing = [k for k in value if k not in instance]
        message = f"{here} is missing required key(s) {', '.join(map(quote, missing))}; add them"
        yield path, message, "schema-required", False
    elif kind == "type":
        types = value if isinstance(value, list) else [value]
        wanted = " or ".join(_TYPE_NAMES.get(t) or str(t) for t in types)
        # The top level of a file that is not a mapping is not a registry at all: say what it is, not what it says.
        shown = _kind(instance) if path else _kind_only(instance)
        yield path, f"{here} must be {wanted}, not {shown}", "schema-type", False
    elif kind in _RANGE:
        yield path, f"{here} must be {_RANGE[kind]} {value}, got {quote(instance)}", "schema-range", False
    elif kind == "const":
        hint = " (the only registry format so far)" if path == ("version",) else ""
        yield path, f"{here} must be {quote(value)}{hint}, got {quote(instance)}", "schema-value", False
    elif kind == "enum":
        options = ", ".join(map(quote, value))
        yield path, f"{here} must be one of {options}, got {quote(instance)}{suggest(instance, value)}", \
            "schema-value", False
    elif kind == "pattern" and path and path[-1] == "app":
        yield path, f"app must look like 'package.module:attribute' (a router.Service), got {quote(instance)}", \
            "schema-value", False
    else:
        yield path, f"{here}: {bounded(error.message)}", "schema-value", False


def _kind(instance: Any) -> str:
    if instance is None:
        return "empty (null)"
    if isinstance(instance, bool):
        return f"the boolean {str(instance).lower()}"
    if isinstance(instance, dict):
        return "a mapping"
    if isinstance(instance, list):
        return "a list"
    return f"{type(instance).__name__ if not isinstance(instance, str) else 'the string'} {quote(instance, 40)}"


def _kind_only(instance: Any) -> str:
    if isinstance(instance, (str, int, float)) and not isinstance(instance, bool):
        return {str: "a string", int: "a number", float: "a number"}[type(instance)]
    return _kind(instance)
