"""The budgets of one load, so that any registry ends in a Registry or a ConfigError within seconds and well under
512 MiB: the nodes it may build (all its files and $ref schemas together) and the problems it may report.

Each bound is far above what a real registry needs (see docs/registry.md, "Limits"); what reaches one is an
alias bomb, a generated file gone wrong, or an attack, and gets one located problem instead of minutes of work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from router.errors import Problem

# Nodes of a whole registry (its files with aliases expanded, and its $ref schema files): the checks after the
# parse cost microseconds a node, and this keeps a load within seconds. A real registry spends about 20 bytes a
# node: 5,000 task types take about 100,000 nodes, 20,000 about 380,000.
MAX_NODES = 400_000
# A string also counts one node per this many characters (keys included): aliases repeat a long string without
# copying it, but every check and message after the parse pays for its length again at each repetition.
CHARS_PER_NODE = 32
#: Problems one load reports at most. Aliases can repeat one bad value a million times; past this many the load
#: stops instead of spending seconds and hundreds of megabytes on messages nobody reads.
MAX_PROBLEMS = 1000


@dataclass
class NodeBudget:
    """Nodes one load may still build, shared by all the files it reads."""

    used: int = 0
    limit: int = MAX_NODES

    def take(self, nodes: int) -> bool:
        """Spend ``nodes``; False (nothing spent) when that would go over the limit."""
        if self.used + nodes > self.limit:
            return False
        self.used += nodes
        return True


class TooManyProblems(Exception):
    """The problem list is full: the load stops (the loader reports it as one more problem)."""


class ProblemList(list[Problem]):
    """The problems of one load: appending past MAX_PROBLEMS raises TooManyProblems (every builder appends here,
    so the load stops wherever it is)."""

    def append(self, problem: Problem) -> None:
        """Add ``problem``; raises TooManyProblems when the list is full."""
        if len(self) >= MAX_PROBLEMS:
            raise TooManyProblems
        super().append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        """Add each of ``problems`` (see :meth:`append`)."""
        for problem in problems:
            self.append(problem)

    def __iadd__(self, problems: Iterable[Problem]) -> ProblemList:  # type: ignore[override,misc]
        self.extend(problems)
        return self
