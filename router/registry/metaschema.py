"""A fast, conservative pre-check of JSON Schema 2020-12 schemas against the 2020-12 metaschema.

jsonschema's own metaschema check costs about 1.5 ms per small schema (``$dynamicRef`` resolution across seven
vocabulary metaschemas); a fleet of 5,000 task types would spend seconds on it at every load. :func:`certainly_valid`
answers True only when every keyword the metaschema constrains is present in a form this module checks exactly
as the metaschema does; anything else (another dialect, ``$id``, ``$anchor``, a URI-valued keyword, any invalid
value) answers False, and the caller then runs the real check, which also produces the error messages. A property
test (tests/test_metaschema_fast.py) holds it to "True implies jsonschema's check_schema passes".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SIMPLE_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
# A JSON pointer fragment made of characters any URI-reference accepts: "#", "#/$defs/name".
_LOCAL_REF = re.compile(r"#(/[A-Za-z0-9_.~$\-]+)*")
_FORMATS = Draft202012Validator.FORMAT_CHECKER

# Every keyword the 2020-12 metaschema (all vocabularies) constrains; other keys are unconstrained annotations.
_CONSTRAINED = frozenset({
    "$anchor", "$comment", "$defs", "$dynamicAnchor", "$dynamicRef", "$id", "$recursiveAnchor", "$recursiveRef",
    "$ref", "$schema", "$vocabulary", "additionalProperties", "allOf", "anyOf", "const", "contains",
    "contentEncoding", "contentMediaType", "contentSchema", "default", "definitions", "dependencies",
    "dependentRequired", "dependentSchemas", "deprecated", "description", "else", "enum", "examples",
    "exclusiveMaximum", "exclusiveMinimum", "format", "if", "items", "maxContains", "maxItems", "maxLength",
    "maxProperties", "maximum", "minContains", "minItems", "minLength", "minProperties", "minimum", "multipleOf",
    "not", "oneOf", "pattern", "patternProperties", "prefixItems", "properties", "propertyNames", "readOnly",
    "required", "then", "title", "type", "unevaluatedItems", "unevaluatedProperties", "uniqueItems", "writeOnly",
})


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    # No float() of an int: a 400-digit count is a count (too large for a float, and jsonschema agrees).
    return _is_number(v) and (isinstance(v, int) or v.is_integer()) and v >= 0


def _is_string_array(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v) and len(set(v)) == len(v)


def _is_type(v: Any) -> bool:
    if isinstance(v, str):
        return v in _SIMPLE_TYPES
    return isinstance(v, list) and len(v) > 0 and all(isinstance(t, str) and t in _SIMPLE_TYPES for t in v) \
        and len(set(v)) == len(v)


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "type": _is_type,
    "enum": lambda v: isinstance(v, list),
    "const": lambda v: True,
    "default": lambda v: True,
    "examples": lambda v: isinstance(v, list),
    "title": lambda v: isinstance(v, str),
    "description": lambda v: isinstance(v, str),
    "$comment": lambda v: isinstance(v, str),
    "format": lambda v: isinstance(v, str),
    "contentEncoding": lambda v: isinstance(v, str),
    "contentMediaType": lambda v: isinstance(v, str),
    "deprecated": lambda v: isinstance(v, bool),
    "readOnly": lambda v: isinstance(v, bool),
    "writeOnly": lambda v: isinstance(v, bool),
    "uniqueItems": lambda v: isinstance(v, bool),
    "pattern": lambda v: isinstance(v, str) and _FORMATS.conforms(v, "regex"),
    "multipleOf": lambda v: _is_number(v) and v > 0,
    "minimum": _is_number, "maximum": _is_number, "exclusiveMinimum": _is_number, "exclusiveMaximum": _is_number,
    "minLength": _is_count, "maxLength": _is_count, "minItems": _is_count, "maxItems": _is_count,
    "minProperties": _is_count, "maxProperties": _is_count, "minContains": _is_count, "maxContains": _is_count,
    "required": _is_string_array,
    "dependentRequired": lambda v: isinstance(v, dict) and all(_is_string_array(a) for a in v.values()),
}
# Keywords whose value is a schema, a mapping of names to schemas, or a non-empty list of schemas.
_SCHEMA = frozenset({"items", "contains", "additionalProperties", "propertyNames", "if", "then", "else", "not",
                     "contentSchema", "unevaluatedItems", "unevaluatedProperties"})
_SCHEMA_MAP = frozenset({"properties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})


def certainly_valid(schema: Any, *, root: bool = True, refs: list[str] | None = None) -> bool:
    """True only if ``schema`` surely passes the 2020-12 metaschema; False means "run the real check".

    Args:
        schema: the candidate schema (plain JSON data).
        root: whether this is the document root (the only place ``$schema`` may appear here).
        refs: when given, every ``$ref`` value met is appended, so callers resolve them only when present.
    """
    if schema is True or schema is False:
        return True
    if type(schema) is not dict:
        return False
    for key, value in schema.items():
        if key not in _CONSTRAINED:
            continue
        if key in _SCHEMA:
            ok = certainly_valid(value, root=False, refs=refs)
        elif key in _SCHEMA_MAP:
            ok = type(value) is dict and all(certainly_valid(s, root=False, refs=refs) for s in value.values())
        elif key in _SCHEMA_LIST:
            ok = type(value) is list and len(value) > 0 and all(
                certainly_valid(s, root=False, refs=refs) for s in value)
        elif key == "$schema":
            ok = root and value == DIALECT
        elif key == "$ref":
            ok = type(value) is str and _LOCAL_REF.fullmatch(value) is not None
            if refs is not None:
                refs.append(value)
        else:
            check = _CHECKS.get(key)
            ok = check is not None and check(value)
        if not ok:
            return False
    return True
