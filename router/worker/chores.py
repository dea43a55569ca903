"""The worker's periodic chores (lease extension, cancel polling, heartbeats, the integrity sweep), each run by
the main loop when its period has passed, so that loop needs only to ask what is due and when to wake next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Chore:
    name: str
    period_s: float
    action: Callable[[], object]
    due_at: float


class Chores:
    """A fixed set of periodic actions on the monotonic clock."""

    def __init__(self) -> None:
        self._chores: list[_Chore] = []

    def add(self, name: str, period_s: float, action: Callable[[], object], first_at: float) -> None:
        """Run ``action`` every ``period_s``, first at ``first_at`` (monotonic)."""
        self._chores.append(_Chore(name, period_s, action, first_at))

    def run_due(self, now_m: float) -> None:
        """Run every chore whose time has come; each is next due a period after this run."""
        for chore in self._chores:
            if now_m >= chore.due_at:
                chore.action()
                chore.due_at = now_m + chore.period_s

    def next_at(self) -> float:
        """When the next chore is due (monotonic; infinity when there are none)."""
        return min((c.due_at for c in self._chores), default=float("inf"))
