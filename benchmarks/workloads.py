"""The workloads, run against one contender at a time on a flushed Redis.

Each ``run_*`` function fills a :class:`Record` with figures (see :data:`benchmarks.report.METRICS`) or, when
a run fails or misses its deadline, with a note saying why; it never raises for a contender's failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from benchmarks import procs
from benchmarks.contenders import Contender
from benchmarks.peers.base import RESULTS_KEY, URL_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.05
RSS_SAMPLE_S = 0.5
BULK_BATCH = 100
PRODUCE_FLOOR_S = 60.0
PRODUCE_MIN_RATE = 300.0  # tasks/s below which a producer is declared timed out
DRAIN_FLOOR_S = 60.0
DRAIN_MIN_RATE = 100.0  # tasks/s below which a drain is declared timed out
WARMUP_TIMEOUT_S = 60.0
SETTLE_S = 1.0
MIB = 1024 * 1024


class RunFailed(Exception):
    """A contender's run failed or missed its deadline; the message is what the report shows."""


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one benchmark invocation."""

    n: int = 20_000
    w3_n: int = 2_000
    w3_rate: float = 200.0
    mem_n: int = 100_000
    idle_s: float = 10.0
    workers_w4: int = 2


@dataclass
class Record:
    """The figures of one repetition of one contender; ``notes`` maps a workload to why it has no figure."""

    metrics: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values, ``q`` in [0, 100]."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class Bench:
    """The harness side of every run: its Redis client, the children it starts and their logs."""

    def __init__(self, url: str, settings: Settings, log_dir: Path) -> None:
        self.url = url
        self.settings = settings
        self.log_dir = log_dir
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.env = {**os.environ, URL_ENV: url, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        self.info_overhead = self._calibrate_info_overhead()
        self._logs: dict[int, Path] = {}

    # --- primitives ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """``FLUSHALL`` between runs."""
        self.r.flushall()

    def log_path(self, c: Contender, tag: str) -> Path:
        """Where a child's output goes: ``logs/<contender>-<tag>.log``."""
        return self.log_dir / f"{c.name}-{tag}.log"

    def produce(self, c: Contender, n: int, tag: str, *, batch: int = 1, rate: float = 0.0) -> float:
        """Run the producer process; return its elapsed seconds (process set-up excluded)."""
        argv = [sys.executable, "-m", "benchmarks.produce", c.module, "--n", str(n)]
        if batch > 1:
            argv += ["--batch", str(batch)]
        if rate > 0:
            argv += ["--rate", str(rate)]
        limit = PRODUCE_FLOOR_S + (n / rate if rate > 0 else n / PRODUCE_MIN_RATE)
        log = self.log_path(c, tag)
        proc = procs.spawn(argv, self.env, log, stdout_pipe=True)
        try:
            out, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"timeout: producer still running after {limit:.0f} s") from None
        finally:
            procs.stop(proc)
        if proc.returncode != 0:
            raise RunFailed(f"producer exited {proc.returncode}: {_tail(log)}")
        return float(json.loads(out.decode().strip().splitlines()[-1])["seconds"])

    def preload(self, c: Contender, n: int, tag: str) -> None:
        """Queue ``n`` tasks the fastest way the contender offers (not a measurement)."""
        self.produce(c, n, tag, batch=BULK_BATCH if c.can_bulk else 1)

    @contextmanager
    def workers(self, c: Contender, count: int, tag: str) -> Iterator[tuple[list[subprocess.Popen[bytes]], float]]:
        """Start ``count`` worker processes; yield them and the wall-clock time just before the first start."""
        started = time.time()
        group = []
        for k in range(count):
            log = self.log_path(c, f"{tag}-w{k}")
            proc = procs.spawn(c.worker_argv(self.url), self.env, log)
            self._logs[proc.pid] = log
            group.append(proc)
        try:
            yield group, started
        finally:
            procs.stop(*group)

    def wait_results(
        self,
        n: int,
        timeout_s: float,
        group: Sequence[subprocess.Popen[bytes]],
        on_sample: Callable[[], None] | None = None,
    ) -> None:
        """Poll ``LLEN results`` until it reaches ``n``; raise :class:`RunFailed` on a deadline or dead worker."""
        deadline = time.monotonic() + timeout_s
        next_sample = 0.0
        while True:
            done = int(self.r.llen(RESULTS_KEY))
            if done >= n:
                return
            now = time.monotonic()
            if on_sample is not None and now >= next_sample:
                on_sample()
                next_sample = now + RSS_SAMPLE_S
            if all(proc.poll() is not None for proc in group):
                codes = ", ".join(str(proc.returncode) for proc in group)
                raise RunFailed(f"worker exited ({codes}) with {done}/{n} done: {_tail(self._logs[group[0].pid])}")
            if now > deadline:
                raise RunFailed(f"timeout: {done}/{n} done after {timeout_s:.0f} s")
            time.sleep(POLL_S)

    def samples(self) -> list[tuple[float, float]]:
        """The ``(payload ts, handler start)`` pairs recorded by the handlers."""
        pairs = []
        for item in self.r.lrange(RESULTS_KEY, 0, -1):
            ts, start = item.split()
            pairs.append((float(ts), float(start)))
        return pairs

    def commands_processed(self) -> tuple[int, dict[str, int]]:
        """``total_commands_processed`` and the per-command call counts (two INFO calls)."""
        total = int(self.r.info("stats")["total_commands_processed"])
        stats = self.r.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        return total, calls

    def _calibrate_info_overhead(self) -> int:
        before, _ = self.commands_processed()
        after, _ = self.commands_processed()
        return after - before


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip()[:200] for line in text[-lines:])


def _guard(rec: Record, workload: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except RunFailed as exc:
        rec.notes[workload] = str(exc)
    except Exception as exc:  # a contender's bug must not stop the benchmark
        rec.notes[workload] = f"error: {type(exc).__name__}: {exc}"[:400]


# --- workloads ----------------------------------------------------------------------------------------


def _drain(bench: Bench, c: Contender, count: int, tag: str, rec: Record, key: str) -> None:
    """Start ``count`` workers on an already filled queue and time the drain by the handlers' start stamps."""
    n = bench.settings.n
    peak = 0
    with bench.workers(c, count, tag) as (group, started):

        def sample() -> None:
            nonlocal peak
            peak = max(peak, sum(procs.tree_rss(p.pid) for p in group))

        bench.wait_results(n, DRAIN_FLOOR_S + n / DRAIN_MIN_RATE, group, sample)
        sample()
    starts = sorted(start for _, start in bench.samples())
    rec.metrics[key] = (len(starts) - 1) / (starts[-1] - starts[0])
    if count == 1:
        rec.metrics["startup"] = starts[0] - started
        rec.metrics["rss_w2"] = peak / MIB


def run_w1_w2(bench: Bench, c: Contender, rec: Record) -> None:
    """W1 (one enqueue call per task), then W2 drains that queue with one worker process."""
    n = bench.settings.n
    bench.flush()

    def w1() -> None:
        if c.single:
            rec.metrics["w1"] = n / bench.produce(c, n, "w1")
        else:
            bench.preload(c, n, "w1-preload")

    _guard(rec, "w1", w1)
    if "w1" not in rec.notes:
        _guard(rec, "w2", lambda: _drain(bench, c, 1, "w2", rec, "w2"))


def run_w1b_w4(bench: Bench, c: Contender, rec: Record) -> None:
    """W1b (bulk API, batches of 100) where there is one, then W4 drains with two worker processes."""
    n = bench.settings.n
    bench.flush()

    def w1b() -> None:
        if c.bulk:
            rec.metrics["w1b"] = n / bench.produce(c, n, "w1b", batch=BULK_BATCH)
        else:
            bench.preload(c, n, "w1b-preload")

    _guard(rec, "w1b", w1b)
    if "w1b" not in rec.notes:
        _guard(rec, "w4", lambda: _drain(bench, c, bench.settings.workers_w4, "w4", rec, "w4"))


def _idle_then_paced(bench: Bench, c: Contender, rec: Record) -> None:
    s = bench.settings
    with bench.workers(c, 1, "w3") as (group, _):
        bench.produce(c, 1, "w3-warmup")
        bench.wait_results(1, WARMUP_TIMEOUT_S, group)
        time.sleep(SETTLE_S)
        bench.r.delete(RESULTS_KEY)
        # The idle window: only the worker talks to Redis between the two readings.
        total0, calls0 = bench.commands_processed()
        time.sleep(s.idle_s)
        total1, calls1 = bench.commands_processed()
        rec.metrics["rss_idle"] = procs.tree_rss(group[0].pid) / MIB
        rec.metrics["idle_cmds"] = (total1 - total0 - bench.info_overhead) / s.idle_s
        by_cmd = {k: v - calls0.get(k, 0) for k, v in calls1.items() if k != "info" and v != calls0.get(k, 0)}
        rec.extra["idle_commands"] = dict(sorted(by_cmd.items(), key=lambda kv: -kv[1]))
        bench.produce(c, s.w3_n, "w3-paced", rate=s.w3_rate)
        bench.wait_results(s.w3_n, 30.0, group)
    latencies = sorted((start - ts) * 1000 for ts, start in bench.samples())
    rec.metrics["w3_p50"] = percentile(latencies, 50)
    rec.metrics["w3_p99"] = percentile(latencies, 99)
    rec.metrics["w3_max"] = latencies[-1]


def run_w3(bench: Bench, c: Contender, rec: Record) -> None:
    """An idle worker: its Redis commands per second and RSS, then W3's latency at a steady rate."""
    bench.flush()
    _guard(rec, "w3", lambda: _idle_then_paced(bench, c, rec))


def run_memory(bench: Bench, c: Contender, rec: Record) -> None:
    """Redis ``used_memory`` per pending task, with ``mem_n`` tasks queued and no worker."""
    n = bench.settings.mem_n
    bench.flush()

    def measure() -> None:
        before = int(bench.r.info("memory")["used_memory"])
        bench.preload(c, n, "mem")
        after = int(bench.r.info("memory")["used_memory"])
        rec.metrics["mem_per_task"] = (after - before) / n

    _guard(rec, "mem", measure)


WORKLOADS: dict[str, Callable[[Bench, Contender, Record], None]] = {
    "w1": run_w1_w2,
    "w1b": run_w1b_w4,
    "w3": run_w3,
    "mem": run_memory,
}
"""Workload groups in the order a repetition runs them (``w1`` includes W2, ``w1b`` includes W4)."""
