"""Where W2's time goes: CPU and context switches per task of each contender's worker, and the handler body's
own ceiling.

``python -m benchmarks.w2_costs`` queues N tasks for each contender, starts one worker process, and between the
first and the last handler start reads the CPU (user and system) and the context switches of the worker's process
tree, all threads, and Redis's CPU; each figure is divided by N. ``--body`` also times the shared handler body with
no broker at all: 10 threads (redis-py) or 10 asyncio tasks (redis.asyncio) RPUSHing from an in-memory queue, the
most any thread-based or asyncio worker could drain on this machine. Linux only (switches come from ``/proc``);
one repetition per contender, so run it more than once before reading differences under 20%.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import queue
import sys
import threading
import time
from pathlib import Path

import psutil
import redis
import redis.asyncio as aredis

from benchmarks import procs
from benchmarks.contenders import BY_NAME
from benchmarks.peers.base import RESULTS_KEY
from benchmarks.redis_server import redis_server
from benchmarks.workloads import Bench, Settings

BODY_THREADS = 10


def _thread_switches(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches over all of a process's threads (psutil counts only the main
    thread's)."""
    vol = invol = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status, encoding="ascii") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return vol, invol


def _costs(pid: int) -> tuple[float, float, int, int]:
    """User and system CPU seconds, voluntary and involuntary context switches, summed over a process tree."""
    user = system = 0.0
    vol = invol = 0
    for proc in procs.tree(pid):
        try:
            cpu = proc.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        v, i = _thread_switches(proc.pid)
        user, system, vol, invol = user + cpu.user, system + cpu.system, vol + v, invol + i
    return user, system, vol, invol


def measure(bench: Bench, name: str, n: int) -> str:
    """One drain of ``n`` queued tasks by one worker of contender ``name``; a line of per-task costs."""
    c = BY_NAME[name]
    bench.flush()
    bench.preload(c, n, "costs-preload")
    redis_pid = int(bench.r.info("server")["process_id"])
    with bench.workers(c, 1, "costs") as (group, _):
        pid = group[0].pid
        bench.wait_results(1, 60, group)
        before, redis_before = _costs(pid), _costs(redis_pid)
        bench.wait_results(n, 60 + n / 200, group)
        after, redis_after = _costs(pid), _costs(redis_pid)
    starts = sorted(start for _, start in bench.samples())
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    user, system, vol, invol = (a - b for a, b in zip(after, before))
    redis_cpu = sum(redis_after[:2]) - sum(redis_before[:2])
    return (
        f"{name:14s} {rate:8,.0f}/s  per task: user {user / n * 1e6:4.0f} us, sys {system / n * 1e6:4.0f} us, "
        f"switches {vol / n:4.1f} voluntary + {invol / n:3.1f} involuntary; Redis {redis_cpu / n * 1e6:3.0f} us"
    )


def _body_line(name: str, n: int, wall_s: float, cpu_s: float, what: str) -> str:
    return f"{name:14s} {n / wall_s:8,.0f}/s  per task: CPU {cpu_s / n * 1e6:4.0f} us ({what})"


def body_threads(url: str, n: int) -> str:
    """The shared sync handler body on 10 threads fed from memory: no broker, no acks."""
    r = redis.Redis.from_url(url)
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(n):
        work.put(i)

    def run() -> None:
        while True:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            r.rpush(RESULTS_KEY, f"{i} {time.time()}")

    threads = [threading.Thread(target=run) for _ in range(BODY_THREADS)]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    r.close()
    return _body_line("body/threads", n, wall, cpu, "redis-py RPUSH, 10 threads")


def body_asyncio(url: str, n: int) -> str:
    """The shared asyncio handler body, 10 at a time on one loop: no broker, no acks."""

    async def main() -> str:
        r = aredis.Redis.from_url(url)
        slots = asyncio.Semaphore(BODY_THREADS)

        async def one(i: int) -> None:
            async with slots:
                await r.rpush(RESULTS_KEY, f"{i} {time.time()}")

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        await r.aclose()
        return _body_line("body/asyncio", n, wall, cpu, "redis.asyncio RPUSH, 10 tasks")

    return asyncio.run(main())


def main() -> int:
    """Print one line per contender (and per handler body with ``--body``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.w2_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="router,router-async,limit-threads,huey,taskiq")
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--body", action="store_true", help="also time the handler body without a broker")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("needs Linux (/proc)", file=sys.stderr)
        return 2
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"unknown contender(s): {', '.join(unknown)}; use some of {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    logs = Path("/tmp/router-w2-costs")
    logs.mkdir(exist_ok=True)
    with redis_server() as url:
        sizes = Settings(n=args.n, w3_n=0, w3_rate=200.0, mem_n=0, idle_s=0.0, backlog_n=0, backlog_archived=0)
        bench = Bench(url, sizes, logs)
        for name in names:
            why = BY_NAME[name].unavailable()
            print(f"{name:14s} skipped: {why}" if why else measure(bench, name, args.n), flush=True)
        if args.body:
            bench.flush()
            print(body_threads(url, args.n), flush=True)
            bench.flush()
            print(body_asyncio(url, args.n), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
