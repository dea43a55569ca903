"""Payload schemas as a registry declares them: inline, or a ``$ref`` to a JSON file next to the registry. Each is
checked against its metaschema (once per distinct schema per load) and frozen; a broken one is reported at the
task's ``payload:`` and replaced by ``{"type": "object"}`` so the rest of the load goes on."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from router.errors import Problem
from router.registry import payloads
from router.registry.docschema import where
from router.registry.metaschema import certainly_valid
from router.registry.yamlsource import MAX_FILE_BYTES, Path, YamlDocument

DEFAULT_PAYLOAD_SCHEMA: Mapping[str, Any] = MappingProxyType({"type": "object"})


class PayloadSchemas:
    """Resolves and checks the payload schemas of one load; remembers the task types whose schema is broken."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.ref_files: dict[str, tuple[Any, str | None]] = {}
        self.verdicts: dict[str, list[tuple[tuple[str | int, ...], str]]] = {}
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
            schema, error = self.ref_file(doc, ref)
            if error is None:
                error = "; ".join(f"{where(p) if p else 'top level'}: {m}" for p, m in self.verdict(schema)) or None
                error = error and f"payload schema {ref!r} of {task_type!r} is not a valid JSON Schema: {error}"
            if error is not None:
                self.bad_schema.add(task_type)
                self.problems.append(doc.problem((*path, "$ref"), error, "payload-schema"))
                return DEFAULT_PAYLOAD_SCHEMA
            return payloads.freeze(schema)
        for where_in, message in self.verdict(raw):
            self.bad_schema.add(task_type)
            self.problems.append(doc.problem((*path, *where_in), f"payload schema of {task_type!r} is not a valid "
                                             f"JSON Schema: {message}", "payload-schema"))
        return payloads.freeze(raw)

    def verdict(self, schema: Any) -> list[tuple[tuple[str | int, ...], str]]:
        """The metaschema and $ref problems of ``schema``, computed once per distinct schema per load."""
        refs: list[str] = []
        if certainly_valid(schema, refs=refs):
            return [(tuple(p), m) for p, m in payloads.internal_ref_errors(schema)] if refs else []
        key = payloads.canonical(schema)
        found = self.verdicts.get(key)
        if found is None:
            found = [(tuple(e.path), payloads.schema_error_message(e)) for e in payloads.schema_errors(schema)]
            if not found:
                found = [(tuple(p), m) for p, m in payloads.internal_ref_errors(schema)]
            self.verdicts[key] = found
        return found

    def ref_file(self, doc: YamlDocument, ref: str) -> tuple[Any, str | None]:
        """The JSON Schema in file ``ref`` (relative to ``doc``), or why it cannot be used; cached per file."""
        file = os.path.normpath(os.path.join(os.path.dirname(doc.file), ref))
        if "#" in ref:
            return None, f"$ref {ref!r}: point at a whole schema file (no '#fragment'), or inline the schema"
        found = self.ref_files.get(file)
        if found is None:
            found = self.ref_files[file] = _read_json_schema(file, doc.file)
        return found


def _read_json_schema(file: str, referrer: str) -> tuple[Any, str | None]:
    try:
        if os.path.getsize(file) > MAX_FILE_BYTES:
            return None, f"payload schema file {file!r} is over {MAX_FILE_BYTES} bytes"
        with open(file, encoding="utf-8") as fh:
            schema = json.load(fh)
    except FileNotFoundError:
        return None, f"payload schema file {file!r} not found ($ref paths are relative to {referrer!r})"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read payload schema file {file!r}: {exc}"
    except json.JSONDecodeError as exc:
        return None, f"{file}:{exc.lineno}:{exc.colno}: payload schema is not valid JSON ({exc.msg})"
    except RecursionError:
        return None, f"payload schema file {file!r} nests too deeply"
    if not isinstance(schema, (dict, bool)):
        return None, f"payload schema file {file!r} must hold a JSON object (a schema), not {type(schema).__name__}"
    return schema, None
