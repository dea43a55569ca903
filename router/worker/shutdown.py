"""What a stopping worker does last: hand back what it holds, settle what finished, withdraw its heartbeat.

Each step runs whatever the others met (a refused call, a frozen Redis past the deadline), so one failure does not
strand what the rest could still settle; what cannot be settled returns when its lease expires.
"""

from __future__ import annotations

import threading

import structlog

from router.errors import BrokerError
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import TRANSIENT_ERRORS
from router.storage.keys import QueueKeys
from router.worker.heartbeat import Heartbeat
from router.worker.settlement import Settlements
from router.worker.state import LoopState

log = structlog.get_logger(__name__)

REDIS_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, BrokerError)


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
        replies = broker.run_each([protocol.requeue(qk, m) for qk, m in by_queue.items()])
    except TRANSIENT_ERRORS as exc:
        replies = [exc] * len(by_queue)
    n = 0
    for qk, reply in zip(by_queue, replies):
        if isinstance(reply, Exception):  # each queue on its own: one refusal must not strand the others
            log.warning("requeue_failed", queue=qk.queue, error=str(reply),
                        hint="the tasks return when their lease expires")
        else:
            n += int(reply)
    log.warning("tasks_requeued_at_shutdown" if st.stopping else "tasks_requeued", count=n, running=started)
    return n


def settle_and_withdraw(broker: SyncBroker, outcomes: Settlements, heartbeat: Heartbeat) -> None:
    """Write the outcomes still queued and withdraw the heartbeat, logging ``shutdown_incomplete`` if either failed."""
    failures: list[str] = []
    calls = outcomes.calls()
    try:
        if calls:
            error = outcomes.apply(calls, broker.run_each(calls))
            if error is not None:
                failures.append(str(error))
    except REDIS_ERRORS as exc:
        failures.append(str(exc))
    try:
        heartbeat.withdraw(broker)
    except REDIS_ERRORS as exc:
        failures.append(str(exc))
    if failures:
        log.error("shutdown_incomplete", error=failures[0],
                  hint="unsettled tasks return to pending when their lease expires; the heartbeat expires")
