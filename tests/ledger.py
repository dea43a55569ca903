"""A Jepsen-style ledger for the chaos tests: what producers were told, what handlers ran, and the check at the end.

**Producer side** (in the test process): the outcome of each enqueue by task id. ``ok``: acknowledged (created,
an identical repeat, or a ``TaskIdConflict`` on the repeat of our own unique id: the earlier attempt had landed);
``unknown``: an ``EnqueueOutcomeUnknown`` not (yet) resolved by a repeat with the same id; ``refused``: Redis
refused it (nothing written). :class:`Producer` is a paced producer thread that fills it and repeats unknown
outcomes with the same id, as the README tells users to.

**Handler side** (worker processes): ``tests/fixtures/chaos_app.py`` appends one JSON line per handler start and
one per handler end to ``<dir>/exec-<pid>.jsonl`` when ``CHAOS_LEDGER_DIR`` names the directory (in-process
handlers call :meth:`Ledger.start` and :meth:`Ledger.end`). A file opened ``O_APPEND`` and written one whole
line per ``write``: append-only, and never the Redis under fault.

**Check** (:meth:`Ledger.check`): **lost** = acknowledged ids neither completed (an end record) nor still queued
(pending, scheduled, retry, active) nor archived; **duplicated** = completed executions minus unique completed ids
(at-least-once is the contract: counted and reported, never hidden).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import router
from router.storage.keys import QueueKeys

LEDGER_ENV = "CHAOS_LEDGER_DIR"


def append_record(directory: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line to this process's file in ``directory`` (one ``write``, ``O_APPEND``:
    lines of concurrent handler threads never interleave)."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(os.path.join(directory, f"exec-{os.getpid()}.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Record:
    """One handler start (``end`` is None) or end."""

    id: str
    attempt: int
    pid: int
    start: float
    end: float | None


@dataclass(frozen=True)
class Verdict:
    """The figures of one run."""

    acked: int
    unknown: frozenset[str]
    completed: int
    executions: int
    duplicated: int
    lost: frozenset[str]
    queued: int
    archived: frozenset[str]
    created: int

    def figures(self) -> str:
        return (f"acked {self.acked}, lost {len(self.lost)}, duplicated {self.duplicated} ({self.executions} "
                f"executions of {self.completed} tasks), unknown {len(self.unknown)}, queued {self.queued}, "
                f"archived {len(self.archived)}, created {self.created}")


class Ledger:
    """Both halves of the record, and the check (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._outcomes: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        """Environment for worker processes running tests/fixtures/chaos_app.py."""
        return {LEDGER_ENV: str(self.dir)}

    # -- producer side -------------------------------------------------------------------------------------------
    def ok(self, task_id: str) -> None:
        with self._lock:
            self._outcomes[task_id] = "ok"

    def unknown(self, task_id: str) -> None:
        with self._lock:
            if self._outcomes.get(task_id) != "ok":
                self._outcomes[task_id] = "unknown"

    def refused(self, task_id: str) -> None:
        with self._lock:
            self._outcomes.setdefault(task_id, "refused")

    def ids(self, outcome: str) -> set[str]:
        with self._lock:
            return {t for t, o in self._outcomes.items() if o == outcome}

    # -- handler side ---------------------------------------------------------------------------------------------
    def start(self, task: router.Task) -> float:
        """Record a handler start (in-process handlers); returns its time for :meth:`end`."""
        t = time.time()
        append_record(self.dir, {"ev": "start", "id": task.id, "attempt": task.attempt, "pid": os.getpid(), "t": t})
        return t

    def end(self, task: router.Task, started: float) -> None:
        append_record(self.dir, {"ev": "end", "id": task.id, "attempt": task.attempt, "pid": os.getpid(),
                                 "start": started, "end": time.time()})

    def records(self, pid: int | None = None) -> list[Record]:
        """Every record, or those of one process."""
        out: list[Record] = []
        for path in sorted(self.dir.glob("exec-*.jsonl" if pid is None else f"exec-{pid}.jsonl")):
            for line in path.read_bytes().splitlines():
                try:
                    doc = json.loads(line)
                except ValueError:  # a line cut short by a kill -9 mid-write: not a record
                    continue
                if doc["ev"] == "start":
                    out.append(Record(doc["id"], doc["attempt"], doc["pid"], doc["t"], None))
                else:
                    out.append(Record(doc["id"], doc["attempt"], doc["pid"], doc["start"], doc["end"]))
        return out

    def starts(self, pid: int | None = None) -> list[Record]:
        return [r for r in self.records(pid) if r.end is None]

    def ends(self, pid: int | None = None) -> list[Record]:
        return [r for r in self.records(pid) if r.end is not None]

    def completed_ids(self) -> set[str]:
        return {r.id for r in self.ends()}

    def completions(self) -> Counter[str]:
        return Counter(r.id for r in self.ends())

    # -- the check ------------------------------------------------------------------------------------------------
    def check(self, client: Any, queues: Sequence[QueueKeys]) -> Verdict:
        """Lost and duplicated, from both halves and the queues' state in Redis (``client``: a raw redis-py client)."""
        queued: set[str] = set()
        archived: set[str] = set()
        created = 0
        for q in queues:
            queued.update(x.decode() for x in client.lrange(q.pending, 0, -1))
            for key in (q.scheduled, q.retry):
                queued.update(x.decode() for x in client.zrange(key, 0, -1))
            queued.update(x.decode().rsplit(":", 1)[0] for x in client.zrange(q.active, 0, -1))
            archived.update(x.decode() for x in client.zrange(q.archived, 0, -1))
            created += int(client.hget(q.stats, "enqueued") or 0)
        counts = self.completions()
        acked = self.ids("ok")
        return Verdict(
            acked=len(acked),
            unknown=frozenset(self.ids("unknown")),
            completed=len(counts),
            executions=sum(counts.values()),
            duplicated=sum(counts.values()) - len(counts),
            lost=frozenset(acked - set(counts) - queued - archived),
            queued=len(queued),
            archived=frozenset(archived),
            created=created,
        )


class Producer(threading.Thread):
    """Enqueues ``n`` tasks with unique ids at about ``rate_per_s`` (0: as fast as it can), recording each outcome
    in the ledger; an ``EnqueueOutcomeUnknown`` is repeated with the same id until ``give_up_s`` has passed.

    ``payload(i)`` builds the i-th payload. ``stop()`` ends it early (the task being enqueued is finished first).
    """

    def __init__(self, registry: router.Registry, url: str, ledger: Ledger, n: int, *, rate_per_s: float = 0.0,
                 prefix: str = "t", payload: Callable[[int], Mapping[str, Any]] | None = None,
                 give_up_s: float = 60.0, task_type: str = "chaos.work") -> None:
        super().__init__(daemon=True, name=f"producer-{prefix}")
        self.registry, self.url, self.ledger, self.n = registry, url, ledger, n
        self.rate_per_s, self.prefix, self.give_up_s, self.task_type = rate_per_s, prefix, give_up_s, task_type
        self.payload: Callable[[int], Mapping[str, Any]] = payload or (lambda i: {"i": i})
        self.sent: list[str] = []
        self.unknown_outcomes = 0
        #: Seconds each EnqueueOutcomeUnknown took to come back.
        self.unknown_after_s: list[float] = []
        self.conflicts = 0
        #: Monotonic time of each acknowledgement (for unavailability windows).
        self.acked_at: list[float] = []
        self.refusals: list[str] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._pace = threading.Event()  # never set: its wait paces the loop (it does not wait for work)

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        begun = time.monotonic()
        try:
            with router.Client(self.registry, url=self.url) as client:
                for i in range(self.n):
                    if self._halt.is_set():
                        return
                    self._one(client, f"{self.prefix}-{i:05d}", i)
                    if self.rate_per_s:
                        self._pace.wait(max(0.0, begun + (i + 1) / self.rate_per_s - time.monotonic()))
        except BaseException as exc:
            self.error = exc

    def _one(self, client: router.Client, tid: str, i: int) -> None:
        deadline = time.monotonic() + self.give_up_s
        self.sent.append(tid)
        while True:
            t0 = time.monotonic()
            try:
                client.enqueue(self.task_type, self.payload(i), task_id=tid)
            except router.EnqueueOutcomeUnknown:
                self.unknown_outcomes += 1
                self.unknown_after_s.append(time.monotonic() - t0)
                self.ledger.unknown(tid)
                if time.monotonic() > deadline:
                    return
                self._pace.wait(0.02)  # repeat with the same id, as the README says
                continue
            except router.TaskIdConflict:
                self.conflicts += 1  # our own unique id: an earlier attempt (ours, maybe the client's retry) landed
            except router.BrokerError as exc:
                self.refusals.append(f"{tid}: {exc}")
                self.ledger.refused(tid)
                return
            self.ledger.ok(tid)
            self.acked_at.append(time.monotonic())
            return

    def longest_gap(self, since: float) -> float:
        """The longest wait between two acknowledgements after ``since`` (monotonic): write unavailability."""
        times = [since, *(t for t in self.acked_at if t > since)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def wait_all_settled(ledger: Ledger, client: Any, queues: Iterable[QueueKeys]) -> bool:
    """True when every acknowledged id completed or was archived and nothing is queued (for ``wait_for``)."""
    qs = list(queues)
    v = ledger.check(client, qs)
    return not v.lost and v.queued == 0 and ledger.ids("ok") <= ledger.completed_ids() | v.archived
