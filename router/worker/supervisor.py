"""Multi-process workers: one parent forwards signals to N worker processes and restarts crashed ones.

A child that exits non-zero while the group is not shutting down is restarted at once; the group gives up (exit
code 1) after ``MAX_RESTARTS`` crashes within a minute, rather than looping forever on a worker that cannot start.
A child that fails with an error logs it (``worker_process_failed``) and exits with the code ``exit_code`` gives it,
never with a traceback.
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


#: The exit code of a child that failed with an error (None: not an error a user can cause).
ExitCodeFor = Callable[[BaseException], int | None]
_UNEXPECTED = 1


def _child(target: Callable[[], int], exit_code: ExitCodeFor) -> None:
    # Own process group: a Ctrl-C at the terminal reaches only the parent, which forwards it once (a child that
    # got it twice would take the second SIGINT as "exit now"). Default handlers until the worker installs its own.
    os.setpgid(0, 0)
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    # Blocked across the fork (see spawn): one that arrived meanwhile now takes its default action.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    try:
        code = target()
    except Exception as exc:
        mapped = exit_code(exc)
        log.error("worker_process_failed", pid=os.getpid(), error=f"{type(exc).__name__}: {exc}",
                  exitcode=mapped if mapped is not None else _UNEXPECTED,
                  **({} if mapped is not None else {"exc_info": True}))
        code = mapped if mapped is not None else _UNEXPECTED
    raise SystemExit(code)


def run_group(processes: int, target: Callable[[], int], exit_code: ExitCodeFor = lambda exc: None) -> int:
    """Run ``target`` in ``processes`` child processes (or in this one when 1); returns the group's exit code.

    With one process, ``target``'s errors propagate to the caller; in a child, ``exit_code`` maps them to its exit
    code.
    """
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
        proc = ctx.Process(target=_child, args=(target, exit_code), name="router-worker")
        # Blocked across the fork, so the child never runs this process's `forward` (it would act on the parent's
        # children); the child unblocks them once they are back to their defaults.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
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
