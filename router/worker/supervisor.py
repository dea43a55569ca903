"""Multi-process workers: one parent forwards signals to N worker processes and restarts crashed ones.

Every signal a supervisor or terminal sends (TERM, INT, HUP, QUIT, TSTP, USR1, USR2) is forwarded to the children
once and logged (``signal_forwarded``); a child notices its parent's death (SIGTERM via the kernel's parent-death
signal on Linux) and stops gracefully, so no worker outlives its group. A child that exits non-zero while the
group is not shutting down is restarted at once; the group gives up (exit code 1) after ``MAX_RESTARTS`` crashes
within a minute, rather than looping forever on a worker that cannot start.
A child that fails with an error logs it (``worker_process_failed``) and exits with the code ``exit_code`` gives it,
never with a traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

MAX_RESTARTS = 5
#: Passed on to every child (see router/worker/signals.py for what each does there).
_FORWARDED = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGTSTP", "SIGUSR1",
                                                  "SIGUSR2") if hasattr(signal, name)]
#: After one of these the group is stopping: a child that exits is not restarted.
_STOPPING = {getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT") if hasattr(signal, name)}
_PR_SET_PDEATHSIG = 1


#: The exit code of a child that failed with an error (None: not an error a user can cause).
ExitCodeFor = Callable[[BaseException], int | None]
_UNEXPECTED = 1


def _die_with_parent(parent: int) -> None:
    """Make this child get SIGTERM (a graceful stop) when the parent dies, so no worker outlives its group."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)
            return

    def watch() -> None:  # elsewhere: notice the re-parenting
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="router-parent-watch", daemon=True).start()


def _child(target: Callable[[], int], exit_code: ExitCodeFor, parent: int) -> None:
    # Own process group: a Ctrl-C at the terminal reaches only the parent, which forwards it once (a child that
    # got it twice would take the second SIGINT as "exit now"). Default handlers until the worker installs its own.
    os.setpgid(0, 0)
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    # Blocked across the fork (see spawn): one that arrived meanwhile now takes its default action.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    _die_with_parent(parent)
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
        stopping = stopping or signum in _STOPPING
        for child in children:
            if child.is_alive() and child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def spawn() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_child, args=(target, exit_code, os.getpid()), name="router-worker")
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

    received: list[int] = []  # logged by the loop: writing a log line inside a signal handler could re-enter I/O

    def on_signal(signum: int, frame: FrameType | None) -> None:
        forward(signum, frame)
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in _FORWARDED}
    gave_up = False
    try:
        children.extend(spawn() for _ in range(processes))
        log.info("worker_group_started", processes=processes, pids=[c.pid for c in children])
        alive = True
        while alive:
            while received:
                log.info("signal_forwarded", signal=signal.Signals(received.pop(0)).name,
                         children=[c.pid for c in children])
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
