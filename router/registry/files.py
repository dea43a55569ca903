"""Reading a registry's files: the root services.yaml and its includes, each parsed as positioned safe YAML and
checked against the services schema, with include cycles, duplicates, and files outside the registry's tree or not
regular files reported at the ``include:`` entry."""

from __future__ import annotations

import os

from router.errors import Problem
from router.quoting import quote
from router.registry.containment import FileRefused, RegistryTree
from router.registry.docschema import schema_problems
from router.registry.limits import NodeBudget
from router.registry.yamlsource import Path, YamlDocument, read_yaml

#: Files one registry may have (the root included), and includes nested inside includes: each file costs a read,
#: a parse and a schema check, and nothing real comes near either bound.
MAX_FILES = 1000
MAX_INCLUDE_DEPTH = 32
# Codes of a file that could not be read at all: reported at the include entry that names it.
_AT_THE_ENTRY = {"file-missing": "include-missing", "file-unreadable": "include-missing",
                 "file-not-regular": "file-not-regular"}


class RegistryFiles:
    """The documents of one registry, in reading order (the root first), and the problems found reading them."""

    def __init__(self, problems: list[Problem], tree: RegistryTree) -> None:
        self.problems = problems
        self.tree = tree
        self.budget = NodeBudget()
        self.docs: list[YamlDocument] = []
        self.included_from: dict[str, str] = {}

    def read(self, file: str, stack: tuple[tuple[str, str], ...] = (),
             origin: tuple[YamlDocument, Path] | None = None) -> None:
        """Read ``file`` (included from ``origin``, under the include ``stack``) and everything it includes."""
        if origin is not None:
            if len(stack) > MAX_INCLUDE_DEPTH or len(self.docs) >= MAX_FILES:
                what = f"{MAX_INCLUDE_DEPTH} levels deep" if len(stack) > MAX_INCLUDE_DEPTH else f"{MAX_FILES} files"
                self.problems.append(origin[0].problem(origin[1], f"includes go beyond {what}, the most a registry "
                                                       "may have; flatten or merge the included files",
                                                       "include-limit"))
                return
            try:
                self.tree.check(file)
            except FileRefused as exc:
                self.problems.append(origin[0].problem(origin[1], f"included file {quote(file, 200)} {exc.reason}",
                                                       _AT_THE_ENTRY.get(exc.code, exc.code)))
                return
        real = os.path.realpath(file)
        if origin is not None and not self.check_include(file, real, stack, origin):
            return
        doc, problems = read_yaml(file, self.budget)
        if origin is not None and doc is None and problems and problems[0].code in _AT_THE_ENTRY:
            reason = problems[0].message.removeprefix("file ").split(";")[0]
            problems = [origin[0].problem(origin[1], f"included file {quote(file, 200)} {reason}; paths are "
                                          f"relative to {origin[0].file!r}, fix the path or remove the entry",
                                          _AT_THE_ENTRY[problems[0].code])]
        self.problems += problems
        if doc is None:
            return
        self.included_from[real] = f"{origin[0].file}:{origin[0].locate(origin[1])[0]}" if origin else file
        self.docs.append(doc)
        schema_problems(doc, included=origin is not None, out=self.problems)
        includes = doc.data.get("include") if isinstance(doc.data, dict) else None
        for i, entry in enumerate(includes if isinstance(includes, list) else []):
            if isinstance(entry, str) and entry:
                child = os.path.normpath(os.path.join(os.path.dirname(file), entry))
                self.read(child, (*stack, (real, file)), (doc, ("include", i)))

    def check_include(self, file: str, real: str, stack: tuple[tuple[str, str], ...],
                      origin: tuple[YamlDocument, Path]) -> bool:
        doc, path = origin
        reals = [r for r, _ in stack]
        if real in reals:
            cycle = " -> ".join([name for _, name in stack[reals.index(real):]] + [file])
            self.problems.append(doc.problem(path, f"include cycle: {cycle}; remove one of these includes",
                                             "include-cycle"))
            return False
        if real in self.included_from:
            message = (f"{quote(file, 200)} is already included (from {self.included_from[real]}); include each "
                       "file once")
            self.problems.append(doc.problem(path, message, "include-duplicate"))
            return False
        return True
