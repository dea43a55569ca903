"""What happens when a lease expires: leases, their extension, and the recovery of expired ones.

A dequeue (``lua/dequeue.lua``) moves a task from pending to the queue's active set as the member
``"<id>:<token>"`` scored by its lease deadline, and hands the worker that token. Lease deadlines are taken from
Redis's own clock (``TIME`` inside the scripts), so the hosts' clocks, and any skew between them, never decide
when a lease expires. Then:

1. **Extension.** While a handler runs, the worker pushes the deadline forward every ``lease_s / 3``
   (:meth:`Leases.extend`, ``lua/extend.lua``). A member that is gone means the lease was lost (the worker
   stalled past its deadline and the task was recovered): logged as ``lease_lost``, and the ack that follows will
   be refused as stale, because the token no longer matches.
2. **Expiry and recovery.** Every worker of the service runs the maintenance sweep (:meth:`Leases.maintain`,
   ``lua/maintain.lua``) at least every ``maintenance_s``: leases whose deadline passed more than
   ``recovery_grace_s`` ago (a margin for a slow extension round trip) go back to the *front* of pending, and
   the task's lost-lease counter (``Q:lost``) goes up. The same sweep promotes due retries and scheduled tasks,
   and names the aggregation groups due to be flushed (:mod:`~router.worker.aggregation`).
3. **Redelivery.** The next dequeue returns that counter with the task; the attempt number counts lost leases as
   failures. A task whose lease expired more than ``max(max_retry, 3)`` times is archived with reason
   ``lease_expired`` (:func:`lost_lease_verdict`): it keeps killing or stalling its workers. Lost leases get
   that looser cap because a prefetched delivery of a killed worker never ran at all.
   A task whose lease expired :data:`SOLO_FROM_LOST_LEASES` times or more is leased alone, and its worker leases
   nothing more until it is settled: a task that kills its process then takes only itself down, so the tasks
   that happened to die with it (recovered to the front of pending together, so fetched together again) reach
   that count at most, never the archive's. One lost lease is the common case (a worker killed once) and
   changes nothing.
4. **Fencing.** Ack, retry and archive (``lua/ack.lua``, ``retry.lua``, ``archive.lua``) only act on a member
   still in the active set, so a worker that lost its lease cannot complete a task someone else now owns; its
   outcome is counted as ``stale``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog

from router.clock import Clock, to_ms
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.keys import QueueKeys
from router.worker.settings import WorkerSettings
from router.worker.state import Delivery

log = structlog.get_logger(__name__)

#: Lost leases tolerated before a task is archived, whatever its ``max_retry`` (see the module docstring).
MIN_LOST_LEASES_TO_ARCHIVE = 3
#: Lost leases from which a task runs with no other task leased after it (see the module docstring).
SOLO_FROM_LOST_LEASES = 2


def lost_lease_verdict(lost_leases: int, max_retry: int) -> str | None:
    """Why a task whose lease expired ``lost_leases`` times must be archived now, or None if it may run again."""
    if lost_leases > max(max_retry, MIN_LOST_LEASES_TO_ARCHIVE):
        return f"lease expired {lost_leases} time(s): the worker running it died or stalled"
    return None


@dataclass(frozen=True)
class Maintained:
    """What one maintenance sweep of a service's queues did."""

    #: Tasks made pending (recovered leases and due retries or scheduled tasks).
    promoted: int
    #: Whether any queue holds pending work.
    pending: bool
    #: Monotonic time of the next sweep: sooner than ``maintenance_s`` when something falls due earlier.
    next_at: float
    #: Queues with corrupt entries waiting in their quarantine.
    quarantined: list[QueueKeys]
    #: Aggregation groups due to be flushed, as (queue, group id).
    due_groups: list[tuple[QueueKeys, str]]


class Leases:
    """Extends the leases this worker holds and sweeps its service's queues for expired ones."""

    def __init__(self, queues: Sequence[QueueKeys], settings: WorkerSettings, clock: Clock) -> None:
        self._queues = list(queues)
        self._settings = settings
        self._clock = clock

    @property
    def lease_ms(self) -> int:
        """How long a lease taken or extended now lasts."""
        return to_ms(self._settings.lease_s)

    def extend(self, broker: SyncBroker, running: Iterable[Delivery]) -> None:
        """Push the deadline of every running delivery forward; log the leases found lost."""
        by_queue: dict[QueueKeys, list[str]] = {}
        for run in running:
            if not run.abandoned:
                by_queue.setdefault(run.qk, []).append(run.member)
        if not by_queue:
            return
        calls = [protocol.extend(qk, self.lease_ms, members) for qk, members in by_queue.items()]
        for reply in broker.run_many(calls):
            for member in protocol.parse_members(reply):
                log.warning("lease_lost", member=member, hint="another worker may run this task again")

    def maintain(self, broker: SyncBroker, now_m: float) -> Maintained:
        """Recover expired leases and promote due tasks in every queue."""
        s = self._settings
        calls = [protocol.maintain(qk, to_ms(self._clock()), to_ms(s.recovery_grace_s)) for qk in self._queues]
        replies = broker.run_many(calls)
        promoted = 0
        pending = False
        quarantined: list[QueueKeys] = []
        due_groups: list[tuple[QueueKeys, str]] = []
        next_at = now_m + s.maintenance_s
        for qk, reply in zip(self._queues, replies):
            r = protocol.parse_maintain(reply)
            promoted += r.recovered + r.promoted
            pending = pending or r.pending > 0  # work no wake token announced (a queue unpaused, say)
            if r.quarantined:
                quarantined.append(qk)
            due_groups.extend((qk, g) for g in r.due_groups)
            if r.recovered:
                log.warning("leases_recovered", queue=qk.queue, count=r.recovered)
            if r.next_due_in_ms is not None:
                next_at = min(next_at, now_m + max(0.01, r.next_due_in_ms / 1000))
        return Maintained(promoted, pending, next_at, quarantined, due_groups)
