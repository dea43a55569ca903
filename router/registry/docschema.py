"""The structural check of a registry file against ``services.schema.json``, as located, fixable Problems.

jsonschema finds the violations; this module turns each one into a Problem at the line and column of the
offending node (of the key itself for unknown keys) with a message that names the setting in YAML terms and says
what would be accepted. The schema ships as package data and its validators are built once per process.
"""

from __future__ import annotations

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
def _schemas() -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The schemas of a root file and of an included one, local refs inlined (resolving a "$ref" costs jsonschema
    more than checking the value it names)."""
    outline = _inline_refs(services_schema(), services_schema(), 0)
    return outline, outline["$defs"]["fragment"]


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


def schema_problems(doc: YamlDocument, *, included: bool, out: list[Problem]) -> None:
    """Append every violation of the services schema in ``doc`` to ``out`` (an included file follows
    ``$defs/fragment``), as it is found: ``out`` may stop the load when it is full."""
    root, fragment = _schemas()
    found = islice(_Walker().errors(fragment if included else root, doc.data, ()), MAX_VIOLATIONS)
    seen: set[tuple[Path, str]] = set()
    for base, error in found:
        for problem_path, message, code, on_key in _describe(error, included, base):
            if (problem_path, message) not in seen:
                seen.add((problem_path, message))
                out.append(doc.problem(problem_path, message, code, key=on_key))


# Validators of schema nodes, by id(): the schemas are cached for the process, so their ids are stable.
_LEAF: dict[int, Validator] = {}
_SHALLOW: dict[int, Validator] = {}


class _Walker:
    """jsonschema over one file, one mapping entry or list item at a time, each distinct value checked once.

    Checking a whole file in one jsonschema call costs it microseconds per node, and YAML aliases can repeat one
    service, task or queue list thousands of times. So mappings and lists are split: their own keywords (type,
    unknown and required keys, length) are checked on their own, and their entries recursively, with results
    memoised by value for scalars and by identity or key set for containers (an alias is the same object). The
    verdicts are jsonschema's, and ``uniqueItems`` is checked in linear time (jsonschema's falls back to comparing
    every pair when items do not sort).
    """

    def __init__(self) -> None:
        self.memo: dict[tuple[Any, ...], list[ValidationError]] = {}

    def errors(self, schema: Any, value: Any, path: Path) -> Iterator[tuple[Path, ValidationError]]:
        """(path of the validated value, error relative to it) for every violation of ``schema`` by ``value``."""
        if not isinstance(schema, Mapping):
            return
        if "if" in schema and set(schema) <= {"if", "then", "else", "description"}:
            branch = schema.get("then" if not self.leaf(schema["if"], value) else "else", True)
            yield from self.errors(branch, value, path)
            return
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        if type(value) is dict and (properties or isinstance(extra, Mapping)):
            yield from ((path, e) for e in self.shallow(schema, value, ("dict", frozenset(value))))
            for key, item in value.items():
                sub = properties.get(key, extra)
                if isinstance(sub, Mapping):
                    yield from self.entry(sub, item, (*path, key))
        elif type(value) is list and isinstance(schema.get("items"), Mapping):
            yield from ((path, e) for e in self.shallow(schema, value, ("list", len(value), id(value))))
            items = schema["items"]
            for i, item in enumerate(value):
                yield from self.entry(items, item, (*path, i))
        else:
            yield from ((path, e) for e in self.leaf(schema, value))

    def entry(self, schema: Mapping[str, Any], value: Any, path: Path) -> Iterator[tuple[Path, ValidationError]]:
        """:meth:`errors` for one entry, without a generator per scalar (a list can hold 10^5 of them)."""
        if type(value) in (dict, list) or "if" in schema:
            return self.errors(schema, value, path)
        return iter([(path, e) for e in self.leaf(schema, value)])

    def leaf(self, schema: Mapping[str, Any], value: Any) -> list[ValidationError]:
        key = (id(schema), id(value)) if isinstance(value, (dict, list)) else (id(schema), type(value), value)
        found = self.memo.get(key)
        if found is None:
            validator = _LEAF.get(id(schema))
            if validator is None:
                validator = _LEAF[id(schema)] = Draft202012Validator(schema)
            found = self.memo[key] = list(islice(validator.iter_errors(value), MAX_VIOLATIONS))
        return found

    def shallow(self, schema: Mapping[str, Any], value: Any, shape: tuple[Any, ...]) -> list[ValidationError]:
        """The errors of ``schema``'s own keywords (not its entries'), for a value of this ``shape``."""
        key = (id(schema), *shape)
        found = self.memo.get(key)
        if found is None:
            validator = _SHALLOW.get(id(schema))
            if validator is None:
                own = {k: v for k, v in schema.items() if k not in ("items", "uniqueItems")}
                if "properties" in own:
                    own["properties"] = dict.fromkeys(own["properties"], True)
                if isinstance(own.get("additionalProperties"), Mapping):
                    own["additionalProperties"] = True
                validator = _SHALLOW[id(schema)] = Draft202012Validator(own)
            found = list(islice(validator.iter_errors(value), MAX_VIOLATIONS))
            if schema.get("uniqueItems") is True and type(value) is list:
                found += _duplicates(schema, value)
            self.memo[key] = found
        return found


def _duplicates(schema: Mapping[str, Any], items: list[Any]) -> list[ValidationError]:
    """``uniqueItems`` in linear time: items compared by their canonical JSON (1 and 1.0 equal, true and 1 not)."""
    seen: set[str] = set()
    for item in items:
        canonical = json.dumps(_unbool(item), sort_keys=True, default=repr)
        if canonical in seen:
            return [ValidationError(f"{quote(item)} is listed more than once; list each only once",
                                    validator="uniqueItems", validator_value=True, instance=items, schema=schema)]
        seen.add(canonical)
    return []


def _unbool(item: Any) -> Any:
    if isinstance(item, bool):
        return f"\0{item}"
    if isinstance(item, float) and item.is_integer():
        return int(item)
    if isinstance(item, dict):
        return {k: _unbool(v) for k, v in item.items()}
    if isinstance(item, list):
        return [_unbool(v) for v in item]
    return item


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
