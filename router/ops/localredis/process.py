"""Process hygiene for throwaway servers: free loopback ports, waiting for readiness, and making sure a crashed
run leaves no server behind (an ``atexit`` hook, a parent-death signal on Linux, and :func:`reap_orphans` for
directories whose owner died).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from router.errors import LocalRedisError

LOOPBACK = "127.0.0.1"
DIR_PREFIX = "router-redis-"
OWNER_FILE = "owner.pid"
SERVER_PID_FILE = "redis.pid"
CLUSTER_BUS_OFFSET = 10000  # Redis < 7 has no cluster-port: the bus is always port + 10000
_MAX_PORT = 65535
_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    *,
    timeout_s: float = 10.0,
    what: str = "condition",
    first_interval_s: float = 0.005,
    max_interval_s: float = 0.1,
    ignore: tuple[type[Exception], ...] = (Exception,),
) -> T:
    """Poll ``condition`` with a growing interval until it returns a truthy value, and return that value.

    Exceptions of the ``ignore`` types raised by ``condition`` count as "not yet"; others propagate.
    Raises :class:`TimeoutError` naming ``what`` (and the last ignored exception, if any) when
    ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    interval = first_interval_s
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except ignore as exc:
            last_error = exc
        else:
            if result:
                return result
        now = time.monotonic()
        if now >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}{detail}")
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, max_interval_s)


# --- leftover protection -------------------------------------------------------------------------

class Stoppable(Protocol):
    """A server that can be stopped at interpreter exit."""

    def stop(self, timeout_s: float = ...) -> None: ...


_live_lock = threading.Lock()
_live: set[Stoppable] = set()


def track(server: Stoppable) -> None:
    """Stop ``server`` at interpreter exit unless :func:`untrack` was called first."""
    with _live_lock:
        _live.add(server)


def untrack(server: Stoppable) -> None:
    """``server`` is stopped: forget it."""
    with _live_lock:
        _live.discard(server)


def _stop_all_live() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(timeout_s=3.0)


atexit.register(_stop_all_live)

_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def death_signal_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies, or None where unsafe.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits and ``preexec_fn`` is unsafe with threads,
    so it is only used from the main thread of a single-threaded process; atexit and reap_orphans cover
    the rest.
    """
    if _prctl is None or threading.active_count() != 1:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def reap_orphans(base_dir: str | None = None) -> int:
    """Kill servers and remove directories left by dead processes that used this module; return how many.

    A directory is an orphan when the process that created it is gone. Its server is killed only when
    ``/proc`` confirms that PID still runs in that directory (so a recycled PID is never hit).
    """
    base = Path(base_dir or tempfile.gettempdir())
    reaped = 0
    for directory in base.glob(f"{DIR_PREFIX}*"):
        owner = _read_pid(directory / OWNER_FILE)
        if owner is None or _pid_alive(owner):
            continue
        server_pid = _read_pid(directory / SERVER_PID_FILE)
        if server_pid is not None:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{server_pid}/cwd").resolve() == directory.resolve():
                    os.kill(server_pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
        reaped += 1
    return reaped

# --- ports ---------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pick_free_port(with_bus_port: bool) -> int:
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if not with_bus_port:
            return port
        bus = port + CLUSTER_BUS_OFFSET
        if bus <= _MAX_PORT and _port_is_free(bus):
            return port
    raise LocalRedisError("could not find a free loopback port (with a free cluster bus port + 10000)")

