"""Minimal example payloads generated from a JSON Schema, for `router demo`.

Only the common keywords are understood (examples, default, local $ref, type, properties, required,
enum, const, format, minimum, minLength, items, minItems); the caller validates the result and skips a type
whose sample does not pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FORMATS = {
    "email": "demo@example.com",
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "uri": "https://example.com",
}


def sample(schema: Mapping[str, Any], seed: int = 0, root: Mapping[str, Any] | None = None) -> Any:
    """A small value that satisfies ``schema`` for the common keywords; ``seed`` varies numbers and strings.

    ``examples`` (or ``default``) in the schema win, so a schema with a ``pattern`` can say what fits it;
    local ``$ref``s (``#/$defs/...``) are followed.
    """
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return sample(target, seed, root)
    if schema.get("examples"):
        options = list(schema["examples"])
        return options[seed % len(options)]
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        options = list(schema["enum"])
        return options[seed % len(options)]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties", {})
        return {name: sample(props.get(name, {}), seed, root) for name in schema.get("required", list(props))}
    if kind == "array":
        return [sample(schema.get("items", {}), seed + i, root) for i in range(int(schema.get("minItems", 1)))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        high = schema.get("maximum", low + 1000)
        value = low + seed % max(1, int(high - low) + 1)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    if "format" in schema and schema["format"] in _FORMATS:
        return _FORMATS[schema["format"]]
    text = f"demo-{seed}"
    min_len = int(schema.get("minLength", 0))
    return text + "x" * max(0, min_len - len(text))
