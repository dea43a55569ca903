"""The contenders: how to produce for each one and how to start its worker, as plain data.

The harness never imports a contender's library itself: producers and workers run in their own processes
(:mod:`benchmarks.produce` and each library's worker CLI or a runner module), so libraries cannot interfere.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from typing import Literal

from benchmarks.peers.base import CONCURRENCY, QUEUE

Kind = Literal["router", "peer", "limit"]

_C = str(CONCURRENCY)


@dataclass(frozen=True)
class Contender:
    """One library in one mode.

    ``single``/``bulk`` say which of W1 (one call per task) and W1b (batches of 100) are measured and
    reported; ``can_bulk`` says whether the producer has ``enqueue_many`` (then used to preload quickly).
    ``worker`` is the argv after the Python executable; ``{url}`` in it is replaced by the Redis URL.
    """

    name: str
    kind: Kind
    mode: str
    module: str
    worker: tuple[str, ...]
    packages: tuple[str, ...]
    single: bool = True
    bulk: bool = False
    can_bulk: bool = False

    def worker_argv(self, url: str) -> list[str]:
        """The full command line of one worker process."""
        return [sys.executable, *(arg.replace("{url}", url) for arg in self.worker)]

    def unavailable(self) -> str | None:
        """Why this contender cannot run here (a missing package or API), or None."""
        if self.kind == "router":
            try:
                router = importlib.import_module("router")
            except ImportError as exc:
                return f"router is not importable: {exc}"
            missing = [n for n in ("Client", "Worker", "Service", "load") if not hasattr(router, n)]
            return f"router lacks {', '.join(missing)} (engine not landed yet)" if missing else None
        missing = [p for p in self.packages if importlib.util.find_spec(p.replace("-", "_")) is None]
        return f"not installed: {', '.join(missing)}" if missing else None


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        "router", "router", "sync handler, 10 threads",
        "benchmarks.peers.router_app", ("-m", "benchmarks.peers.router_app"),
        ("router", "redis", "hiredis"), bulk=True, can_bulk=True,
    ),
    Contender(
        "router-metrics", "router", "sync handler, 10 threads, Prometheus metrics on (served on a free port)",
        "benchmarks.peers.router_app", ("-m", "benchmarks.peers.router_app", "--metrics"),
        ("router", "redis", "hiredis", "prometheus_client"), single=False, can_bulk=True,
    ),
    Contender(
        "router-async", "router", "async handler (redis.asyncio), concurrency 10",
        "benchmarks.peers.router_async_app", ("-m", "benchmarks.peers.router_app", "--async"),
        ("router", "redis", "hiredis"), single=False, can_bulk=True,
    ),
    Contender(
        "limit-1", "limit", "bare redis-py: LPUSH; BLMOVE + RPUSH one at a time, 1 thread; W1b pipelined 100",
        "benchmarks.peers.limit_app", ("-m", "benchmarks.peers.limit_app", "--batch", "1"),
        ("redis", "hiredis"), bulk=True, can_bulk=True,
    ),
    Contender(
        "limit-100", "limit", "bare redis-py: LMOVE x100 then RPUSH x100, pipelined, 1 thread",
        "benchmarks.peers.limit_app", ("-m", "benchmarks.peers.limit_app", "--batch", "100"),
        ("redis", "hiredis"), single=False, can_bulk=True,
    ),
    Contender(
        "limit-threads", "limit",
        f"bare redis-py: LMOVE x100 pipelined into {_C} threads, each running the shared handler (one RPUSH)",
        "benchmarks.peers.limit_app", ("-m", "benchmarks.peers.limit_app", "--batch", "100", "--threads", _C),
        ("redis", "hiredis"), single=False, can_bulk=True,
    ),
    Contender(
        "huey", "peer", f"RedisHuey, -k thread -w {_C}, BRPOP, results off, at-most-once",
        "benchmarks.peers.huey_app",
        ("-m", "huey.bin.huey_consumer", "benchmarks.peers.huey_app.huey", "-k", "thread", "-w", _C, "-q"),
        ("huey",),
    ),
    Contender(
        "dramatiq", "peer", f"RedisBroker, --processes 1 --threads {_C}, default middleware",
        "benchmarks.peers.dramatiq_app",
        ("-m", "dramatiq", "benchmarks.peers.dramatiq_app", "--processes", "1", "--threads", _C),
        ("dramatiq",),
    ),
    Contender(
        "saq", "peer", f"Queue.from_url, concurrency {_C}, asyncio",
        "benchmarks.peers.saq_app", ("-m", "saq", "benchmarks.peers.saq_app.settings"),
        ("saq",),
    ),
    Contender(
        "arq", "peer", f"max_jobs={_C}, default 0.5 s poll, asyncio, logging WARNING",
        "benchmarks.peers.arq_app", ("-m", "benchmarks.peers.arq_app"),
        ("arq",),
    ),
    Contender(
        "rq", "peer", f"worker-pool -n {_C} of SimpleWorker (no fork per job)",
        "benchmarks.peers.rq_app",
        ("-m", "rq.cli", "worker-pool", "-n", _C, "-w", "rq.worker.SimpleWorker", "-u", "{url}", "-q", QUEUE),
        ("rq",), bulk=True, can_bulk=True,
    ),
    Contender(
        "taskiq", "peer", f"taskiq-redis RedisStreamBroker, --workers 1 --max-async-tasks {_C}",
        "benchmarks.peers.taskiq_app",
        ("-m", "taskiq", "worker", "benchmarks.peers.taskiq_app:broker", "--workers", "1",
         "--max-async-tasks", _C, "--log-level", "WARNING"),
        ("taskiq", "taskiq-redis"),
    ),
    Contender(
        "celery", "peer", f"Redis broker, -P threads -c {_C}, without gossip/mingle/heartbeat",
        "benchmarks.peers.celery_app",
        ("-m", "celery", "-A", "benchmarks.peers.celery_app", "worker", "-P", "threads", "-c", _C,
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING", "-Q", QUEUE),
        ("celery", "kombu"),
    ),
)  # fmt: skip

BY_NAME = {c.name: c for c in CONTENDERS}
