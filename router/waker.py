"""Idle wake-ups without polling: threads that block on the queues' wake lists and tell the main loop.

Enqueue scripts push one token to ``Q:wake`` when it is empty; an idle worker blocks there (BLPOP, at most
``BLOCK_S`` at a time) instead of polling. One BLPOP covers all of a service's queues on a single server; in
Redis Cluster each queue is its own slot, so keys are grouped by slot and each group gets its own thread and
connection. A thread only blocks while the main loop has armed it (found nothing to do), so a busy worker sends
no blocking commands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import structlog

from router.broker import SyncBroker
from router.connection import BLOCK_S, TRANSIENT_ERRORS
from router.slots import key_slot

log = structlog.get_logger("router.waker")


class Waker:
    """Blocks on wake lists while armed and calls ``on_wake()`` when a token arrives."""

    def __init__(
        self,
        wake_keys: Sequence[str],
        cluster: bool,
        broker_factory: Callable[[], SyncBroker],
        on_wake: Callable[[], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        groups: dict[int, list[str]] = {}
        for key in wake_keys:
            groups.setdefault(key_slot(key) if cluster else 0, []).append(key)
        self._armed = threading.Event()
        self._stopped = threading.Event()
        self._on_wake = on_wake
        self._on_fatal = on_fatal
        self._threads = [
            threading.Thread(target=self._main, args=(keys, broker_factory), name="router-waker", daemon=True)
            for keys in groups.values()
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def arm(self) -> None:
        """Ask the threads to block until work may be there."""
        self._armed.set()

    def stop(self) -> None:
        self._stopped.set()
        self._armed.set()

    def _main(self, keys: list[str], broker_factory: Callable[[], SyncBroker]) -> None:
        try:
            broker = broker_factory()
            backoff = 0.05
            while not self._stopped.is_set():
                self._armed.wait()
                if self._stopped.is_set():
                    break
                try:
                    woke = broker.wait_wake(keys, BLOCK_S)
                    backoff = 0.05
                except TRANSIENT_ERRORS:
                    # The main loop logs the outage; here we only avoid spinning.
                    self._stopped.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                if woke:
                    self._armed.clear()
                    self._on_wake()
            broker.close()
        except BaseException as exc:
            self._on_fatal(exc)

