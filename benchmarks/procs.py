"""Child processes of the harness: each in its own process group, all stopped on exit, Ctrl-C or SIGTERM.

Workers get ``SIGTERM`` (their graceful shutdown), then ``SIGKILL`` for whatever of their process group is
left after a grace period. On Linux each group leader also gets a parent-death signal, so even a harness
killed with ``SIGKILL`` leaves no worker behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

import psutil

_PR_SET_PDEATHSIG = 1
_live: set[subprocess.Popen[bytes]] = set()


def _child_setup() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


def spawn(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, stdout_pipe: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, stderr (and stdout unless piped) appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_child_setup(),  # noqa: PLW1509 - the harness is single-threaded
        )
    _live.add(proc)
    return proc


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None or _group_alive(proc.pid)  # a session leader's pid is its group id


def stop(*group: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM each process (its graceful shutdown; a leader forwards it to its own children), SIGKILL
    whatever is left of their process groups after ``grace_s``, and reap them."""
    for proc in group:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_running(proc) for proc in group):
        time.sleep(0.05)
    for proc in group:
        if _running(proc):
            _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        _live.discard(proc)


def stop_all() -> None:
    """Stop every child still running (called at exit and from the harness's ``finally``)."""
    stop(*_live, grace_s=3.0)


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants (empty when it is gone): some worker CLIs run the worker in a child."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    """Resident set size in bytes summed over ``pid`` and all its descendants (0 when it is gone)."""
    total = 0
    for proc in tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def install_cleanup() -> None:
    """Stop all children at interpreter exit, and make SIGINT and SIGTERM raise KeyboardInterrupt (even when
    started in the background, where a shell ignores SIGINT) so that ``finally`` blocks run."""
    atexit.register(stop_all)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
