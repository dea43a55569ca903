"""The workloads, run against one contender at a time on a flushed Redis.

Each ``run_*`` function fills a :class:`Record` with figures (see :data:`benchmarks.report.METRICS`) or, when
a run fails or misses its deadline, with a note saying why; it never raises for a contender's failure.
"""

from __future__ import annotations

import json
import os
import selectors
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
BACKLOG_MODULE = "benchmarks.peers.router_backlog"
BACKLOG_BATCH = 1_000


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
    backlog_n: int = 1_000_000
    backlog_archived: int = 100_000


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
        return float(self.run_json(argv, self.log_path(c, tag), limit, "producer")["seconds"])

    def run_json(self, argv: Sequence[str], log: Path, limit: float, what: str, *, echo: bool = False) -> Any:
        """Run a child that prints one JSON line last; return it parsed. ``echo`` prints its other lines as
        they come (progress). Raise :class:`RunFailed` if it fails or is still running after ``limit`` s."""
        proc = procs.spawn(argv, self.env, log, stdout_pipe=True)
        try:
            lines = _read_lines(proc, limit, what, echo)
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"timeout: {what} still running after {limit:.0f} s") from None
        finally:
            procs.stop(proc)
        if proc.returncode != 0 or not lines:
            raise RunFailed(f"{what} exited {proc.returncode}: {_tail(log)}")
        return json.loads(lines[-1])

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


def _read_lines(proc: subprocess.Popen[bytes], limit: float, what: str, echo: bool) -> list[str]:
    """A child's stdout lines until it closes it; printed as they come with ``echo``."""
    if proc.stdout is None:
        raise ValueError("the child was started without stdout_pipe")
    fd, deadline, pending = proc.stdout.fileno(), time.monotonic() + limit, b""
    lines: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunFailed(f"timeout: {what} still running after {limit:.0f} s")
            if not selector.select(timeout=left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return lines + ([pending.decode()] if pending.strip() else [])
            *complete, pending = (pending + chunk).split(b"\n")
            for line in (raw.decode() for raw in complete if raw.strip()):
                lines.append(line)
                if echo and not line.startswith("{"):
                    print(f"  {line}", flush=True)


def _guard(rec: Record, workload: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except RunFailed as exc:
        rec.notes[workload] = str(exc)
    except Exception as exc:  # a contender's bug must not stop the benchmark
        rec.notes[workload] = f"error: {type(exc).__name__}: {exc}"[:400]


# --- workloads ----------------------------------------------------------------------------------------


def _timed_drain(bench: Bench, c: Contender, count: int, tag: str) -> tuple[list[float], float, int]:
    """Start ``count`` workers on an already filled queue, stop them once ``n`` handlers have started; return
    the sorted handler start stamps, the wall-clock time just before the first worker start and the peak RSS."""
    n = bench.settings.n
    peak = 0
    with bench.workers(c, count, tag) as (group, started):

        def sample() -> None:
            nonlocal peak
            peak = max(peak, sum(procs.tree_rss(p.pid) for p in group))

        bench.wait_results(n, DRAIN_FLOOR_S + n / DRAIN_MIN_RATE, group, sample)
        sample()
    return sorted(start for _, start in bench.samples()), started, peak


def _rate(starts: Sequence[float]) -> float:
    """W2's figure: (N-1) / (last handler start - first handler start)."""
    return (len(starts) - 1) / (starts[-1] - starts[0])


def _drain(bench: Bench, c: Contender, count: int, tag: str, rec: Record, key: str) -> None:
    """Time the drain of an already filled queue by the handlers' start stamps."""
    starts, started, peak = _timed_drain(bench, c, count, tag)
    rec.metrics[key] = _rate(starts)
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


def _backlog_phase(bench: Bench, c: Contender, phase: str, n: int, echo: bool = False) -> Any:
    argv = [sys.executable, "-m", BACKLOG_MODULE, phase, "--n", str(n), "--batch", str(BACKLOG_BATCH)]
    limit = PRODUCE_FLOOR_S + n / DRAIN_MIN_RATE
    return bench.run_json(argv, bench.log_path(c, f"backlog-{phase}"), limit, f"backlog {phase}", echo=echo)


def _fill_backlog(bench: Bench, c: Contender, rec: Record) -> None:
    """Archive ``backlog_archived`` tasks through a SkipRetry handler, then queue ``backlog_n`` pending ones
    (timed, with Redis memory per pending task)."""
    s = bench.settings
    if s.backlog_archived > 0:
        done = _backlog_phase(bench, c, "archive", s.backlog_archived)
        if done["archived"] != s.backlog_archived or done["pending"]:
            raise RunFailed(f"archive phase left {done['archived']} archived, {done['pending']} pending")
        rec.metrics["backlog_archive_s"] = done["seconds"]
        print(f"  archived {s.backlog_archived:,} in {done['seconds']:.1f} s (enqueue + burst worker)", flush=True)
    before = int(bench.r.info("memory")["used_memory"])
    done = _backlog_phase(bench, c, "pending", s.backlog_n, echo=True)
    if done["pending"] != s.backlog_n:
        raise RunFailed(f"pending phase left {done['pending']} pending, not {s.backlog_n}")
    rec.metrics["backlog_mem"] = (int(bench.r.info("memory")["used_memory"]) - before) / s.backlog_n
    rec.metrics["backlog_preload_s"] = done["seconds"]
    rec.metrics["backlog_preload"] = s.backlog_n / done["seconds"]


def _backlog_w2(bench: Bench, c: Contender, rec: Record) -> None:
    _fill_backlog(bench, c, rec)
    starts, _, _ = _timed_drain(bench, c, 1, "backlog-w2")
    rec.metrics["backlog_w2"] = _rate(starts[: bench.settings.n])
    if rec.metrics.get("w2"):
        rec.metrics["backlog_ratio"] = rec.metrics["backlog_w2"] / rec.metrics["w2"]


def _plain_w2(bench: Bench, c: Contender, rec: Record) -> None:
    """W2 on a queue filled by the bulk API, for a repetition that did not run ``w1``."""
    bench.flush()
    bench.preload(c, bench.settings.n, "w2-preload")
    _drain(bench, c, 1, "w2", rec, "w2")


def run_backlog(bench: Bench, c: Contender, rec: Record) -> None:
    """Router only (issue #4): W2 with ``backlog_n`` tasks pending and ``backlog_archived`` archived, over the
    first N handler starts, and its ratio to this repetition's W2 (measured here first if ``w1`` did not run)."""
    if c.kind != "router":
        return
    if "w2" not in rec.metrics and "w2" not in rec.notes:
        _guard(rec, "w2", lambda: _plain_w2(bench, c, rec))
    bench.flush()
    _guard(rec, "backlog", lambda: _backlog_w2(bench, c, rec))
    bench.flush()  # give the backlog's memory back before the next contender


WORKLOADS: dict[str, Callable[[Bench, Contender, Record], None]] = {
    "w1": run_w1_w2,
    "w1b": run_w1b_w4,
    "w3": run_w3,
    "mem": run_memory,
    "backlog": run_backlog,
}
"""Workload groups in the order a repetition runs them (``w1`` includes W2, ``w1b`` includes W4; ``backlog``
runs for router contenders only)."""
