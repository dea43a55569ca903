"""Every Redis key name router uses; this docstring is the key schema.

All keys of a service start with ``<prefix>:`` where ``<prefix>`` is the service's registry prefix (colon-free,
so one ACL pattern ``~<prefix>:*`` covers exactly one service). Keys of one (service, queue) share the hash tag
``{<service>:<queue>}``, so a queue lives in one cluster slot and same-named queues of different services land in
different slots. Service-wide keys use the tag ``{<service>}``.

Per (service, queue), with ``Q = <prefix>:{<service>:<queue>}``::

    Q:msg        HASH    task id -> envelope (JSON, see schemas/task-envelope.schema.json); one hash per queue
                         keeps the memory per pending task near 200 bytes
    Q:pending    LIST    task ids ready to run; producers LPUSH, workers RPOP (oldest first)
    Q:active     ZSET    "<task id>:<delivery token>" -> lease deadline (ms, Redis's clock); the token fences
                         stale workers
    Q:leased     HASH    task id -> its current delivery token, for the tasks in Q:active (one lease per task)
    Q:scheduled  ZSET    task id -> time to enqueue (ms)
    Q:retry      ZSET    task id -> time to retry (ms)
    Q:archived   ZSET    task id -> time archived (ms); the dead letter, bounded by size and age
    Q:completed  ZSET    task id -> time its retained result expires (ms)
    Q:done       ZSET    task id -> time completed (ms), for tasks not retained: a tombstone that keeps a late
                         repeat of the enqueue (after an unknown outcome) from running the task twice; bounded
                         by age and count
    Q:lost       HASH    task id -> number of deliveries whose lease expired (crash recovery counter)
    Q:seq        STRING  delivery token counter
    Q:quarantine LIST    corrupt entries found by the maintenance or the sweep, until a worker archives them
    Q:sweep      HASH    the integrity sweep's cursors, one per structure
    Q:wake       LIST    0 or 1 element; idle workers block on it instead of polling
    Q:paused     STRING  present while the queue is paused (the time it was paused, ms); set and removed by
                         pause.lua / unpause.lua, honoured by dequeue.lua
    Q:stats      HASH    counters: enqueued, processed, failed, retried, archived, recovered, stale, requeued,
                         corrupt, duplicate, stale_bookkeeping, cancelled, aggregating (members waiting now), run and
                         deleted (operators' actions)
    Q:cancelled  ZSET    task id -> time cancelled (ms): a terminal state, the message kept like the archive's;
                         bounded like the archive
    Q:cancelreq  HASH    task id -> time a cancellation was asked (ms), for tasks running when it was: their
                         worker stops the handler, and a task recovered after a crash is cancelled, not run
    Q:waiters    HASH    task id -> 1 while a client waits for it (Client.wait): its end is then published, the
                         task id on the pub/sub channel of the same name (channels are not keys)
    Q:unique:<h> STRING  a unique task's lock: the id of the task holding it, with a TTL (``unique_s``); <h> is
                         the SHA-1 of the task type and its canonical payload (or its ``unique_key``)
    Q:groups     ZSET    group id "<member type>:<group>" -> when the group is due to be flushed (ms, Redis's
                         clock); two member types never share a group, whatever its name
    Q:groupstart HASH    group id -> when its oldest member joined (ms, Redis's clock)
    Q:group:<id> LIST    the ids of the members of the group waiting to be aggregated, oldest first
    Q:minutes:<hour>  HASH  per-minute counters of one hour (<hour> = hours since the epoch, UTC): fields
                         "p:<minute>" (processed) and "f:<minute>" (failed), <minute> = minutes since the epoch.
                         Written by ack, retry and archive (one HINCRBY per call); each hash expires 25 hours
                         after its last new field, so a queue keeps at most 26 of them: 24 hours of history
    Q:cron:<entry>  STRING  the claim of cron entry <entry> (whose task runs on this queue): the fire time (ms)
                         of its latest fire claimed by any scheduler replica. A fire at or before it is never
                         enqueued again. It shares the queue's hash tag, so claim and enqueue are one script
                         (cron_fire.lua) in one slot; it expires the catch-up window after the entry's next slot

Per service, with ``S = <prefix>:{<service>}``::

    S:workers        ZSET    worker id -> heartbeat expiry (ms); pruned on read
    S:worker:<id>    STRING  heartbeat JSON (service, queues, handlers, concurrency, pid, host, active), with TTL
    S:schedulers     ZSET    scheduler id -> heartbeat expiry (ms), for schedulers firing this service's cron
                             entries; pruned on read
    S:scheduler:<id> STRING  scheduler heartbeat JSON (host, pid, this service's entries with their last and next
                             fire, counters), with TTL

Names are validated here, the one place that formats keys, by the one naming rule (:mod:`router.names`) and
the task id rule (:mod:`router.storage.taskids`). Build key sets from the registry with :func:`queue_keys`,
:func:`service_queue_keys` and :func:`service_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.names import check_name, task_type_problem
from router.registry.model import ServiceSpec
from router.storage.taskids import check_task_id
from router.task import TaskState


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one (service, queue). Build with :meth:`for_queue` so names are validated."""

    prefix: str
    service: str
    queue: str
    base: str

    @classmethod
    def for_queue(cls, prefix: str, service: str, queue: str) -> QueueKeys:
        check_name("prefix", prefix)
        check_name("service", service)
        check_name("queue", queue)
        return cls(prefix, service, queue, f"{prefix}:{{{service}:{queue}}}")

    @property
    def messages(self) -> str:
        return f"{self.base}:msg"

    @property
    def pending(self) -> str:
        return f"{self.base}:pending"

    @property
    def active(self) -> str:
        return f"{self.base}:active"

    @property
    def scheduled(self) -> str:
        return f"{self.base}:scheduled"

    @property
    def retry(self) -> str:
        return f"{self.base}:retry"

    @property
    def archived(self) -> str:
        return f"{self.base}:archived"

    @property
    def completed(self) -> str:
        return f"{self.base}:completed"

    @property
    def done(self) -> str:
        return f"{self.base}:done"

    @property
    def lost(self) -> str:
        return f"{self.base}:lost"

    @property
    def seq(self) -> str:
        return f"{self.base}:seq"

    @property
    def leased(self) -> str:
        return f"{self.base}:leased"

    @property
    def quarantine(self) -> str:
        return f"{self.base}:quarantine"

    @property
    def sweep(self) -> str:
        return f"{self.base}:sweep"

    @property
    def wake(self) -> str:
        return f"{self.base}:wake"

    @property
    def paused(self) -> str:
        return f"{self.base}:paused"

    @property
    def stats(self) -> str:
        return f"{self.base}:stats"

    @property
    def cancelled(self) -> str:
        return f"{self.base}:cancelled"

    @property
    def cancel_requests(self) -> str:
        return f"{self.base}:cancelreq"

    @property
    def waiters(self) -> str:
        return f"{self.base}:waiters"

    def unique(self, digest: str) -> str:
        """The lock of the unique tasks whose key hashes to ``digest`` (hex)."""
        if not digest or len(digest) > 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"invalid unique digest {digest!r}: 1-64 lowercase hex characters")
        return f"{self.base}:unique:{digest}"

    @property
    def groups(self) -> str:
        return f"{self.base}:groups"

    @property
    def group_start(self) -> str:
        return f"{self.base}:groupstart"

    def group(self, group_id: str) -> str:
        """The members waiting in the group ``group_id`` (see :func:`group_id`)."""
        member_type, _, name = group_id.rpartition(":")
        return f"{self.base}:group:{group_id_of(member_type, name)}"

    def minutes(self, hour: int) -> str:
        """The per-minute counters of hour ``hour`` (hours since the epoch), see :func:`hour_of`."""
        return f"{self.base}:minutes:{int(hour)}"

    def cron(self, entry: str) -> str:
        """The claim of the cron entry ``entry``, whose task runs on this queue."""
        return f"{self.base}:cron:{check_name('cron name', entry)}"

    def of_state(self, state: TaskState) -> str:
        """The key holding the ids of tasks in ``state``: a LIST for pending, a ZSET for the others but aggregating,
        whose members sit in one list per group (:meth:`group`; ``Q:stats`` counts them as ``aggregating``)."""
        if state is TaskState.AGGREGATING:
            raise ValueError("aggregating tasks sit in one list per group: use group(name), and groups")
        return f"{self.base}:{state.value}"


def group_id_of(member_type: str, name: str) -> str:
    """The id of group ``name`` of the tasks of ``member_type``: ``<member type>:<name>`` (the name has no colon, so
    the id splits back at its last one)."""
    problem = task_type_problem(member_type)
    if problem is not None:
        raise ValueError(f"invalid {problem}")
    return f"{member_type}:{check_name('group name', name)}"


def split_group_id(group_id: str) -> tuple[str, str]:
    """(member type, group name) of a group id; ValueError when it is not one."""
    member_type, sep, name = group_id.rpartition(":")
    if not sep:
        raise ValueError(f"invalid group id {group_id!r}: expected <member type>:<group name>")
    group_id_of(member_type, name)
    return member_type, name


@dataclass(frozen=True)
class ServiceKeys:
    """Service-wide keys (worker and scheduler heartbeats)."""

    prefix: str
    service: str
    base: str

    @classmethod
    def for_service(cls, prefix: str, service: str) -> ServiceKeys:
        check_name("prefix", prefix)
        check_name("service", service)
        return cls(prefix, service, f"{prefix}:{{{service}}}")

    @property
    def workers(self) -> str:
        return f"{self.base}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.base}:worker:{check_task_id(worker_id)}"

    @property
    def schedulers(self) -> str:
        return f"{self.base}:schedulers"

    def scheduler(self, scheduler_id: str) -> str:
        return f"{self.base}:scheduler:{check_task_id(scheduler_id)}"


#: How long a per-minute counter hash lives after its last new field: the 24 hours of history, plus the hour it
#: covers (it gets new fields until its hour ends).
MINUTES_TTL_S = 25 * 3600


def minute_of(ms: int) -> int:
    """The minute (since the epoch) that the time ``ms`` falls in: the field suffix of ``Q:minutes:<hour>``."""
    return ms // 60_000


def hour_of(ms: int) -> int:
    """The hour (since the epoch) that the time ``ms`` falls in: the suffix of its ``Q:minutes:<hour>`` key."""
    return ms // 3_600_000


def queue_keys(spec: ServiceSpec, queue: str) -> QueueKeys:
    """The keys of ``queue`` of the service ``spec``."""
    return QueueKeys.for_queue(spec.prefix, spec.name, queue)


def service_queue_keys(spec: ServiceSpec) -> list[QueueKeys]:
    """The keys of every queue of the service ``spec``, in declaration order."""
    return [QueueKeys.for_queue(spec.prefix, spec.name, q.name) for q in spec.queues]


def service_keys(spec: ServiceSpec) -> ServiceKeys:
    """The service-wide keys of ``spec``."""
    return ServiceKeys.for_service(spec.prefix, spec.name)
