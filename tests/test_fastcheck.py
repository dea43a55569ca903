"""The fast payload check may only ever say "valid" when jsonschema agrees (it never decides "invalid")."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import router
from router.registry.fastcheck import compile_fast
from router.registry.payloads import thaw

SCALAR_TYPES = ["string", "integer", "number", "boolean", "null"]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False), st.text(max_size=4),
    st.sampled_from([0, 1, 1.0, 0.0, True, False, "", "a"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcd"), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def leaf_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if draw(st.booleans()):
        kinds = draw(st.lists(st.sampled_from([*SCALAR_TYPES, "object", "array"]), min_size=1, max_size=2))
        schema["type"] = kinds[0] if len(kinds) == 1 else kinds
    if draw(st.booleans()):
        schema[draw(st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]))] = draw(
            st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False)))
    if draw(st.booleans()):
        schema[draw(st.sampled_from(["minLength", "maxLength"]))] = draw(st.integers(0, 3))
    if draw(st.integers(0, 4)) == 0:
        schema["enum"] = draw(st.lists(json_scalars, min_size=1, max_size=3))
    if draw(st.integers(0, 6)) == 0:
        schema["const"] = draw(json_scalars)
    return schema


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    props = draw(st.dictionaries(st.sampled_from("abcd"), leaf_schemas(), max_size=4))
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = draw(st.lists(st.sampled_from("abcd"), max_size=3, unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(st.booleans())
    return schema


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=object_schemas(), payload=json_values)
def test_fast_check_never_accepts_what_jsonschema_rejects(schema: dict[str, Any], payload: Any) -> None:
    fast = compile_fast(schema)
    assert fast is not None, "every generated schema is inside the fast subset"
    if fast(payload):
        assert jsonschema.Draft202012Validator(schema).is_valid(payload), (schema, payload)


@pytest.mark.parametrize(("schema", "payload"), [
    ({"type": "object", "required": ["i", "ts"], "properties": {"i": {"type": "integer"}, "ts": {"type": "number"}},
      "additionalProperties": False}, {"i": 3, "ts": 1.5}),
    ({"type": "object", "properties": {"locale": {"type": "string", "enum": ["en", "fr"]}}}, {"locale": "fr"}),
    ({"type": "object", "properties": {"n": {"type": ["integer", "null"], "minimum": 1}}}, {"n": None}),
    ({"type": "object", "properties": {"s": {"type": "string", "minLength": 1, "maxLength": 3}}}, {"s": "abc"}),
])
def test_fast_path_says_yes_to_valid_payloads_of_simple_schemas(schema: dict[str, Any], payload: Any) -> None:
    # Safety needs only "yes implies valid"; speed needs the fast path to say yes to ordinary valid payloads.
    fast = compile_fast(schema)
    assert fast is not None and fast(payload)
    assert jsonschema.Draft202012Validator(schema).is_valid(payload)


@pytest.mark.parametrize("schema", [
    {"type": "object", "patternProperties": {"^a": {}}},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}},
    {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"},
    {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}},
])
def test_schemas_outside_the_subset_get_no_fast_path(schema: dict[str, Any]) -> None:
    assert compile_fast(schema) is None


def test_bench_schema_uses_the_fast_path_and_the_guard_still_reports_violations() -> None:
    registry = router.load("benchmarks/bench_services.yaml")
    spec = registry.tasks["bench.task"]
    fast = compile_fast(thaw(spec.payload_schema))
    assert fast is not None and fast({"i": 1, "ts": 2.5})
    assert not fast({"i": True, "ts": 2.5})  # bool is not an integer to JSON Schema
    guard = router.Client(registry, url="redis://127.0.0.1:1/0").guard  # no I/O: the guard is pure
    with pytest.raises(router.PayloadInvalid) as err:
        guard.route("bench.task", {"i": "1", "ts": 2.5})
    assert err.value.violations[0].path == "$.i"
