"""A child process that loads registries under the loader's budget: 512 MiB of address space and 5 s per load.

Loads that may block (a FIFO), exhaust memory (a character device) or take long (alias-repeated big scalars) cannot
be run in the test process itself: a hang would stall the suite and a blow-up would take pytest down with it. A
:class:`LoadBox` keeps one child alive (``RLIMIT_AS`` set before router is imported) and hands it one load at a time
over a pipe; the parent enforces the time budget and restarts the child after a timeout or a crash. Every answer
carries the child's peak RSS so far, which the fuzz tests report as the memory figure.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from router.errors import Problem

BUDGET_S = 5.0
BUDGET_BYTES = 512 * 1024 * 1024
# Time allowed for the child to start (imports) before its first answer; not part of a load's budget.
STARTUP_S = 30.0

_CHILD = r"""
import json, os, resource, sys, time, traceback
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import router
from router.errors import ConfigError
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    kwargs = {"env": request.get("env") or {}}
    if request.get("roots") is not None:
        kwargs["roots"] = request["roots"]
    start = time.perf_counter()
    try:
        router.load(request["path"], **kwargs)
        answer = {"kind": "registry", "problems": []}
    except ConfigError as exc:
        answer = {"kind": "config-error",
                  "problems": [[p.file, p.line, p.column, p.message, p.code] for p in exc.problems]}
    except BaseException as exc:  # the bug under test: report it instead of dying
        answer = {"kind": "exception", "problems": [],
                  "error": "".join(traceback.format_exception_only(type(exc), exc))[-2000:]}
    answer["seconds"] = time.perf_counter() - start
    answer["max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(answer), flush=True)
"""


@dataclass
class Outcome:
    """How one load ended: ``registry``, ``config-error``, ``exception`` or ``timeout``."""

    kind: str
    problems: list[Problem] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    max_rss: int = 0

    def describe(self) -> str:
        """A short text for assertion messages."""
        shown = "\n".join(f"  {p} [{p.code}]"[:300] for p in self.problems[:5])
        return f"{self.kind} after {self.seconds:.2f}s, peak RSS {self.max_rss >> 20} MiB {self.error}\n{shown}"


class LoadBox:
    """One bounded child process; :meth:`load` runs ``router.load`` in it."""

    def __init__(self, budget_s: float = BUDGET_S, budget_bytes: int = BUDGET_BYTES) -> None:
        self.budget_s = budget_s
        self.budget_bytes = budget_bytes
        self.proc: subprocess.Popen[str] | None = None
        self.loads = 0
        self.slowest_s = 0.0
        self.peak_rss = 0

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self.budget_bytes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if self._read(proc, STARTUP_S) is None:
            self._stop(proc)
            raise RuntimeError("the load box did not start")
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, Any] | None:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                return None
        line = proc.stdout.readline()
        return json.loads(line) if line else None

    @staticmethod
    def _stop(proc: subprocess.Popen[str]) -> None:
        proc.kill()
        proc.wait()

    def load(self, path: str | os.PathLike[str], *, env: dict[str, str] | None = None,
             roots: list[str] | None = None) -> Outcome:
        """Load ``path`` in the child; a load over the time budget is killed and reported as ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None
        request: dict[str, Any] = {"path": os.fspath(path), "env": env}
        if roots is not None:
            request["roots"] = roots
        start = time.perf_counter()
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        # Twice the budget before giving up, so a load that ran over is measured rather than guessed at.
        answer = self._read(self.proc, 2 * self.budget_s)
        if answer is None:
            elapsed = time.perf_counter() - start
            crashed = self.proc.poll() is not None
            self._stop(self.proc)
            self.proc = None
            return Outcome("crash" if crashed else "timeout", seconds=elapsed)
        self.loads += 1
        outcome = Outcome(answer["kind"], [Problem(*p) for p in answer["problems"]], answer.get("error", ""),
                          answer["seconds"], answer["max_rss"])
        self.slowest_s = max(self.slowest_s, outcome.seconds)
        self.peak_rss = max(self.peak_rss, outcome.max_rss)
        return outcome

    def close(self) -> None:
        """Stop the child."""
        if self.proc is not None:
            self._stop(self.proc)
            self.proc = None


def assert_bounded(outcome: Outcome, budget_s: float = BUDGET_S) -> None:
    """The load ended in a Registry or a located ConfigError, within the time budget (memory is the rlimit's)."""
    assert outcome.kind in ("registry", "config-error"), outcome.describe()
    assert outcome.seconds <= budget_s, outcome.describe()
    for p in outcome.problems:
        assert p.file and p.line >= 1 and p.column >= 1 and p.code and p.message, outcome.describe()
