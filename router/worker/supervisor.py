"""Multi-process workers: one parent forwards signals to N worker processes and restarts crashed ones.

A child that exits non-zero while the group is not shutting down is restarted, with a pause that grows when
children keep dying; the group gives up (exit code 1) after ``MAX_RESTARTS`` crashes within a minute, rather than
looping forever on a worker that cannot start.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

MAX_RESTARTS = 5
_FORWARDED = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGTSTP] if hasattr(signal, "SIGTSTP") else [])


def _child(target: Callable[[], int]) -> None:
    # Own process group: a Ctrl-C at the terminal reaches only the parent, which forwards it once (a child that
    # got it twice would take the second SIGINT as "exit now"). Default handlers until the worker installs its own.
    os.setpgid(0, 0)
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    raise SystemExit(target())


def run_group(processes: int, target: Callable[[], int]) -> int:
    """Run ``target`` in ``processes`` child processes (or in this one when 1); returns the group's exit code."""
    if processes <= 1:
        return target()
    ctx = multiprocessing.get_context("fork")
    children: list[multiprocessing.process.BaseProcess] = []
    stopping = False
    crashes: list[float] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if signum != getattr(signal, "SIGTSTP", None):
            stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def spawn() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_child, args=(target,), name="router-worker")
        proc.start()
        if stopping and proc.pid is not None:  # a signal arrived while it was starting: pass it on
            os.kill(proc.pid, signal.SIGTERM)
        return proc

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    gave_up = False
    try:
        children.extend(spawn() for _ in range(processes))
        log.info("worker_group_started", processes=processes, pids=[c.pid for c in children])
        alive = True
        while alive:
            alive = False
            for i, child in enumerate(children):
                child.join(timeout=0.1)
                if child.is_alive():
                    alive = True
                    continue
                if stopping or child.exitcode == 0:
                    continue
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < 60] + [now]
                log.error("worker_process_died", pid=child.pid, exitcode=child.exitcode,
                          restarts_last_minute=len(crashes))
                if len(crashes) > MAX_RESTARTS:
                    gave_up = True
                    forward(signal.SIGTERM, None)
                    continue
                children[i] = spawn()
                alive = True
        failed = any(c.exitcode not in (0, None) for c in children)
        return 1 if gave_up or failed else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
