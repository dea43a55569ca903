"""What signals do to a worker, and how it hands leased tasks back.

=========  ==========================================================================================================
signal     effect
=========  ==========================================================================================================
SIGTERM    Graceful stop. No task starts after the signal (the gate closes in the handler itself, even while the
SIGINT     main loop waits on a frozen Redis); the idle wake-up is cut short so nothing is leased behind the worker's
SIGHUP     back; tasks leased but not started go straight back to the front of pending; running handlers get up to
           ``shutdown_timeout_s``; then what still runs is requeued and the worker exits 0. Redis calls during the
           stop never wait past that timeout plus :data:`SHUTDOWN_GRACE_S`. HUP means the same as TERM: the
           registry is frozen for a process's life, so there is nothing to reload (restart the worker instead).
SIGINT x2  Exit now: requeue running tasks and exit (Ctrl-C twice).
SIGQUIT    Exit now, like a second SIGINT.
SIGTERM x2 Logged and otherwise ignored: supervisors and container runtimes send TERM twice, and that must not cut
           the graceful stop short (use QUIT or a second INT for "now").
SIGTSTP    Stop fetching and hand back the unstarted tasks; running ones finish and are acknowledged.
SIGUSR1    Log ``worker_status`` (running tasks, counters); nothing else changes.
SIGUSR2
=========  ==========================================================================================================

Every signal is logged as ``signal_received`` with the action taken. The handler closes the start gate and hands
the signal to the main loop, which applies the rest between round trips (:meth:`Signals.apply`). The handlers stay
installed until the worker has finished its shutdown, so a second signal during it is handled too.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from enum import Enum
from types import FrameType
from typing import Any

import structlog

from router.worker.state import LoopState

log = structlog.get_logger(__name__)

#: How long past ``shutdown_timeout_s`` a stopping worker may still wait for Redis (handing tasks back).
SHUTDOWN_GRACE_S = 2.0


class Action(str, Enum):
    """What a signal asks of the worker."""

    STOP = "stop"
    NOW = "now"
    PAUSE = "pause"
    STATUS = "status"


def _named(*names: str) -> list[signal.Signals]:
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


#: The signals a worker handles, and what each asks for (a second INT turns STOP into NOW).
ACTIONS: dict[signal.Signals, Action] = {
    **dict.fromkeys(_named("SIGTERM", "SIGINT", "SIGHUP"), Action.STOP),
    **dict.fromkeys(_named("SIGQUIT"), Action.NOW),
    **dict.fromkeys(_named("SIGTSTP"), Action.PAUSE),
    **dict.fromkeys(_named("SIGUSR1", "SIGUSR2"), Action.STATUS),
}


class Signals:
    """The worker's signal handlers and their effects."""

    def __init__(self, notify: Callable[[int], None], close_gate: Callable[[], None],
                 halt_fetching: Callable[[], None], hand_back: Callable[[bool], None],
                 status: Callable[[], dict[str, Any]], bound_redis: Callable[[float], None],
                 shutdown_timeout_s: float) -> None:
        self._notify = notify
        self._close_gate = close_gate
        self._bound_redis = bound_redis
        self._halt_fetching = halt_fetching
        self._hand_back = hand_back
        self._status = status
        self._shutdown_timeout_s = shutdown_timeout_s
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Route the handled signals to the main loop (only the main thread can install handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in ACTIONS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """Put back the handlers that were installed before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread, between two bytecodes of whatever it was doing (even inside a socket read):
        # only set flags here, never take a lock the interrupted code might hold.
        if ACTIONS.get(signal.Signals(signum)) in (Action.STOP, Action.NOW, Action.PAUSE):
            self._close_gate()
        self._notify(signum)

    def apply(self, signum: int, st: LoopState) -> None:
        """Apply one signal's effect to the loop (on the main loop's thread)."""
        sig = signal.Signals(signum)
        name, action = sig.name, ACTIONS.get(sig, Action.STOP)
        if action is Action.STATUS:
            log.info("signal_received", signal=name, action="log status")
            log.info("worker_status", **self._status())
        elif action is Action.PAUSE:
            st.fetching = False
            self._halt_fetching()
            log.warning("signal_received", signal=name, action="stop fetching; running tasks continue")
            self._hand_back(False)
        elif action is Action.NOW or (st.stopping and sig == signal.SIGINT):
            st.immediate = True
            log.warning("signal_received", signal=name, action="exit now; requeue running tasks")
            self._begin_stop(st, time.monotonic())
        elif st.stopping:
            log.warning("signal_received", signal=name, action="already stopping; SIGQUIT or a second SIGINT "
                        "exits at once", seconds_left=round(max(0.0, st.stop_deadline - time.monotonic()), 1))
        else:
            log.warning("signal_received", signal=name, action="stop fetching; wait for running tasks",
                        shutdown_timeout_s=self._shutdown_timeout_s, running=len(st.running))
            self._begin_stop(st, time.monotonic() + self._shutdown_timeout_s)

    def _begin_stop(self, st: LoopState, deadline: float) -> None:
        first = not st.stopping
        st.stopping = True
        st.stop_deadline = min(st.stop_deadline, deadline) if not first else deadline
        self._bound_redis(st.stop_deadline + SHUTDOWN_GRACE_S)
        if first:
            self._halt_fetching()
            self._hand_back(False)
