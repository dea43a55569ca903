"""Safe, positioned YAML: turn one file into plain JSON-like data plus the line and column of every node.

This is the only module that parses YAML. It drives PyYAML's event parser (libyaml when available) with its own
composer instead of a Loader, so it can refuse what a registry never needs and an attacker would use: every
explicit tag (``!!python/object``, ``!custom``, even ``!!str``), recursive aliases, alias expansion beyond a node
budget (billion laughs, and its variant that repeats one long string), nesting beyond a depth bound, duplicate keys,
non-string keys, several documents, numbers JSON cannot carry, and files over a size bound. Problems are collected,
not raised one at a time; only a syntax error or a blown bound stops the file. Timestamps and ``=`` are not resolved
(they stay strings) so the data stays JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import events as ev

from router.errors import Problem
from router.quoting import quote
from router.registry.containment import FileRefused, read_regular_file
from router.registry.limits import CHARS_PER_NODE, MAX_NODES, NodeBudget
from router.registry.model import SourceLocation
from router.registry.yamlscalars import plain_value

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
# Positions are recorded while parsing down to this depth (services.NAME.tasks.TYPE.payload); deeper ones, inside
# payload schemas and the like, only when a problem needs one: the file is then parsed again with full recording.
RECORD_DEPTH = 5

Path = tuple[str | int, ...]
Position = tuple[int, int]

_EventParser: Callable[[str], Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KIND = {bool: "a boolean", int: "an integer", float: "a number", type(None): "null"}


@dataclass
class YamlDocument:
    """One parsed file: its data and where each node of it is (1-based line and column)."""

    file: str
    data: Any
    # PyYAML marks (0-based .line and .column), converted only when a problem needs them.
    values: dict[Path, Any] = field(default_factory=dict)
    keys: dict[Path, Any] = field(default_factory=dict)
    text: str | None = field(default=None, repr=False)  # kept until deep positions have been recorded

    def locate(self, path: Path, *, key: bool = False) -> Position:
        """Position of the node at ``path`` (of its key when ``key``), else of its nearest recorded ancestor.

        Nodes reached through an alias or a merge key are not recorded one by one: they resolve to the alias.
        """
        if len(path) >= RECORD_DEPTH and self.text is not None and path not in self.values:
            self._record_everything()
        found = self.keys.get(path) if key else None
        while found is None and path:
            found = self.values.get(path)
            path = path[:-1]
        found = found or self.values.get(())
        return (found.line + 1, found.column + 1) if found is not None else (1, 1)

    def _record_everything(self) -> None:
        composer = _Composer(self.text or "", self.file, record_depth=MAX_DEPTH + 1, used=0, limit=MAX_NODES)
        composer.compose()
        self.values, self.keys, self.text = composer.doc.values, composer.doc.keys, None

    def location(self, path: Path, *, key: bool = False) -> SourceLocation:
        """Where the node at ``path`` (its key when ``key``) was declared, for specs and later messages."""
        line, column = self.locate(path, key=key)
        return SourceLocation(self.file, line, column)

    def problem(self, path: Path, message: str, code: str, *, key: bool = False) -> Problem:
        """A Problem located at ``path`` of this document."""
        line, column = self.locate(path, key=key)
        return Problem(self.file, line, column, message, code)


class _Fatal(Exception):
    """Stops composing one file: the rest of it cannot be trusted or would cost too much."""

    def __init__(self, mark: Any, message: str, code: str) -> None:
        super().__init__(message)
        self.position: Position = (mark.line + 1, mark.column + 1)
        self.message = message
        self.code = code


def read_yaml(path: str, budget: NodeBudget | None = None) -> tuple[YamlDocument | None, list[Problem]]:
    """Read and parse the YAML file at ``path`` (named ``path`` in problems); only a regular file is read, and its
    nodes are spent from ``budget`` (default: a fresh one).

    Returns:
        The document (None when the file could not be read or parsed at all) and every problem found.
    """
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES)
    except FileRefused as exc:
        fix = {"file-missing": "; check the path", "file-too-large": "; split it with `include:`"}.get(exc.code, "")
        return None, [Problem(path, 1, 1, f"file {exc.reason}{fix}", exc.code)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(path, line, column, "file is not valid UTF-8; save it as UTF-8", "file-encoding")]
    return parse_yaml(text, path, budget)


def parse_yaml(text: str, file: str, budget: NodeBudget | None = None) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse YAML ``text`` as if read from ``file``; see :func:`read_yaml`."""
    budget = budget or NodeBudget()
    composer = _Composer(text, file, record_depth=RECORD_DEPTH, used=budget.used, limit=budget.limit)
    try:
        composer.doc.data = composer.compose()
        budget.used = composer.nodes
    except _Fatal as exc:
        budget.used = max(budget.used, composer.nodes)
        line, column = exc.position
        return None, [*composer.problems, Problem(file, line, column, exc.message, exc.code)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        return None, [*composer.problems, Problem(file, line, column, f"YAML syntax error: {what}", "yaml-syntax")]
    except yaml.YAMLError as exc:  # ReaderError: a character YAML forbids; it knows an offset, not a mark
        index = int(getattr(exc, "position", 0) or 0)
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
        char = getattr(exc, "character", None)
        what = f"character {quote(char)}" if isinstance(char, str) else "a character"
        message = f"{what} is not allowed in YAML (control characters are not); remove it"
        return None, [*composer.problems, Problem(file, line, column, message, "yaml-syntax")]
    return composer.doc, composer.problems


class _Composer:
    """Builds data from parser events, recording positions and enforcing the bounds."""

    def __init__(self, text: str, file: str, record_depth: int, used: int, limit: int) -> None:
        self.parser = _EventParser(text)
        self.doc = YamlDocument(file, None, text=text if record_depth <= MAX_DEPTH else None)
        self.record_depth = record_depth
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        self.plain_cache: dict[str, Any] = {}
        self.open_anchors: set[str] = set()
        self.nodes = used
        self.limit = limit

    def compose(self) -> Any:
        get = self.parser.get_event
        get()  # StreamStart
        first = get()
        if type(first) is ev.StreamEndEvent:
            return None
        data, _, _ = self.node(get(), (), 1)  # after DocumentStart
        get()  # DocumentEnd
        extra = get()
        if type(extra) is not ev.StreamEndEvent:
            self.add(extra.start_mark, "a registry file holds one YAML document; remove the `---` and "
                     "what follows, or move it to its own file", "yaml-multiple-documents")
        return data

    def add(self, mark: Any, message: str, code: str) -> None:
        self.problems.append(Problem(self.doc.file, mark.line + 1, mark.column + 1, message, code))

    def node(self, event: Any, path: Path | None, depth: int) -> tuple[Any, int, int]:
        """Compose the node that starts with ``event`` at ``path`` (None: below the recording depth).

        Returns (value, height, expanded size).
        """
        mark = event.start_mark
        if path is not None:
            self.doc.values[path] = mark
        kind = type(event)
        if kind is ev.ScalarEvent and event.tag is None and event.anchor is None:  # the common case, kept fast
            weight = 1 + len(event.value) // CHARS_PER_NODE
            self.nodes += weight
            if self.nodes > self.limit:
                self.count(0, mark)
            if event.implicit[0]:
                value = self.plain_cache.get(event.value, _MISSING)
                return (self.plain(event.value, mark) if value is _MISSING else value), 1, weight
            return event.value, 1, weight
        if kind is ev.AliasEvent:
            return self.alias(event, depth)
        if event.tag is not None:
            self.add(mark, f"YAML tag {quote(event.tag)} is not allowed in a registry; remove it (only plain "
                     "YAML: mappings, lists, strings, numbers, booleans, null)", "yaml-tag")
        if depth > MAX_DEPTH:
            raise _Fatal(mark, f"nesting deeper than {MAX_DEPTH} levels; flatten this structure", "yaml-too-deep")
        anchor = event.anchor
        if anchor is not None:
            self.open_anchors.add(anchor)
        if kind is ev.ScalarEvent:
            weight = 1 + len(event.value) // CHARS_PER_NODE
            self.count(weight, mark)
            result: tuple[Any, int, int] = (
                self.plain(event.value, mark) if event.implicit[0] else event.value, 1, weight)
        elif kind is ev.SequenceStartEvent:
            self.count(1, mark)
            result = self.sequence(path, depth)
        else:
            self.count(1, mark)
            result = self.mapping(path, depth)
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.anchors[anchor] = result
        return result

    def plain(self, text: str, mark: Any) -> Any:
        """The value of an untagged plain scalar, memoised: registries repeat the same few scalars. A refused
        number is reported at ``mark`` and never memoised, so each place it is written is reported."""
        value = self.plain_cache.get(text, _MISSING)
        if value is _MISSING:
            value, refused = plain_value(text)
            if refused is None:
                self.plain_cache[text] = value
            else:
                self.add(mark, refused, "yaml-number")
        return value

    def alias(self, event: Any, depth: int) -> tuple[Any, int, int]:
        found = self.anchors.get(event.anchor)
        if found is None:
            if event.anchor in self.open_anchors:
                raise _Fatal(event.start_mark, f"alias *{event.anchor[:80]} refers to the node that contains it "
                             "(a recursive structure); registries must be trees", "yaml-recursive-alias")
            raise _Fatal(event.start_mark, f"alias *{event.anchor[:80]} has no anchor &{event.anchor[:80]} before it",
                         "yaml-syntax")
        _, height, size = found
        if depth + height - 1 > MAX_DEPTH:
            raise _Fatal(event.start_mark, f"alias *{event.anchor[:80]} nests deeper than {MAX_DEPTH} levels",
                         "yaml-too-deep")
        self.count(size, event.start_mark)
        return found

    def count(self, size: int, mark: Any) -> None:
        self.nodes += size
        if self.nodes > self.limit:
            raise _Fatal(mark, f"this file takes the registry past {self.limit} nodes (aliases expanded, a string "
                         f"counting one node per {CHARS_PER_NODE} characters): an alias bomb, or more than a "
                         "registry needs; use fewer aliases of long or nested values", "yaml-alias-bomb")

    def sequence(self, path: Path | None, depth: int) -> tuple[Any, int, int]:
        items: list[Any] = []
        height, size = 0, 1
        get = self.parser.get_event
        record = path is not None and depth < self.record_depth
        while True:
            event = get()
            if type(event) is ev.SequenceEndEvent:
                break
            value, h, s = self.node(event, (*path, len(items)) if record and path is not None else None, depth + 1)
            items.append(value)
            size += s
            height = max(height, h)
        return items, height + 1, size

    def mapping(self, path: Path | None, depth: int) -> tuple[Any, int, int]:
        result: dict[str, Any] = {}
        merges: list[tuple[Any, Path | None, Any]] = []
        height, size = 0, 1
        get, keys, cache = self.parser.get_event, self.doc.keys, self.plain_cache
        record = path is not None and depth < self.record_depth
        child: Path | None = None
        while True:
            event = get()
            if type(event) is ev.MappingEndEvent:
                break
            if type(event) is ev.ScalarEvent and event.tag is None and event.anchor is None and (
                    not event.implicit[0] or (type(cache.get(event.value)) is str and event.value != "<<")):
                key: Any = event.value  # the common case: a quoted key, or a plain one already seen as a string
            else:
                key = self.key(event, path if record else None, depth)
            if record and path is not None:
                child = (*path, key if isinstance(key, str) else "<<" if key is _MERGE_KEY else "<key>")
            if isinstance(key, str):
                if len(key) >= CHARS_PER_NODE:  # see CHARS_PER_NODE: a long key costs like a long value
                    self.count(len(key) // CHARS_PER_NODE, event.start_mark)
                    size += len(key) // CHARS_PER_NODE
                if key in result:
                    self.duplicate(event, keys.get(child) if child is not None else None)
                if child is not None:
                    keys[child] = event.start_mark
            value, h, s = self.node(get(), child, depth + 1)
            size += s
            height = max(height, h)
            if key is _MERGE_KEY:
                merges.append((value, child, event.start_mark))
            elif key is not None:
                result[key] = value
        for value, where, mark in merges:
            self.merge(result, value, path, where, mark)
        return result, height + 1, size

    def duplicate(self, event: Any, first: Any) -> None:
        earlier = f"first at line {first.line + 1}" if first is not None else "also earlier in this mapping"
        self.add(event.start_mark, f"duplicate key {quote(event.value)} ({earlier}); YAML keeps only the last one, so "
                 "remove or rename one of them", "yaml-duplicate-key")

    def key(self, event: Any, path: Path | None, depth: int) -> Any:
        """Read one mapping key: a string, the merge marker, or None when it is unusable (problem recorded)."""
        mark = event.start_mark
        if type(event) is not ev.ScalarEvent:
            self.add(mark, "mapping keys must be plain strings, not lists, mappings or aliases", "yaml-key-type")
            self.node(event, None if path is None else (*path, "<key>"), depth + 1)
            return None
        if event.tag is not None:
            self.add(mark, f"YAML tag {quote(event.tag)} is not allowed in a registry; remove it", "yaml-tag")
        if event.anchor is not None:
            self.anchors[event.anchor] = (event.value, 1, 1 + len(event.value) // CHARS_PER_NODE)
        if event.implicit[0] and event.tag is None and event.value == "<<":
            return _MERGE_KEY
        value: Any = event.value
        if event.implicit[0] and event.tag is None:
            value = self.plain_cache.get(event.value, _MISSING)
            if value is _MISSING:
                value, refused = plain_value(event.value)
                if refused is None:
                    self.plain_cache[event.value] = value
                else:  # `.nan:` as a key: say it is not a string, which is the fix
                    value = float("nan")
        if not isinstance(value, str):
            self.add(mark, f"key {quote(event.value)} is read as {_KIND.get(type(value), 'a non-string')}, but "
                     f"keys must be strings: quote it ('{event.value[:80]}')", "yaml-key-type")
            value = event.value
        return value

    def merge(self, result: dict[str, Any], value: Any, path: Path | None, where: Path | None, mark: Any) -> None:
        """Apply a ``<<`` merge key: keys written in the mapping win, then earlier merged mappings."""
        sources = value if isinstance(value, list) else [value]
        for source in sources:
            if not isinstance(source, dict):
                self.add(mark, "a `<<` merge key takes a mapping or a list of mappings (usually an alias like "
                         "*defaults)", "yaml-merge")
                return
            for k, v in source.items():
                if k not in result:
                    result[k] = v
                    if path is not None and where is not None:
                        self.doc.values.setdefault((*path, k), self.doc.values[where])


class _MergeKey:
    """Marks a ``<<`` key; never a real key."""


_MERGE_KEY = _MergeKey()
_MISSING = object()
