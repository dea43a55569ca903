"""What signals do to a worker, and how it hands leased tasks back.

* **SIGTERM / SIGINT**: graceful stop. The worker stops fetching (its idle wake-up is cut short, so nothing is
  leased behind its back), hands tasks leased but not started straight back to the front of pending, waits up to
  ``shutdown_timeout_s`` for running handlers, then requeues what still runs and exits 0.
* **A second SIGINT** (Ctrl-C twice): requeue running tasks and exit now.
* **SIGTSTP**: stop fetching and hand back the unstarted tasks; running ones finish and are acknowledged.

Every signal is logged as ``signal_received`` with the action taken. Handlers only enqueue the signal for the
main loop, which applies it between round trips (:meth:`Signals.apply`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import TRANSIENT_ERRORS
from router.storage.keys import QueueKeys
from router.worker.state import LoopState

log = structlog.get_logger(__name__)

#: The signals a worker handles.
HANDLED = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGTSTP] if hasattr(signal, "SIGTSTP") else [])


class Signals:
    """The worker's signal handlers and their effects."""

    def __init__(self, notify: Callable[[int], None], halt_fetching: Callable[[], None],
                 hand_back: Callable[[bool], None], shutdown_timeout_s: float) -> None:
        self._notify = notify
        self._halt_fetching = halt_fetching
        self._hand_back = hand_back
        self._shutdown_timeout_s = shutdown_timeout_s
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Route the handled signals to the main loop (only the main thread can install handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """Put back the handlers that were installed before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._notify(signum)

    def apply(self, signum: int, st: LoopState) -> None:
        """Apply one signal's effect to the loop (on the main loop's thread)."""
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGTSTP", None):
            st.fetching = False
            self._halt_fetching()
            log.warning("signal_received", signal=name, action="stop fetching; running tasks continue")
            self._hand_back(False)
            return
        if st.stopping and signum == signal.SIGINT:
            st.immediate = True
            log.warning("signal_received", signal=name, action="exit now; requeue running tasks")
            return
        if not st.stopping:
            st.stopping = True
            self._halt_fetching()
            st.stop_deadline = time.monotonic() + self._shutdown_timeout_s
            log.warning("signal_received", signal=name, action="stop fetching; wait for running tasks",
                        shutdown_timeout_s=self._shutdown_timeout_s, running=len(st.running))
            self._hand_back(False)


def hand_back(broker: SyncBroker, st: LoopState, claim_lock: threading.Lock, started: bool) -> int:
    """Put leased tasks back at the front of pending at once: the unstarted ones, and running ones too when
    ``started`` (their threads may go on, but their outcome is discarded). Returns how many went back."""
    by_queue: dict[QueueKeys, list[str]] = {}
    with claim_lock:  # ordered with the handler threads' claim: a delivery handed back never starts
        for run in list(st.running.values()):
            if run.abandoned or run.finished or (run.started is not None and not started):
                continue
            run.abandoned = True
            by_queue.setdefault(run.qk, []).append(run.member)
            if run.started is None:
                del st.running[run.member]
    if not by_queue:
        return 0
    try:
        replies = broker.run_many([protocol.requeue(qk, m) for qk, m in by_queue.items()])
    except TRANSIENT_ERRORS as exc:
        log.warning("requeue_failed", error=str(exc), hint="the tasks return when their lease expires")
        return 0
    n = sum(int(r) for r in replies)
    log.warning("tasks_requeued_at_shutdown" if st.stopping else "tasks_requeued", count=n, running=started)
    return n
