"""The references inside one payload schema, checked without running it.

A payload schema must be self-contained: every ``$ref``, ``$dynamicRef`` and ``$recursiveRef`` must point inside it,
at a JSON pointer that exists or an anchor (``$anchor``, ``$dynamicAnchor``, a draft-7 ``$id: "#name"``) that is
declared. And no chain of references may come back to where it started while applying to the same value:
``{$ref: "#"}``, or ``#/$defs/a`` whose ``allOf`` refers back to ``#/$defs/a``, sends jsonschema round the loop until
Python's stack runs out, at every enqueue. A loop that descends into the payload on the way (``items: {$ref: "#"}``
for a tree) is ordinary recursion and is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast
from urllib.parse import unquote

SchemaPath = tuple[str | int, ...]

_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
# Keywords whose value is plain data, never a subschema: nothing inside them is a reference or an anchor.
_DATA = frozenset({"const", "enum", "default", "examples"})
# Subschemas applied to the very value the keyword's schema applies to (not to a part of it).
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")


def ref_problems(schema: Any) -> list[tuple[SchemaPath, str]]:
    """(path in the schema, message) for each reference that points nowhere or outside, and for each loop.

    Schemas with a nested ``$id`` are not checked: their references resolve against other base URIs.
    """
    index = _Index(schema)
    if index.nested_id:
        return []
    found: list[tuple[SchemaPath, str]] = []
    for where, ref in index.refs:
        if not ref.startswith("#"):
            found.append((where, f"{where[-1]} {ref[:200]!r} points outside this schema; payload schemas must be "
                                 "self-contained (inline it, or move it under $defs and use '#/$defs/...')"))
        elif (target := index.target(ref)) is None:
            what = "no such JSON pointer" if ref == "#" or ref.startswith("#/") else "no such $anchor or $dynamicAnchor"
            found.append((where, f"{where[-1]} {ref[:200]!r} points to nothing in this schema ({what}); fix it"))
        elif not isinstance(node := index.node(target), (Mapping, bool)):
            found.append((where, f"{where[-1]} {ref[:200]!r} points at {type(node).__name__ + ' data'}, not at a "
                                 "schema (a mapping or true/false); point it at a schema, e.g. under $defs"))
    if not found:
        found += index.loops()
    return found


class _Index:
    """One walk over a schema: its references, its anchors, and whether it nests another resource."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.refs: list[tuple[SchemaPath, str]] = []
        self.anchors: dict[str, SchemaPath] = {}
        self.nested_id = False
        self._walk(schema, ())

    def _walk(self, node: Any, path: SchemaPath) -> None:
        # Iterative: an alias-built schema can be wide, and a $ref file can nest as deep as the loader allows.
        stack: list[tuple[Any, SchemaPath]] = [(node, path)]
        while stack:
            node, path = stack.pop()
            if isinstance(node, Mapping):
                for key, value in node.items():
                    if key in _REF_KEYWORDS and isinstance(value, str):
                        self.refs.append(((*path, key), value))
                    elif key in ("$anchor", "$dynamicAnchor") and isinstance(value, str):
                        self.anchors.setdefault(value, path)
                    elif key in ("$id", "id") and isinstance(value, str) and path:
                        if value.startswith("#"):  # draft 6/7: a plain-name fragment is an anchor
                            self.anchors.setdefault(value[1:], path)
                        elif key == "$id":
                            self.nested_id = True
                    elif key not in _DATA and isinstance(value, (Mapping, list, tuple)):
                        stack.append((value, (*path, key)))
            elif isinstance(node, (list, tuple)):
                stack.extend((value, (*path, i)) for i, value in enumerate(node))

    def target(self, ref: str) -> SchemaPath | None:
        """The path ``ref`` (a local reference) points at, or None when it points at nothing."""
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            return self.anchors.get(fragment)
        node, path = self.schema, cast(SchemaPath, ())
        for raw in fragment.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node, path = node[part], (*path, part)
            elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node, path = node[int(part)], (*path, int(part))
            else:
                return None
        return path

    def node(self, path: SchemaPath) -> Any:
        node = self.schema
        for part in path:
            node = node[part]
        return node

    def in_place(self, path: SchemaPath) -> Iterator[tuple[SchemaPath, SchemaPath | None]]:
        """The schemas applied to the same value as the one at ``path``: (their path, the reference's path when
        reached through one)."""
        node = self.node(path)
        if not isinstance(node, Mapping):
            return
        for key in _REF_KEYWORDS:
            ref = node.get(key)
            if isinstance(ref, str) and ref.startswith("#"):
                target = self.target(ref)
                if target is not None:
                    yield target, (*path, key)
        for key in _IN_PLACE_ONE:
            if key in node:
                yield (*path, key), None
        for key in _IN_PLACE_LIST:
            items = node.get(key)
            if isinstance(items, (list, tuple)):
                yield from (((*path, key, i), None) for i in range(len(items)))
        for key in _IN_PLACE_MAP:
            schemas = node.get(key)
            if isinstance(schemas, Mapping):
                yield from (((*path, key, name), None) for name, sub in schemas.items() if isinstance(sub, Mapping))

    def loops(self) -> list[tuple[SchemaPath, str]]:
        """A problem for each reference that closes a loop applying to one and the same value."""
        starts = [self.target(ref) for _, ref in self.refs]
        state: dict[SchemaPath, int] = {}  # 1: on the current chain, 2: explored
        found: list[tuple[SchemaPath, str]] = []
        for start in starts:
            if start is None or start in state:
                continue
            chain: list[tuple[SchemaPath, SchemaPath | None]] = [(start, None)]
            stack = [self.in_place(start)]
            state[start] = 1
            while stack:
                step = next(stack[-1], None)
                if step is None:
                    stack.pop()
                    state[chain.pop()[0]] = 2
                    continue
                nxt, via = step
                if state.get(nxt) == 1:
                    found.append(self._loop_problem(chain, nxt, via))
                elif nxt not in state:
                    state[nxt] = 1
                    chain.append((nxt, via))
                    stack.append(self.in_place(nxt))
        return found

    @staticmethod
    def _loop_problem(chain: list[tuple[SchemaPath, SchemaPath | None]], back: SchemaPath,
                      via: SchemaPath | None) -> tuple[SchemaPath, str]:
        paths = [p for p, _ in chain]
        cycle = [*paths[paths.index(back):], back]
        refs = [v for _, v in chain[paths.index(back) + 1:] if v is not None] + ([via] if via is not None else [])
        shown = " -> ".join("#" + "".join(f"/{p}" for p in step) for step in cycle[:8])
        return refs[0] if refs else back, (
            f"the schema refers to itself without descending into the payload ({shown}), so validating would "
            "never end; make the reference point at a part of the value (e.g. under `properties` or `items`) or "
            "remove it")
