"""What signals do to a scheduler.

* **SIGTERM / SIGINT**: stop. The tick under way finishes (each fire is one atomic script, so there is nothing to
  hand back), the heartbeat is withdrawn, and the process exits 0. Slots that fall due afterwards are fired by the
  other replicas, or caught up by the next scheduler to start.
* **SIGTSTP**: quiet. The scheduler stops firing but keeps its heartbeat (marked ``quiet``) until SIGTERM/SIGINT;
  the other replicas fire meanwhile. This mirrors the worker, where SIGTSTP stops fetching.

SIGHUP and SIGQUIT keep Python's defaults (terminate; core dump), like the worker. Each handled signal is logged
as ``signal_received`` with the action taken. Handlers only put the signal on a queue the loop sleeps on (a
``SimpleQueue``, safe to use from a signal handler), so the loop wakes at once and applies it between ticks.
"""

from __future__ import annotations

import queue
import signal
import threading
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: The signals a scheduler handles.
HANDLED = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGTSTP] if hasattr(signal, "SIGTSTP") else [])


class Signals:
    """The scheduler's signal handlers, and the sleep they interrupt."""

    def __init__(self) -> None:
        self._received: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Install the handlers (only the main thread can; elsewhere :meth:`notify` is the way in)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """Put back the handlers that were installed before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def notify(self, signum: int) -> None:
        """Deliver ``signum`` as if it had been received (any thread; :meth:`Scheduler.stop` uses it)."""
        self._received.put(signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._received.put(signum)

    def wait(self, seconds: float) -> tuple[bool, bool]:
        """Sleep up to ``seconds``, less if a signal comes; then apply every signal received: returns
        (stop, quiet), each signal logged."""
        try:
            first = self._received.get(timeout=seconds) if seconds > 0 else self._received.get_nowait()
        except queue.Empty:
            return False, False
        received = [first]
        while True:
            try:
                received.append(self._received.get_nowait())
            except queue.Empty:
                break
        stop = quiet = False
        for signum in received:
            name = signal.Signals(signum).name
            if signum == getattr(signal, "SIGTSTP", None):
                quiet = True
                log.warning("signal_received", signal=name, action="stop firing; exit on SIGTERM/SIGINT")
            else:
                stop = True
                log.warning("signal_received", signal=name, action="stop after the current tick")
        return stop, quiet
