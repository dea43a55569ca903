"""The fast payload-schema pre-check never vouches for a schema that jsonschema's metaschema check rejects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from router.registry.metaschema import DIALECT, certainly_valid

leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2), st.text(max_size=3))
names = st.text(alphabet="abc", max_size=2)


def value_for(key: str, inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly metaschema-valid values for ``key``, with the near misses the fast check must not accept."""
    counts = st.one_of(st.integers(-2, 5), st.floats(-1, 3), st.booleans(), st.just("1"))
    numbers = st.one_of(st.integers(-5, 5), st.floats(-5, 5), st.just(float("nan")), st.booleans(), st.just("1"))
    schema_list = st.lists(inner, max_size=3)
    table: dict[str, st.SearchStrategy[Any]] = {
        "type": st.sampled_from(["object", "string", "integer", "null", ["string", "null"], "strin", [],
                                 ["a", "a"], ["string", "string"], 3]),
        "properties": st.dictionaries(names, inner, max_size=3), "$defs": st.dictionaries(names, inner, max_size=2),
        "definitions": st.dictionaries(names, inner, max_size=2),
        "dependentSchemas": st.dictionaries(names, inner, max_size=2),
        "required": st.one_of(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3), leaf),
        "dependentRequired": st.dictionaries(names, st.one_of(st.lists(st.sampled_from(["a", "b"]), max_size=2),
                                                              leaf), max_size=2),
        "enum": st.one_of(st.lists(leaf, max_size=3), leaf), "examples": st.one_of(st.lists(leaf, max_size=2), leaf),
        "const": leaf, "default": leaf,
        "minimum": numbers, "maximum": numbers, "exclusiveMinimum": numbers, "exclusiveMaximum": numbers,
        "multipleOf": numbers, "minLength": counts, "maxLength": counts, "minItems": counts, "maxItems": counts,
        "minProperties": counts, "minContains": counts,
        "uniqueItems": st.one_of(st.booleans(), st.integers(0, 1)), "deprecated": st.one_of(st.booleans(), leaf),
        "pattern": st.sampled_from(["^a+$", "(", "[a-z]", "\\d", "a{2}", "[", 3]),
        "format": st.one_of(st.sampled_from(["email", "date"]), leaf), "title": leaf, "description": leaf,
        "$comment": leaf,
        "$ref": st.sampled_from(["#", "#/$defs/a", "other.json", "#/a b", "#/$defs/%", 3]),
        "$schema": st.sampled_from([DIALECT, "http://json-schema.org/draft-07/schema#", 1]),
        "$id": st.sampled_from(["urn:x", "a", "#x", 1]), "$anchor": st.sampled_from(["a", "#x", "1a", 1]),
        "patternProperties": st.dictionaries(st.sampled_from(["^a", "(", "b"]), inner, max_size=2),
        "allOf": schema_list, "anyOf": schema_list, "oneOf": schema_list, "prefixItems": schema_list,
    }
    return table.get(key, st.one_of(inner, leaf))


KEYWORDS = [
    "type", "properties", "$defs", "definitions", "dependentSchemas", "required", "dependentRequired", "enum",
    "examples", "const", "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "minContains", "uniqueItems", "deprecated",
    "pattern", "format", "title", "description", "$comment", "$ref", "$schema", "$id", "$anchor", "patternProperties",
    "allOf", "anyOf", "oneOf", "prefixItems", "items", "additionalProperties", "not", "if", "then", "contains",
    "propertyNames", "unevaluatedProperties", "x-custom", "unknownKeyword",
]


def schemas() -> st.SearchStrategy[Any]:
    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.lists(st.sampled_from(KEYWORDS), unique=True, max_size=4).flatmap(
            lambda keys: st.fixed_dictionaries({k: value_for(k, inner) for k in keys}))

    return st.recursive(st.one_of(st.booleans(), st.just({}), st.just([])), extend, max_leaves=12)


@settings(max_examples=150, deadline=None, database=None)
@given(schemas())
def test_certainly_valid_implies_metaschema_valid(schema: Any) -> None:
    """Whenever the fast check says "valid", jsonschema's own check_schema agrees."""
    if certainly_valid(schema):
        Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("schema", [
    {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer", "minimum": 1}},
     "additionalProperties": False},
    {"$schema": DIALECT, "type": "array", "items": {"enum": [1, "a", None]}, "minItems": 0},
    {"anyOf": [{"type": "string", "pattern": "^[A-Z]{3}$"}, {"const": None}], "$defs": {"x": True}},
    {"$ref": "#/$defs/x", "$defs": {"x": {"type": ["string", "null"]}}, "x-vendor": {"anything": [1]}},
])
def test_common_schemas_take_the_fast_path(schema: Any) -> None:
    """Everyday payload schemas are vouched for without the slow check."""
    assert certainly_valid(schema)
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("schema", [
    {"type": "strin"}, {"required": "a"}, {"minimum": "1"}, {"pattern": "("}, {"properties": {"a": 3}},
    {"allOf": []}, {"$schema": "http://json-schema.org/draft-07/schema#"}, {"$id": "urn:x"}, [],
])
def test_doubtful_schemas_fall_back_to_the_real_check(schema: Any) -> None:
    """Invalid schemas, other dialects and URI-valued keywords are left to jsonschema."""
    assert not certainly_valid(schema)
    if schema in ({"type": "strin"}, {"required": "a"}, {"pattern": "("}, [], {"allOf": []}):
        with pytest.raises(SchemaError):
            Draft202012Validator.check_schema(schema)
