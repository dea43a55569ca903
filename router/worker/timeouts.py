"""Handler timeouts of sync handlers, enforced by the main loop.

``async def`` handlers are cancelled by their own timer in :mod:`router.worker.execution`. A sync handler cannot
be interrupted (Python cannot kill a thread): past its ``timeout_s`` its delivery is failed at once (so a retry may
run it again), the thread keeps its concurrency slot until the function returns, and whatever it returns is
discarded.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from router.worker.execution import HandlerTimeout
from router.worker.settlement import Settlements
from router.worker.state import Delivery

log = structlog.get_logger(__name__)


def next_timeout(running: Iterable[Delivery]) -> float:
    """Monotonic time at which the first running sync handler times out (inf when none can)."""
    return min(
        (r.started + r.task.timeout_s for r in running
         if r.started is not None and not (r.abandoned or r.is_async)),
        default=float("inf"),
    )


def fail_timed_out(running: Iterable[Delivery], now_m: float, outcomes: Settlements) -> None:
    """Fail every sync delivery that ran past its timeout (its thread goes on; its outcome will be discarded)."""
    for run in list(running):
        if run.abandoned or run.is_async or run.started is None or now_m < run.started + run.task.timeout_s:
            continue
        run.abandoned = True
        log.warning("handler_timeout", task_id=run.task.id, type=run.task.type, timeout_s=run.task.timeout_s,
                    note="sync handler keeps its thread until it returns; its result will be discarded")
        outcomes.fail(run, HandlerTimeout(run.task.timeout_s))
