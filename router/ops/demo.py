"""``router demo``: the example fleet on a throwaway Redis, showing that each task reaches its owner only.

It starts its own redis-server, one worker process per service of the registry and, when the registry has cron
entries, one ``router scheduler`` (all through the CLI, as a user would). It enqueues a mixed batch of every
declared task type, waits until all are done, and reads back every retained result to show which service handled
it. It shows the guard refusing a misspelled type and a bad payload, a unique task refusing its duplicate, a
delayed task cancelled and a group of tasks aggregated into one, waits for the cron entry that fires soonest to
fire and be handled, prints what ``router status`` shows (schedulers, each entry's last and next fire), and stops
everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from router.errors import DuplicateTask, GuardError, RouterError
from router.ops.inspector import Inspector
from router.ops.localredis import RedisServer
from router.ops.samples import sample
from router.ops.status import gather, render
from router.producer.client import Client
from router.registry.loader import load
from router.registry.model import Registry, TaskSpec
from router.registry.payloads import payload_validator
from router.scheduler.entries import Entry, cron_task_id, select_entries
from router.storage.broker import SyncBroker
from router.storage.connection import Role, connect
from router.storage.envelope import MalformedMessage, decode
from router.storage.keys import QueueKeys, queue_keys

Say = Callable[[str], None]
#: What ``_who_handled`` records instead of a service name for a task nobody completed.
NOT_HANDLED = frozenset({"<not completed>", "<missing>"})

#: The demo waits for a cron fire only if some entry fires within this long (the example fleet's every 5 s).
CRON_WAIT_S = 8.0


@dataclass(frozen=True)
class DemoResult:
    """What the demo observed: tasks handled per (owner, handling service), failures, and the cron fire shown."""

    enqueued: int
    handled: dict[tuple[str, str], int]
    unfinished: int
    seconds: float
    #: The cron fire the demo waited for: (entry, owning service, service that handled it); None if none fired.
    cron: tuple[str, str, str] | None = None

    @property
    def misrouted(self) -> int:
        """Tasks completed by a service other than their owner (unfinished ones are not misrouted), and the cron
        fire when another service handled it."""
        wrong_cron = self.cron is not None and self.cron[1] != self.cron[2]
        return sum(n for (owner, by), n in self.handled.items() if owner != by and by not in NOT_HANDLED) \
            + int(wrong_cron)


def run_demo(registry_path: str, per_type: int = 50, say: Say = print, timeout_s: float = 25.0) -> DemoResult:
    """Run the whole demo; raises RouterError subclasses for a bad registry or a fleet that does not finish."""
    started = time.monotonic()
    registry = load(registry_path)
    with RedisServer() as server:
        say(f"started a throwaway Redis at {server.url} (pid {server.pid})")
        procs = _start_workers(registry_path, registry, server.url, say)
        if registry.cron:
            procs.append(_start_scheduler(registry_path, server.url, say))
        try:
            client = Client(registry, url=server.url)
            ids = _enqueue_batch(registry, client, per_type, say)
            _show_guard(client, registry, say)
            _show_lifecycle(client, registry, say)
            unfinished = _wait_done(registry, server.url, ids, timeout_s, say)
            handled = _who_handled(registry, server.url, ids)
            cron = _show_cron(registry, server.url, say) if registry.cron else None
            client.close()
        finally:
            _stop_processes(procs, say)
    result = DemoResult(len(ids), handled, unfinished, time.monotonic() - started, cron)
    _print_table(registry, result, say)
    return result


def _start_workers(path: str, registry: Registry, url: str, say: Say) -> list[subprocess.Popen[bytes]]:
    procs = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    for name in registry.services:
        cmd = [sys.executable, "-m", "router", "worker", "--registry", path, "--service", name, "--url", url,
               "--log-format", "json", "--log-level", "ERROR"]
        procs.append(subprocess.Popen(cmd, env=env))
        say(f"started worker for service {name!r} (pid {procs[-1].pid})")
    return procs


def _start_scheduler(path: str, url: str, say: Say) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "router", "scheduler", "--registry", path, "--url", url, "--log-format", "json",
           "--log-level", "ERROR"]
    proc = subprocess.Popen(cmd, env=env)
    say(f"started the cron scheduler (pid {proc.pid})")
    return proc


def _enqueue_batch(registry: Registry, client: Client, per_type: int, say: Say) -> dict[str, str]:
    """Enqueue ``per_type`` tasks of every declared type, interleaved; returns task id -> type."""
    items = []
    skipped: set[str] = set()
    aggregated = {spec.type for spec in registry.tasks.values() if spec.aggregate is not None} | \
        {spec.aggregate.into for spec in registry.tasks.values() if spec.aggregate is not None}
    for i in range(per_type):
        for task_type, spec in registry.tasks.items():
            if task_type in aggregated:  # shown on their own by _show_lifecycle
                continue
            payload = sample(spec.payload_schema, seed=i)
            if payload_validator(spec).is_valid(payload):
                items.append((task_type, payload))
            else:
                skipped.add(task_type)
    if skipped:
        say(f"(no sample payload could be generated for {sorted(skipped)}; the demo leaves them out)")
    infos = client.enqueue_many(items)
    kinds = Counter(info.service for info in infos)
    say(f"enqueued {len(infos)} tasks in one round trip: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    return {info.id: info.type for info in infos}


def _show_guard(client: Client, registry: Registry, say: Say) -> None:
    some_type = next(iter(registry.tasks))
    for task_type, payload in ((some_type[:-1], {}), (some_type, {"unexpected": object()})):
        try:
            client.enqueue(task_type, payload)
        except GuardError as exc:
            say(f"guard refused enqueue({task_type!r}): {type(exc).__name__}: {exc}")


def _show_lifecycle(client: Client, registry: Registry, say: Say) -> None:
    """Show a unique task refusing its duplicate, a delayed task cancelled, and a group aggregated into one task,
    with whatever types of the registry can show them."""
    plain = [s for s in registry.tasks.values() if s.aggregate is None and s.unique_s is None]
    unique = next((s for s in registry.tasks.values() if s.unique_s is not None and s.aggregate is None), None)
    if unique is not None and _valid(unique, payload := sample(unique.payload_schema, seed=1000)):
        first = client.enqueue(unique.type, payload)
        try:
            client.enqueue(unique.type, payload)
        except DuplicateTask as exc:
            say(f"unique: a second {unique.type!r} with the same payload was refused (DuplicateTask): task "
                f"{exc.existing_id} holds the lock{' (the first one)' if exc.existing_id == first.id else ''}")
    if plain and _valid(plain[0], payload := sample(plain[0].payload_schema, seed=1001)):
        later = client.enqueue(plain[0].type, payload, process_in=3600)
        outcome = client.cancel(later).outcome.value
        say(f"cancel: {plain[0].type!r} {later.id}, scheduled in an hour, was {outcome}; get_task now says "
            f"{client.get_task(later).state.value}")
    member = next((s for s in registry.tasks.values() if s.aggregate is not None), None)
    if member is not None and member.aggregate is not None:
        payloads = [sample(member.payload_schema, seed=i) for i in range(3)]
        if all(_valid(member, p) for p in payloads):
            infos = [client.enqueue(member.type, p, group="demo") for p in payloads]
            done = client.wait(infos[-1], timeout_s=member.aggregate.max_delay_s + 10)
            say(f"aggregation: 3 {member.type!r} tasks in group 'demo' waited {member.aggregate.grace_s:g} s for "
                f"more, then became one {member.aggregate.into!r} task (each member is now {done.state.value})")


def _valid(spec: TaskSpec, payload: Any) -> bool:
    return bool(payload_validator(spec).is_valid(payload))


def _wait_done(registry: Registry, url: str, ids: dict[str, str], timeout_s: float, say: Say) -> int:
    """Wait until every task of the batch is completed or archived; returns how many are not."""
    broker = SyncBroker(connect(url, Role.CONSUMER))
    by_queue = _by_queue(registry, ids)
    deadline = time.monotonic() + timeout_s
    last = -1
    try:
        while True:
            done = sum(1 for qk, task_ids in by_queue.items() for raw in broker.messages(qk, task_ids)
                       if _finished(raw))
            if done != last:
                say(f"progress: {done}/{len(ids)} done")
                last = done
            if done >= len(ids) or time.monotonic() > deadline:
                return len(ids) - done
            time.sleep(0.05)  # progress polling for a human, not a test
    finally:
        broker.close()


def _finished(raw: bytes | None) -> bool:
    try:
        env = decode(raw)
    except MalformedMessage:
        return False
    return env.completed_by is not None or env.reason is not None


def _by_queue(registry: Registry, ids: dict[str, str]) -> dict[QueueKeys, list[str]]:
    by_queue: dict[QueueKeys, list[str]] = {}
    for task_id, task_type in ids.items():
        spec = registry.tasks[task_type]
        by_queue.setdefault(queue_keys(registry.services[spec.service], spec.queue), []).append(task_id)
    return by_queue


def _who_handled(registry: Registry, url: str, ids: dict[str, str]) -> dict[tuple[str, str], int]:
    broker = SyncBroker(connect(url, Role.CONSUMER))
    handled: Counter[tuple[str, str]] = Counter()
    try:
        for qk, task_ids in _by_queue(registry, ids).items():
            for raw in broker.messages(qk, task_ids):
                try:
                    env = decode(raw)
                except MalformedMessage:
                    handled[(qk.service, "<missing>")] += 1
                    continue
                by = (env.completed_by or "<not completed>").split("/", 1)[0]
                handled[(registry.tasks[env.type].service, by)] += 1
    finally:
        broker.close()
    return dict(handled)


def _show_cron(registry: Registry, url: str, say: Say) -> tuple[str, str, str] | None:
    """Wait for the entry that fires soonest to fire and its task to be handled; then show what `router status`
    shows. Returns (entry, owner, handled by), or None when no entry fires within CRON_WAIT_S."""
    now = int(time.time())
    upcoming = [(e.schedule.next_after(now), e) for e in select_entries(registry)]
    soon = sorted((t, i, e) for i, (t, e) in enumerate(upcoming) if t is not None and t - now <= CRON_WAIT_S)
    shown = None
    if not soon:
        say(f"(no cron entry fires within {CRON_WAIT_S:g} s; `router status` below shows when each fires next)")
    else:
        entry = soon[0][2]
        say(f"waiting for cron entry {entry.name!r} ({entry.spec.spec!r}, {entry.spec.timezone}) to fire...")
        shown = _wait_cron_fire(entry, url, say)
    inspector = Inspector(registry, url)
    try:
        say("")
        say("`router status` now:")
        for line in render(gather(inspector)):
            say(line)
    finally:
        inspector.close()
    return shown


def _wait_cron_fire(entry: Entry, url: str, say: Say) -> tuple[str, str, str] | None:
    broker = SyncBroker(connect(url, Role.CONSUMER))
    deadline = time.monotonic() + CRON_WAIT_S + 5
    try:
        while time.monotonic() < deadline:
            (claim_ms,) = broker.cron_claims([entry.keys.cron(entry.name)])
            if claim_ms is not None:
                task_id = cron_task_id(entry.name, claim_ms // 1000)
                (raw,) = broker.messages(entry.keys, [task_id])
                with contextlib.suppress(MalformedMessage):
                    env = decode(raw)
                    if env.completed_by is not None:
                        by = env.completed_by.split("/", 1)[0]
                        at = datetime.fromtimestamp(claim_ms / 1000, ZoneInfo(entry.spec.timezone))
                        say(f"cron entry {entry.name!r} fired at {at.isoformat()}: task {task_id} "
                            f"({entry.spec.task}) handled by service {by!r}, its owner {entry.service.name!r}")
                        return entry.name, entry.service.name, by
            time.sleep(0.05)  # progress polling for a human, not a test
    finally:
        broker.close()
    say(f"cron entry {entry.name!r} did not fire and complete in time")
    return None


def _stop_processes(procs: list[subprocess.Popen[bytes]], say: Say) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    say("stopped the workers and the scheduler: " + ", ".join(f"pid {p.pid} exit {p.returncode}" for p in procs))


def _print_table(registry: Registry, result: DemoResult, say: Say) -> None:
    say("")
    say(f"{'service':<12} {'tasks':>6} {'handled by owner':>17} {'handled by another':>19}")
    for name in registry.services:
        mine = {k: v for k, v in result.handled.items() if k[0] == name}
        own = sum(v for (o, b), v in mine.items() if b == name)
        other = sum(v for (o, b), v in mine.items() if b != name and b not in NOT_HANDLED)
        say(f"{name:<12} {sum(mine.values()):>6} {own:>17} {other:>19}")
    say(json.dumps({"enqueued": result.enqueued, "misrouted": result.misrouted, "unfinished": result.unfinished,
                    "cron_fire_handled_by_owner": None if result.cron is None else result.cron[1] == result.cron[2],
                    "seconds": round(result.seconds, 2)}))


__all__ = ["DemoResult", "RouterError", "run_demo"]
