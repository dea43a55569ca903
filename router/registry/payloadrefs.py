"""Payload schemas as a registry declares them: inline, or a ``$ref`` to a JSON file in the registry's tree. Each is
checked against its metaschema, for references that point nowhere or loop, and by one trial run (once per distinct
schema per load), then frozen; a broken one is reported at the task's ``payload:`` and replaced by
``{"type": "object"}`` so the rest of the load goes on."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NoReturn

from router.errors import Problem
from router.quoting import quote
from router.registry import payloads
from router.registry.containment import FileRefused, RegistryTree, read_regular_file
from router.registry.limits import CHARS_PER_NODE, NodeBudget
from router.registry.messages import where
from router.registry.metaschema import certainly_valid
from router.registry.schemarefs import ref_problems
from router.registry.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, Path, YamlDocument

DEFAULT_PAYLOAD_SCHEMA: Mapping[str, Any] = MappingProxyType({"type": "object"})

Verdict = list[tuple[tuple[str | int, ...], str]]
#: Nodes of payload schemas (distinct ones, counted once) that one load checks with jsonschema's own metaschema:
#: the schemas the fast check (:mod:`~router.registry.metaschema`) cannot vouch for. That check costs about 0.2 ms a
#: subschema (2020-12 resolves a $dynamicRef at each), so this bound keeps it to a second or two.
SLOW_CHECK_NODES = 25_000
# Refusals of a $ref file that keep their own code (the rest are `payload-schema`): the file is not one to read.
_OWN_CODES = frozenset({"file-outside", "file-not-regular"})


class PayloadSchemas:
    """Resolves and checks the payload schemas of one load; remembers the task types whose schema is broken."""

    def __init__(self, problems: list[Problem], tree: RegistryTree, budget: NodeBudget) -> None:
        self.problems = problems
        self.tree = tree
        self.budget = budget
        self.ref_files: dict[str, tuple[Any, str | None, str]] = {}
        self.verdicts: dict[str, Verdict] = {}
        self.slow_budget = NodeBudget(limit=SLOW_CHECK_NODES)
        self.bad_schema: set[str] = set()

    def payload_schema(self, doc: YamlDocument, path: Path, task_type: str, raw: Any) -> Any:
        """The frozen payload schema declared at ``path`` of ``doc`` for ``task_type``."""
        if raw is None:
            return DEFAULT_PAYLOAD_SCHEMA
        if isinstance(raw, bool):
            return raw
        if not isinstance(raw, dict):
            return DEFAULT_PAYLOAD_SCHEMA
        ref = raw.get("$ref")
        if len(raw) == 1 and isinstance(ref, str) and not ref.startswith("#"):
            schema, error, code = self.ref_file(doc, ref)
            if error is None:
                error = "; ".join(f"{where(p) if p else 'top level'}: {m}" for p, m in self.verdict(schema)) or None
                error = error and (f"payload schema {quote(ref)} of {quote(task_type)} is not a valid JSON Schema: "
                                   f"{error}")
            if error is not None:
                self.bad_schema.add(task_type)
                self.problems.append(doc.problem((*path, "$ref"), error, code))
                return DEFAULT_PAYLOAD_SCHEMA
            return payloads.freeze(schema)
        for where_in, message in self.verdict(raw):
            self.bad_schema.add(task_type)
            self.problems.append(doc.problem((*path, *where_in), f"payload schema of {quote(task_type)} is not "
                                             f"a valid JSON Schema: {message}", "payload-schema"))
        return payloads.freeze(raw)

    def verdict(self, schema: Any) -> Verdict:
        """The metaschema, reference and evaluation problems of ``schema``, computed once per distinct schema."""
        refs: list[str] = []
        if certainly_valid(schema, refs=refs):
            # Only local pointers and keywords checked exactly: the static reference check is complete here.
            return [(tuple(p), m) for p, m in ref_problems(schema)] if refs else []
        key = payloads.canonical(schema)
        found = self.verdicts.get(key)
        if found is None and not self.slow_budget.take(_nodes(schema, MAX_DEPTH + 1) or 0):
            return [((), f"it needs jsonschema's full metaschema check (it uses a keyword or dialect the fast check "
                         f"does not cover), and such schemas in this registry already total {self.slow_budget.used} "
                         f"of the {SLOW_CHECK_NODES} nodes one load checks that way; share or shrink them, or keep "
                         "to plain 2020-12 keywords")]
        if found is None:
            found = [(tuple(e.path), payloads.schema_error_message(e)) for e in payloads.schema_errors(schema)]
            if not found:
                found = [(tuple(p), m) for p, m in ref_problems(schema)]
            if not found:
                failure = payloads.evaluation_problem(schema)
                found = [((), f"it {failure}; fix the schema")] if failure else []
            self.verdicts[key] = found
        return found

    def ref_file(self, doc: YamlDocument, ref: str) -> tuple[Any, str | None, str]:
        """The JSON Schema in file ``ref`` (relative to ``doc``), or why it cannot be used and the problem's code;
        cached per file."""
        if "#" in ref:
            return None, f"$ref {quote(ref)}: point at a whole schema file (no '#fragment'), or inline the schema", \
                "payload-schema"
        file = os.path.normpath(os.path.join(os.path.dirname(doc.file), ref))
        found = self.ref_files.get(file)
        if found is None:
            found = self.ref_files[file] = self._read(file, doc.file)
        return found

    def _read(self, file: str, referrer: str) -> tuple[Any, str | None, str]:
        try:
            self.tree.check(file)
            schema = _read_json_schema(file)
            nodes = _nodes(schema, MAX_DEPTH)
            if nodes is None:
                raise FileRefused("payload-schema", f"payload schema file {quote(file, 200)} nests deeper than "
                                                    f"{MAX_DEPTH} levels; flatten it")
            if not self.budget.take(nodes):
                raise FileRefused("payload-schema", f"payload schema file {quote(file, 200)} takes the registry past "
                                                    f"{self.budget.limit} nodes, more than a registry needs; shrink "
                                                    "it, or share one schema file between tasks")
            return schema, None, "payload-schema"
        except FileRefused as exc:
            code = exc.code if exc.code in _OWN_CODES else "payload-schema"
            if exc.code == "file-missing":
                return None, f"payload schema file {quote(file, 200)} not found ($ref paths are relative to " \
                             f"{referrer!r})", code
            if exc.code == "payload-schema":  # a message of its own, about the file's content
                return None, exc.reason, code
            return None, f"payload schema file {quote(file, 200)} {exc.reason}", code


def _read_json_schema(file: str) -> Any:
    """The schema in ``file``; raises FileRefused saying why it cannot be used, never quoting the file's text."""
    raw = read_regular_file(file, MAX_FILE_BYTES)
    name = quote(file, 200)
    try:
        schema = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise FileRefused("payload-schema", f"payload schema file {name} is not UTF-8 (byte {exc.start}); save it "
                                            "as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:  # its message names the position only, never the text
        raise FileRefused("payload-schema", f"{file}:{exc.lineno}:{exc.colno}: payload schema is not valid JSON "
                                            f"({exc.msg}); a $ref file must hold a JSON Schema") from None
    except RecursionError:
        raise FileRefused("payload-schema", f"payload schema file {name} nests deeper than {MAX_DEPTH} levels") \
            from None
    except ValueError as exc:  # an integer over Python's digit limit, or NaN / Infinity
        raise FileRefused("payload-schema", f"payload schema file {name} is not usable JSON ({str(exc)[:120]})") \
            from None
    if not isinstance(schema, (dict, bool)):
        raise FileRefused("payload-schema", f"payload schema file {name} must hold a JSON object (a schema), not "
                                            f"{type(schema).__name__}")
    return schema


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number; give a finite number")


def _nodes(node: Any, max_depth: int) -> int | None:
    """The nodes of JSON data as the YAML budget counts them, or None when it nests deeper than ``max_depth``
    (jsonschema recurses once or more per level, so depth must stay bounded like a YAML file's)."""
    total, level = 0, [node]
    for _ in range(max_depth + 1):
        total += len(level)
        nested: list[Any] = []
        for n in level:
            if isinstance(n, dict):
                total += sum(len(k) // CHARS_PER_NODE for k in n)
                nested.extend(n.values())
            elif isinstance(n, list):
                nested.extend(n)
            elif isinstance(n, str):
                total += len(n) // CHARS_PER_NODE
        if not nested:
            return total
        level = nested
    return None
