"""``router demo``: the example fleet on a throwaway Redis, showing that each task reaches its owner only.

It starts its own redis-server, one worker process per service of the registry (through ``router worker``, as a
user would), enqueues a mixed batch of every declared task type, waits until all are done, and reads back every
retained result to show which service handled it. Then it shows the guard refusing a misspelled type and a bad
payload, and stops everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from router.errors import GuardError, RouterError
from router.ops.localredis import RedisServer
from router.ops.samples import sample
from router.producer.client import Client
from router.registry.loader import load
from router.registry.model import Registry
from router.registry.payloads import payload_validator
from router.storage.broker import SyncBroker
from router.storage.connection import Role, connect
from router.storage.envelope import MalformedMessage, decode
from router.storage.keys import QueueKeys, queue_keys, service_queue_keys

Say = Callable[[str], None]
#: What ``_who_handled`` records instead of a service name for a task nobody completed.
NOT_HANDLED = frozenset({"<not completed>", "<missing>"})


@dataclass(frozen=True)
class DemoResult:
    """What the demo observed: tasks handled per (owner, handling service), and failures."""

    enqueued: int
    handled: dict[tuple[str, str], int]
    unfinished: int
    seconds: float

    @property
    def misrouted(self) -> int:
        """Tasks completed by a service other than their owner (unfinished ones are not misrouted)."""
        return sum(n for (owner, by), n in self.handled.items() if owner != by and by not in NOT_HANDLED)


def run_demo(registry_path: str, per_type: int = 50, say: Say = print, timeout_s: float = 25.0) -> DemoResult:
    """Run the whole demo; raises RouterError subclasses for a bad registry or a fleet that does not finish."""
    started = time.monotonic()
    registry = load(registry_path)
    with RedisServer() as server:
        say(f"started a throwaway Redis at {server.url} (pid {server.pid})")
        workers = _start_workers(registry_path, registry, server.url, say)
        try:
            client = Client(registry, url=server.url)
            ids = _enqueue_batch(registry, client, per_type, say)
            _show_guard(client, registry, say)
            unfinished = _wait_done(registry, server.url, len(ids), timeout_s, say)
            handled = _who_handled(registry, server.url, ids)
            client.close()
        finally:
            _stop_workers(workers, say)
    result = DemoResult(len(ids), handled, unfinished, time.monotonic() - started)
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


def _enqueue_batch(registry: Registry, client: Client, per_type: int, say: Say) -> dict[str, str]:
    """Enqueue ``per_type`` tasks of every declared type, interleaved; returns task id -> type."""
    items = []
    skipped: set[str] = set()
    for i in range(per_type):
        for task_type, spec in registry.tasks.items():
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


def _wait_done(registry: Registry, url: str, total: int, timeout_s: float, say: Say) -> int:
    broker = SyncBroker(connect(url, Role.CONSUMER))
    queues = _all_queues(registry)
    deadline = time.monotonic() + timeout_s
    last = -1
    try:
        while True:
            sizes = broker.queue_sizes(queues)
            done = sum(s["completed"] + s["archived"] for s in sizes)
            if done != last:
                say(f"progress: {done}/{total} done")
                last = done
            if done >= total or time.monotonic() > deadline:
                return total - done
            time.sleep(0.05)  # progress polling for a human, not a test
    finally:
        broker.close()


def _who_handled(registry: Registry, url: str, ids: dict[str, str]) -> dict[tuple[str, str], int]:
    broker = SyncBroker(connect(url, Role.CONSUMER))
    handled: Counter[tuple[str, str]] = Counter()
    try:
        by_queue: dict[QueueKeys, list[str]] = {}
        for task_id, task_type in ids.items():
            spec = registry.tasks[task_type]
            qk = queue_keys(registry.services[spec.service], spec.queue)
            by_queue.setdefault(qk, []).append(task_id)
        for qk, task_ids in by_queue.items():
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


def _all_queues(registry: Registry) -> list[QueueKeys]:
    return [qk for s in registry.services.values() for qk in service_queue_keys(s)]


def _stop_workers(procs: list[subprocess.Popen[bytes]], say: Say) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    say("stopped all workers: " + ", ".join(f"pid {p.pid} exit {p.returncode}" for p in procs))


def _print_table(registry: Registry, result: DemoResult, say: Say) -> None:
    say("")
    say(f"{'service':<12} {'tasks':>6} {'handled by owner':>17} {'handled by another':>19}")
    for name in registry.services:
        mine = {k: v for k, v in result.handled.items() if k[0] == name}
        own = sum(v for (o, b), v in mine.items() if b == name)
        other = sum(v for (o, b), v in mine.items() if b != name and b not in NOT_HANDLED)
        say(f"{name:<12} {sum(mine.values()):>6} {own:>17} {other:>19}")
    say(json.dumps({"enqueued": result.enqueued, "misrouted": result.misrouted, "unfinished": result.unfinished,
                    "seconds": round(result.seconds, 2)}))


__all__ = ["DemoResult", "RouterError", "run_demo"]
