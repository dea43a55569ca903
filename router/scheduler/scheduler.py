"""The cron scheduler: fires the registry's cron entries in their time zones, safely from any number of replicas.

:meth:`Scheduler.tick` is one pass, and the drain mode tests use: for each entry, the slots due since its cursor
(:mod:`~router.scheduler.catchup` over :mod:`~router.scheduler.cron`), each checked by the enqueue guard and claimed
and enqueued by one script call per entry (``cron_fire.lua``: a slot already claimed by any replica is refused),
every entry in one round trip. :meth:`Scheduler.run` loops: tick, heartbeat (:mod:`~router.scheduler.heartbeat`),
sleep until the next slot; Redis outages are waited out with backoff; signals as :mod:`~router.scheduler.signals`
says. A replica that dies mid-tick loses nothing: what it claimed it enqueued in the same step, and what it did not
claim the others (or the next scheduler to start) fire.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import structlog
from redis.exceptions import AuthenticationError

from router.clock import Clock, system_clock
from router.errors import BrokerError, GuardError
from router.producer.guard import Guard
from router.registry.model import Registry
from router.scheduler import catchup
from router.scheduler.entries import Entry, cron_task_id, select_entries
from router.scheduler.heartbeat import SchedulerHeartbeat
from router.scheduler.liveness import NoWorkerWatch
from router.scheduler.settings import SchedulerSettings
from router.scheduler.signals import Signals
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import TRANSIENT_ERRORS, Role, SyncRedis, connect

log = structlog.get_logger(__name__)

_REDIS_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, BrokerError)


@dataclass
class TickResult:
    """What one tick did, as (entry name, fire time in seconds) pairs."""

    fired: list[tuple[str, int]] = field(default_factory=list)
    #: Slots another replica had claimed first (or a catch-up policy had dropped there): not enqueued here.
    claimed_elsewhere: list[tuple[str, int]] = field(default_factory=list)
    #: Slots whose task the guard refused (payload, size) or whose task id was taken: not enqueued.
    refused: list[tuple[str, int]] = field(default_factory=list)
    #: Missed slots each entry's catch-up policy dropped.
    skipped: dict[str, int] = field(default_factory=dict)


class Scheduler:
    """Fires cron entries; ``run()`` until SIGTERM/SIGINT (or :meth:`stop`), or ``tick(now)`` one pass at a time."""

    def __init__(
        self,
        registry: Registry,
        *,
        url: str | None = None,
        redis: SyncRedis | None = None,
        services: Collection[str] = (),
        settings: SchedulerSettings | None = None,
        clock: Clock = system_clock,
    ) -> None:
        """Fire the entries of ``registry`` (only those whose task one of ``services`` owns, when given).

        Raises UnknownService for a name in ``services`` the registry does not declare.
        """
        self.registry = registry
        self.settings = s = settings or SchedulerSettings()
        self.entries: list[Entry] = select_entries(registry, services)
        self.scheduler_id = f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}"
        self._clock = clock
        self._now = clock()
        self._guard = Guard(registry, clock=lambda: self._now)  # the envelope's enqueue time is the tick's "now"
        self._broker = SyncBroker(redis if redis is not None else connect(url or registry.redis_url, Role.PRODUCER))
        self._watch = NoWorkerWatch(s.live_check_s, s.no_worker_warn_s)
        self._heartbeat = SchedulerHeartbeat(self.scheduler_id, self.entries, s.heartbeat_s, self._now)
        self._signals = Signals()
        self._started = False
        self._beat_at: float | None = None
        #: True after SIGTSTP: the loop keeps its heartbeat but fires nothing.
        self.quiet = False
        self.stats = {"ticks": 0, "fired": 0, "claimed_elsewhere": 0, "refused": 0, "skipped": 0, "errors": 0,
                      "no_live_worker": 0}

    # -- one pass ---------------------------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> TickResult:
        """Fire what is due at ``now`` (seconds since the epoch; default: the clock) and publish the heartbeat when
        it is due. Redis errors propagate (nothing is lost: the slots stay due for the next tick)."""
        self._now = now_f = float(self._clock() if now is None else now)
        t = math.floor(now_f)
        if not self._started:
            self._start(t)
        result = TickResult()
        batch: list[tuple[Entry, list[protocol.CronFire]]] = []
        for entry in self.entries:
            if entry.next_fire is None or entry.next_fire > t:
                continue  # nothing due: the common case, no work at all
            try:
                fires = self._prepare(entry, t, result)
            except Exception as exc:  # a bug in one entry must not stop the others (the loop is total)
                log.exception("cron_entry_failed", entry=entry.name, error=str(exc))
                self.stats["errors"] += 1
                entry.advance(t)
                continue
            if fires:
                batch.append((entry, fires))
            else:
                entry.advance(t)
        if batch:
            calls = [protocol.cron_fire(e.keys, e.name, self._keep_ms(e, fires, now_f), fires) for e, fires in batch]
            replies = self._broker.run_many(calls)
            enqueued = [entry for (entry, fires), reply in zip(batch, replies)
                        if self._settle(entry, fires, protocol.parse_cron_fire(reply), t, result)]
            for entry in enqueued:
                if self._watch.check(self._broker, entry, now_f):
                    self.stats["no_live_worker"] += 1
        self.stats["ticks"] += 1
        self._maybe_beat(now_f, fired=bool(result.fired))
        return result

    def _start(self, t: int) -> None:
        """Set each entry's cursor from the claims in Redis: slots after an entry's latest claim are missed ones,
        and its catch-up policy decides; an entry never claimed starts now (a new entry does not fire its past)."""
        claims = self._broker.cron_claims([e.keys.cron(e.name) for e in self.entries])
        window = int(self.settings.catch_up_window_s)
        for entry, claim_ms in zip(self.entries, claims):
            entry.last_fire = None if claim_ms is None else claim_ms // 1000
            entry.advance(t if entry.last_fire is None else max(entry.last_fire, t - window))
        self._started = True

    def _prepare(self, entry: Entry, t: int, result: TickResult) -> list[protocol.CronFire]:
        """The fires to send for ``entry`` at ``t``: the plan's slots whose task the guard accepts."""
        s = self.settings
        assert entry.cursor is not None  # set by _start
        plan = catchup.plan(entry.schedule, entry.spec.catch_up, entry.cursor, t, window_s=int(s.catch_up_window_s),
                            grace_s=int(s.grace_s), cap=s.max_catch_up)
        if plan.skipped or plan.more:
            result.skipped[entry.name] = plan.skipped
            self.stats["skipped"] += plan.skipped
            log.info("cron_slots_skipped", entry=entry.name, catch_up=entry.spec.catch_up.value,
                     skipped=plan.skipped, older_dropped=plan.more)
        fires: list[protocol.CronFire] = []
        for slot in plan.slots:
            try:
                route = self._guard.route(entry.spec.task, entry.payload, task_id=cron_task_id(entry.name, slot))
            except GuardError as exc:  # logged and counted, never fatal: the next slot is tried again
                entry.counts["refused"] += 1
                self.stats["refused"] += 1
                result.refused.append((entry.name, slot))
                log.error("cron_payload_refused", entry=entry.name, task=entry.spec.task, fire_ms=slot * 1000,
                          error=str(exc))
                continue
            fires.append(protocol.CronFire(slot * 1000, route.task_id, route.envelope))
        return fires

    def _keep_ms(self, entry: Entry, fires: list[protocol.CronFire], now: float) -> int:
        """How long the claim is kept: the catch-up window past the entry's next slot, so a replica coming back
        before that slot's window ends still finds the claim of every slot it might consider."""
        last = fires[-1].fire_ms // 1000
        following = entry.schedule.next_after(last)
        until = (following if following is not None else last) + self.settings.catch_up_window_s
        return max(1000, math.ceil((until - now) * 1000))

    def _settle(self, entry: Entry, fires: list[protocol.CronFire], codes: list[int], t: int,
                result: TickResult) -> int:
        """Count and log what the script did with each fire; returns how many it enqueued."""
        enqueued = 0
        for fire, code in zip(fires, codes):
            slot = fire.fire_ms // 1000
            if code == protocol.CRON_ENQUEUED:
                enqueued += 1
                entry.counts["fired"] += 1
                self.stats["fired"] += 1
                result.fired.append((entry.name, slot))
                log.info("cron_fired", entry=entry.name, task=entry.spec.task, fire_ms=fire.fire_ms,
                         task_id=fire.task_id)
            elif code == protocol.CRON_CLAIMED_ALREADY:
                entry.counts["claimed_elsewhere"] += 1
                self.stats["claimed_elsewhere"] += 1
                result.claimed_elsewhere.append((entry.name, slot))
            else:
                entry.counts["refused"] += 1
                self.stats["refused"] += 1
                result.refused.append((entry.name, slot))
                log.error("cron_task_id_taken", entry=entry.name, task_id=fire.task_id,
                          hint="a task with this id exists already; the slot is claimed and not enqueued")
            entry.last_fire = slot if entry.last_fire is None else max(entry.last_fire, slot)
        entry.advance(t)
        return enqueued

    def _maybe_beat(self, now: float, fired: bool = False) -> None:
        """Publish the heartbeat when a period has passed, or after a fire once a second has (so the last fire it
        shows is fresh, without one write per tick)."""
        at = self._beat_at
        period = min(1.0, self.settings.heartbeat_s) if fired else self.settings.heartbeat_s
        if at is None or not at <= now < at + period:
            self._heartbeat.beat(self._broker, now, self.stats, self.quiet)
            self._beat_at = now

    # -- the process ------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running scheduler to stop after its current tick (thread-safe, like SIGTERM)."""
        self._signals.notify(signal.SIGTERM)

    def run(self) -> None:
        """Fire entries until SIGTERM/SIGINT or :meth:`stop`; SIGTSTP quiets it (no firing) until then.

        Raises BrokerError when Redis refuses the credentials or a command (ACL); outages are waited out.
        """
        self._signals.install()
        log.info("scheduler_started", scheduler_id=self.scheduler_id, entries=[e.name for e in self.entries],
                 services=sorted({e.service.name for e in self.entries}))
        backoff, outage_since = 0.05, None
        try:
            while True:
                try:
                    if self.quiet:
                        self._maybe_beat(self._clock())
                    else:
                        self.tick()
                    if outage_since is not None:
                        log.info("redis_available", outage_s=round(time.monotonic() - outage_since, 3))
                        outage_since = None
                    backoff, pause = 0.05, self._sleep_s()
                except AuthenticationError as exc:  # a wrong password does not heal by waiting: exit code 4
                    raise BrokerError(f"Redis refused the credentials: {exc}; fix the URL's user/password") from exc
                except TRANSIENT_ERRORS as exc:
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.warning("redis_unavailable", error=str(exc), hint="waiting for Redis; due slots fire "
                                    "when it is back")
                    pause, backoff = backoff * (0.5 + random.random()), min(backoff * 2, 2.0)
                stop, quiet = self._signals.wait(pause)
                if quiet and not self.quiet:
                    self.quiet = True
                    self._beat_at = None  # say so in the heartbeat at once
                if stop:
                    return
        finally:
            self._signals.restore()
            self.withdraw()
            log.info("scheduler_stopped", scheduler_id=self.scheduler_id, **self.stats)

    def withdraw(self) -> None:
        """Remove this scheduler's heartbeats (at a clean exit); a failure is logged, they expire anyway."""
        try:
            self._heartbeat.withdraw(self._broker)
        except _REDIS_ERRORS as exc:
            log.warning("heartbeat_not_withdrawn", error=str(exc), hint="it expires by itself")

    def _sleep_s(self) -> float:
        """Until the next slot of any entry or the next heartbeat, at most ``max_sleep_s``."""
        now = self._clock()
        wake = min((e.next_fire for e in self.entries if e.next_fire is not None), default=math.inf)
        if self._beat_at is not None:
            wake = min(wake, self._beat_at + self.settings.heartbeat_s)
        # +1 ms: wake just after the slot's second begins, not a hair before it (timer granularity).
        return max(0.0, min(wake - now + 0.001, self.settings.max_sleep_s))

    def close(self) -> None:
        """Close the connection pool."""
        self._broker.close()
