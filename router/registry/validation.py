"""``router validate`` as a library call: load the registry, optionally import the handler sets, report.

The CLI only parses arguments and maps :class:`ValidationReport` to an exit code and output; CI tooling can call
:func:`validate` directly and get the same problems, or the same JSON document via :meth:`ValidationReport.to_json`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypedDict

from router.errors import ConfigError, Problem
from router.registry.appload import check_handlers
from router.registry.loader import load
from router.registry.model import Registry

#: Problem codes meaning the root file itself could not be read: a usage error, not an invalid registry.
UNREADABLE_CODES = frozenset({"file-missing", "file-unreadable", "file-not-regular"})


class ProblemJSON(TypedDict):
    """One problem in ``router validate --format json`` output."""

    file: str
    line: int
    column: int
    code: str
    message: str


class ReportJSON(TypedDict):
    """The whole ``router validate --format json`` document."""

    valid: bool
    problems: list[ProblemJSON]


@dataclass(frozen=True)
class ValidationReport:
    """What validating a registry found: the registry when it loaded, and every problem."""

    path: str
    registry: Registry | None
    problems: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        """True when there is nothing to fix."""
        return not self.problems

    @property
    def unreadable(self) -> bool:
        """True when the root file itself could not be read (the CLI's usage-error exit code)."""
        return any(p.code in UNREADABLE_CODES and p.file == self.path for p in self.problems)

    def to_json(self) -> ReportJSON:
        """The report as JSON-ready data."""
        return {
            "valid": self.valid,
            "problems": [
                {"file": p.file, "line": p.line, "column": p.column, "code": p.code, "message": p.message}
                for p in self.problems
            ],
        }

    def to_text(self) -> str:
        """One ``file:line:col: message [code]`` line per problem, then a summary line."""
        lines = [f"{p} [{p.code}]" for p in self.problems]
        if self.valid and self.registry is not None:
            r = self.registry
            lines.append(f"{self.path}: valid ({len(r.services)} services, {len(r.tasks)} task types, "
                         f"{len(r.cron)} cron entries)")
        else:
            lines.append(f"{self.path}: invalid, {len(self.problems)} problem(s)")
        return "\n".join(lines)


def validate(
    path: str | os.PathLike[str],
    *,
    import_apps: bool = False,
    app_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    roots: Iterable[str | os.PathLike[str]] | None = None,
) -> ValidationReport:
    """Check the registry at ``path``; with ``import_apps``, also import every service's handler set.

    Args:
        path: the root services.yaml.
        import_apps: import each ``app:`` and compare its handlers with the registry.
        app_dir: directory put first on ``sys.path`` while importing (default: the registry's directory).
        env: environment for ``${VAR}`` and ``ROUTER_REGISTRY_ROOTS`` (default: the process environment).
        roots: more directories the registry's includes and ``$ref``s may be in (see :func:`router.load`).
    """
    name = os.fspath(path)
    try:
        registry = load(name, env=env, roots=roots)
    except ConfigError as exc:
        return ValidationReport(name, None, exc.problems)
    problems: list[Problem] = []
    if import_apps:
        directory = app_dir if app_dir is not None else os.path.dirname(os.path.abspath(name))
        problems = check_handlers(registry, directory=directory)
    return ValidationReport(name, registry, tuple(problems))
