"""Helpers for the engine and chaos tests: registries built in code, a fake clock, a deadline poller,
raw Redis access by key schema, and subprocess workers started through the CLI.

Nothing here sleeps to wait for work: :func:`wait_for` polls a condition with a short interval and fails with a
message naming what it waited for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.cluster
import yaml

from router.redisurl import is_cluster_url
from router.registry.model import PriorityMode, QueueSpec, Registry, ServiceSpec, TaskSpec
from router.storage.keys import QueueKeys, ServiceKeys
from router.worker.worker import WorkerSettings

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# --- waiting and time -------------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what} (last value: {value!r})"
            )
        time.sleep(interval_s)


class FakeClock:
    """An injectable clock (seconds since the epoch); ``tick_s`` advances it on every read (ordering)."""

    def __init__(self, start: float = 1_700_000_000.0, tick_s: float = 0.0) -> None:
        self.now = start
        self.tick_s = tick_s
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            value = self.now
            self.now += self.tick_s
            return value

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


# --- registries built in code -----------------------------------------------------------------------------------

ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


def task(queue: str = "default", schema: Mapping[str, Any] | None = None, **policy: Any) -> dict[str, Any]:
    """A task declaration for :func:`build_registry`: queue, payload schema and TaskSpec policy fields."""
    return {"queue": queue, "schema": dict(schema or ANY_OBJECT), **policy}


def build_registry(
    url: str,
    services: Mapping[str, Mapping[str, Any]],
    *,
    max_payload_bytes: int = 512 * 1024,
) -> Registry:
    """A Registry without the YAML loader.

    ``services`` maps a service name to ``{"queues": {name: weight}, "tasks": {type: task(...)},
    "priority": "strict"|"weighted", "prefix": str, "concurrency": int, "app": "mod:attr"}``.
    """
    all_tasks: dict[str, TaskSpec] = {}
    specs: dict[str, ServiceSpec] = {}
    for name, svc in services.items():
        queues = tuple(QueueSpec(q, w) for q, w in dict(svc.get("queues", {"default": 1})).items())
        tasks: dict[str, TaskSpec] = {}
        for ttype, declared in dict(svc.get("tasks", {})).items():
            decl = dict(declared)
            queue = decl.pop("queue", "default")
            schema = decl.pop("schema", ANY_OBJECT)
            tasks[ttype] = TaskSpec(ttype, name, queue, schema, **decl)
        all_tasks.update(tasks)
        specs[name] = ServiceSpec(
            name,
            svc.get("prefix", name),
            queues,
            tasks,
            app=svc.get("app"),
            concurrency=svc.get("concurrency", 10),
            priority=PriorityMode(svc.get("priority", "weighted")),
        )
    return Registry(specs, all_tasks, redis_url=url, max_payload_bytes=max_payload_bytes)


def write_registry_yaml(path: Path, services: Mapping[str, Mapping[str, Any]], url: str) -> Path:
    """The same declaration as :func:`build_registry`, as a services.yaml for subprocess workers."""
    doc: dict[str, Any] = {"version": 1, "redis": {"url": url}, "services": {}}
    for name, svc in services.items():
        out: dict[str, Any] = {
            "queues": {q: {"weight": w} for q, w in dict(svc.get("queues", {"default": 1})).items()}
        }
        for opt in ("prefix", "app", "concurrency", "priority"):
            if opt in svc:
                out[opt] = svc[opt]
        out["tasks"] = {}
        targets = {d["aggregate"].into for d in dict(svc.get("tasks", {})).values() if d.get("aggregate")}
        for ttype, declared in dict(svc.get("tasks", {})).items():
            decl = dict(declared)
            entry: dict[str, Any] = {"queue": decl.pop("queue", "default")}
            schema = dict(decl.pop("schema", ANY_OBJECT))
            if ttype not in targets:  # an aggregate's schema is derived from its members'
                entry["payload"] = schema
            entry.update({k: _yaml_value(v) for k, v in decl.items()})
            out["tasks"][ttype] = entry
        doc["services"][name] = out
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _yaml_value(value: Any) -> Any:
    """A TaskSpec field as services.yaml spells it (an AggregateSpec as a mapping, an enum as its value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value.value if isinstance(value, enum.Enum) else value


def fast_settings(**overrides: Any) -> WorkerSettings:
    """Compressed timings for in-process workers."""
    base: dict[str, Any] = dict(
        concurrency=4,
        lease_s=2.0,
        shutdown_timeout_s=2.0,
        heartbeat_s=0.2,
        maintenance_s=0.2,
        recovery_grace_s=0.2,
    )
    base.update(overrides)
    return WorkerSettings(**base)


# --- Redis access ---------------------------------------------------------------------------------------------


def router_url(url: str, is_cluster: bool) -> str:
    """The URL router needs: cluster fixtures hand out ``redis://`` node URLs, router wants ``redis+cluster://``."""
    if is_cluster and not is_cluster_url(url):
        return url.replace("redis://", "redis+cluster://", 1)
    return url


def raw_client(url: str) -> redis.Redis | redis.cluster.RedisCluster:
    """A plain redis-py client (bytes replies) for inspecting state; works for single and cluster URLs."""
    if is_cluster_url(url):
        return redis.cluster.RedisCluster.from_url(url.replace("+cluster", "", 1))
    return redis.Redis.from_url(url)


def qk(registry: Registry, service: str, queue: str = "default") -> QueueKeys:
    spec = registry.services[service]
    return QueueKeys.for_queue(spec.prefix, service, queue)


def sk(registry: Registry, service: str) -> ServiceKeys:
    spec = registry.services[service]
    return ServiceKeys.for_service(spec.prefix, service)


def dbsize(client: redis.Redis | redis.cluster.RedisCluster) -> int:
    """Keys in the whole deployment (summed over masters for a cluster)."""
    if isinstance(client, redis.cluster.RedisCluster):
        return sum(int(n.redis_connection.dbsize()) for n in client.get_primaries())  # type: ignore[union-attr]
    return int(client.dbsize())


def stats(client: Any, q: QueueKeys) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(q.stats).items()}


def archived(client: Any, q: QueueKeys) -> dict[str, dict[str, Any]]:
    """Archived task id -> decoded stored envelope (or the raw bytes when it is not JSON)."""
    out: dict[str, dict[str, Any]] = {}
    for raw_id in client.zrange(q.archived, 0, -1):
        env = client.hget(q.messages, raw_id)
        out[raw_id.decode("utf-8", "surrogateescape")] = json.loads(env) if env is not None else {}
    return out


# --- subprocess workers -------------------------------------------------------------------------------------------


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(FIXTURES), str(REPO), str(FIXTURES.parent)]  # tests/ for the chaos app's ledger
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class WorkerProcess:
    """A ``python -m router worker`` subprocess whose JSON log lines are collected from stderr."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _reader: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict):
                        self.events.append(doc)

    def event_names(self) -> list[str]:
        with self._lock:
            return [str(e.get("event")) for e in self.events]

    def has_event(self, name: str) -> bool:
        return name in self.event_names()

    def find(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def log_tail(self, n: int = 40) -> str:
        with self._lock:
            return "\n".join(self.lines[-n:])

    def kill(self) -> None:
        """Stop it for good (teardown): SIGCONT first in case it is stopped, then SIGKILL."""
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)


def start_worker(
    registry_path: Path,
    service: str,
    url: str,
    *,
    concurrency: int = 4,
    lease_s: float = 2.0,
    shutdown_timeout_s: float = 3.0,
    maintenance_s: float = 0.5,
    heartbeat_s: float = 0.5,
    recovery_grace_s: float = 0.2,
    processes: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> WorkerProcess:
    args = [
        sys.executable, "-m", "router", "worker",
        "--registry", str(registry_path), "--service", service, "--url", url,
        "--concurrency", str(concurrency), "--lease-s", str(lease_s),
        "--shutdown-timeout-s", str(shutdown_timeout_s), "--maintenance-s", str(maintenance_s),
        "--heartbeat-s", str(heartbeat_s), "--recovery-grace-s", str(recovery_grace_s),
        "--log-format", "json", *extra_args,
    ]  # fmt: skip
    if processes is not None:
        args += ["--processes", str(processes)]
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env=subprocess_env(extra_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    wp = WorkerProcess(proc)
    wp._reader = threading.Thread(target=wp._read, daemon=True)
    wp._reader.start()
    return wp


@contextlib.contextmanager
def workers() -> Iterator[list[WorkerProcess]]:
    """Collects started worker processes and kills any still running at the end (by their own PIDs)."""
    started: list[WorkerProcess] = []
    try:
        yield started
    finally:
        for wp in started:
            wp.kill()


# --- the chaos service ------------------------------------------------------------------------------------------

CHAOS_SERVICES: dict[str, Any] = {
    "chaos": {
        "app": "chaos_app:app",
        "queues": {"default": 1},
        "tasks": {"chaos.work": task("default", max_retry=3, timeout_s=60)},
    }
}
PLACEHOLDER_URL = "redis://127.0.0.1:1/0"  # never used: workers get --url, tests pass url= explicitly


@dataclass
class Recorder:
    """Reads what tests/fixtures/chaos_app.py handlers recorded in the record Redis."""

    client: redis.Redis
    ns: str

    def entries(self, what: str) -> list[tuple[str, int, int]]:
        out = []
        for raw in self.client.lrange(f"{self.ns}:{what}", 0, -1):
            tid, pid, attempt = raw.decode().split()
            out.append((tid, int(pid), int(attempt)))
        return out

    def count(self, what: str) -> int:
        return int(self.client.llen(f"{self.ns}:{what}"))

    def open_gate(self, gate: str, tokens: int = 1) -> None:
        """Release handlers waiting on ``gate``. A frozen (SIGSTOPped) process's blocked BLPOP still takes a
        token when Redis serves it first, so give one token per frozen waiter on top."""
        self.client.lpush(f"{self.ns}:gate:{gate}", *["open"] * tokens)

    def per_task(self, what: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tid, _, _ in self.entries(what):
            counts[tid] = counts.get(tid, 0) + 1
        return counts


def chaos_env(record_url: str, ns: str) -> dict[str, str]:
    return {"CHAOS_RECORD_URL": record_url, "CHAOS_NS": ns}
