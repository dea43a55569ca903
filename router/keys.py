"""Every Redis key name router uses; this docstring is the key schema.

All keys of a service start with ``<prefix>:`` where ``<prefix>`` is the service's registry prefix (colon-free,
so one ACL pattern ``~<prefix>:*`` covers exactly one service). Keys of one (service, queue) share the hash tag
``{<service>:<queue>}``, so a queue lives in one cluster slot and same-named queues of different services land in
different slots. Service-wide keys use the tag ``{<service>}``.

Per (service, queue), with ``Q = <prefix>:{<service>:<queue>}``::

    Q:msg        HASH    task id -> envelope (JSON, see schemas/task-envelope.schema.json); one hash per queue
                         keeps the memory per pending task near 200 bytes
    Q:pending    LIST    task ids ready to run; producers LPUSH, workers RPOP (oldest first)
    Q:active     ZSET    "<task id>:<delivery token>" -> lease deadline (ms); the token fences stale workers
    Q:scheduled  ZSET    task id -> time to enqueue (ms)
    Q:retry      ZSET    task id -> time to retry (ms)
    Q:archived   ZSET    task id -> time archived (ms); the dead letter, bounded by size and age
    Q:completed  ZSET    task id -> time its retained result expires (ms)
    Q:done       ZSET    task id -> time completed (ms), for tasks not retained: a tombstone that keeps a late
                         repeat of the enqueue (after an unknown outcome) from running the task twice; bounded
                         by age and count
    Q:lost       HASH    task id -> number of deliveries whose lease expired (crash recovery counter)
    Q:seq        STRING  delivery token counter
    Q:wake       LIST    0 or 1 element; idle workers block on it instead of polling
    Q:paused     STRING  present while the queue is paused
    Q:stats      HASH    counters: enqueued, processed, failed, retried, archived, recovered, stale, requeued

Per service, with ``S = <prefix>:{<service>}``::

    S:workers        ZSET    worker id -> heartbeat expiry (ms); pruned on read
    S:worker:<id>    STRING  heartbeat JSON (service, queues, handlers, concurrency, pid, host, active), with TTL

Names are validated here, the one place that formats keys: no braces, whitespace or colons in service and queue
names, no braces or whitespace in prefixes, all bounded in length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_TASK_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_TASK_ID_LEN = 128


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid service, queue or prefix name, else raise ValueError saying why."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"invalid {kind} {value!r}: use 1-64 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit (no braces, colons or whitespace)"
        )
    return value


def check_task_id(value: str) -> str:
    """Return ``value`` if it is a valid task id (1-128 printable ASCII, no braces, no whitespace)."""
    if not isinstance(value, str) or not _TASK_ID.match(value) or "{" in value or "}" in value:
        raise ValueError(
            f"invalid task id {value!r}: use 1-{MAX_TASK_ID_LEN} printable ASCII characters without "
            "braces or whitespace"
        )
    return value


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
    def wake(self) -> str:
        return f"{self.base}:wake"

    @property
    def paused(self) -> str:
        return f"{self.base}:paused"

    @property
    def stats(self) -> str:
        return f"{self.base}:stats"


@dataclass(frozen=True)
class ServiceKeys:
    """Service-wide keys (worker heartbeats)."""

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
