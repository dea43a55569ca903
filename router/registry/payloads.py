"""Payload JSON Schemas: checking them when the registry loads, and compiled validators for every later check.

The registry keeps each task's raw schema (deep-frozen) in ``TaskSpec.payload_schema``. This module turns a
schema into a checked, compiled jsonschema validator once per TaskSpec (:func:`payload_validator`), reports a
payload's violations in the shape :class:`router.errors.PayloadInvalid` carries (:func:`payload_violations`), and
converts between the frozen registry values and plain JSON (:func:`freeze`, :func:`thaw`). Format assertions
(``format: email`` and the like) are enabled: a guard that let malformed e-mail addresses through would surprise.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable, Mapping
from itertools import islice
from types import MappingProxyType
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match, relevance
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from router.errors import Violation
from router.quoting import quote
from router.registry.model import TaskSpec

_cache: dict[int, Validator] = {}
_cache_lock = threading.Lock()
_meta: dict[type[Validator], Validator] = {}


class FrozenList(list[Any]):
    """A list that refuses changes: frozen JSON arrays that jsonschema and json still see as lists.

    Tuples would be the obvious choice, but jsonschema only treats ``list`` as an array (a draft-7 ``items``
    given as a tuple crashes its resolver), so frozen schemas stay usable as schemas.
    """

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("registry data is frozen; copy it with router.registry.payloads.thaw() to change it")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse


_ATOMS = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """Deep-freeze JSON data: mappings become MappingProxyType, lists become :class:`FrozenList`."""
    kind = type(value)
    # Leaves are handled inline: registries hold tens of thousands of them and a call each adds up.
    if kind is dict:
        return MappingProxyType({k: v if type(v) in _ATOMS else freeze(v) for k, v in value.items()})
    if kind is list or kind is FrozenList:
        return FrozenList([v if type(v) in _ATOMS else freeze(v) for v in value])
    if kind in _ATOMS:
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return FrozenList(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON (dict, list) from frozen registry data, for json.dumps and jsonschema."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def schema_class(schema: Any) -> type[Validator] | None:
    """The jsonschema validator class for ``schema``'s ``$schema`` dialect (2020-12 when absent), or None if unknown."""
    if isinstance(schema, Mapping) and "$schema" in schema:
        dialect = schema["$schema"]
        if not isinstance(dialect, str):
            return None
        found: type[Validator] | None = validator_for({"$schema": dialect}, default=cast(Any, None))
        return found
    return Draft202012Validator


def compile_schema(schema: Any) -> Validator:
    """A validator for a schema already known to be valid (see :func:`schema_errors`)."""
    plain = thaw(schema)
    cls = schema_class(plain) or Draft202012Validator
    return cls(plain, format_checker=cls.FORMAT_CHECKER)


def payload_validator(spec: TaskSpec) -> Validator:
    """The compiled validator of ``spec.payload_schema``, built once per TaskSpec and dropped with it.

    Use it from the guard and the worker: ``payload_validator(registry.tasks[t]).is_valid(payload)``.
    """
    key = id(spec)
    found = _cache.get(key)
    if found is None:
        found = compile_schema(spec.payload_schema)
        with _cache_lock:
            if key not in _cache:
                _cache[key] = found
                # Keyed by identity because TaskSpec holds mappings and is unhashable; evict when it dies.
                weakref.finalize(spec, _cache.pop, key, None)
            found = _cache[key]
    return found


def payload_violations(spec: TaskSpec, payload: Any) -> list[Violation]:
    """Every violation of ``spec``'s payload schema by ``payload``, most relevant first; empty when valid.

    Raises:
        SchemaEvaluationError: the validator failed on its own instead of deciding.
    """
    errors = validation_errors(payload_validator(spec), payload)
    return [Violation(json_path(e.absolute_path), e.message) for e in errors]


# What validation may not swallow. Everything else is caught, BaseException included: jsonschema's referencing
# library stores resources in rpds (Rust), whose PanicException derives from BaseException; it surfaces when the
# Python stack runs out inside a comparison there (a $ref chain thousands long).
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


class SchemaEvaluationError(Exception):
    """A validator failed on its own (an exception, not a verdict); the message says why, in a user's terms."""


def validation_errors(validator: Validator, instance: Any) -> list[ValidationError]:
    """Every error of ``validator`` on ``instance``, most relevant first.

    Raises:
        SchemaEvaluationError: instead of whatever the validator raised (RecursionError, a jsonschema or
            referencing internal error, OverflowError, ...).
    """
    try:
        return sorted(validator.iter_errors(instance), key=relevance)
    except _FATAL:
        raise
    except BaseException as exc:  # anything but a verdict (see _FATAL for why BaseException): never raw
        raise SchemaEvaluationError(evaluation_failure(exc)) from None


def evaluation_failure(exc: BaseException) -> str:
    """Why a schema could not be evaluated, from what its validator raised."""
    if isinstance(exc, RecursionError) or type(exc).__name__ == "PanicException":
        return ("cannot be evaluated: it recursed without end (a $ref loop in the schema, or a payload nested too "
                "deeply)")
    return f"cannot be evaluated ({type(exc).__name__}: {quote(str(exc), 160)})"


def evaluation_problem(schema: Any) -> str | None:
    """Why ``schema`` (already valid against its metaschema) cannot be evaluated, or None: it is compiled and run
    once on an empty payload, catching what would otherwise fail at every enqueue."""
    try:
        validation_errors(compile_schema(schema), {})
    except SchemaEvaluationError as exc:
        return str(exc)
    except _FATAL:
        raise
    except BaseException as exc:  # compiling it failed
        return evaluation_failure(exc)
    return None


def json_path(parts: Iterable[Any]) -> str:
    """A JSONPath-like rendering of a location in a payload: ``$.items[0].sku``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_errors(schema: Any) -> list[ValidationError]:
    """Why ``schema`` is not a valid JSON Schema under its own dialect (the metaschema's verdict)."""
    cls = schema_class(schema)
    if cls is None:
        return [ValidationError(f"unknown $schema dialect {schema['$schema']!r}; omit it for 2020-12",
                                path=["$schema"])]
    meta = _meta.get(cls)
    if meta is None:
        meta_cls = validator_for(cls.META_SCHEMA, default=cls)
        meta = _meta[cls] = meta_cls(cls.META_SCHEMA, format_checker=meta_cls.FORMAT_CHECKER)
    return sorted(islice(meta.iter_errors(schema), 100), key=relevance)  # a hundred say enough


def schema_error_message(error: ValidationError) -> str:
    """A readable message for a metaschema violation (anyOf errors name the type list instead of 'any of')."""
    path = list(error.path)
    if path and path[-1] == "type" and error.validator in ("anyOf", "enum"):
        return f"{quote(error.instance)} is not a JSON Schema type; use one of array, boolean, integer, null, " \
               "number, object, string (or a list of them)"
    if error.validator in ("anyOf", "oneOf") and error.context:
        return bounded(str(best_match(error.context).message))
    return bounded(error.message)


def bounded(message: str, limit: int = 300) -> str:
    """``message`` cut to ``limit`` characters: jsonschema's messages quote whole values, however large."""
    return message if len(message) <= limit else message[:limit] + "…"


def canonical(schema: Any) -> str:
    """A canonical JSON text of ``schema``, to check each distinct schema once per load."""
    return json.dumps(thaw(schema), sort_keys=True, separators=(",", ":"), default=str)
