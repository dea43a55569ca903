"""``python -m benchmarks.run``: router and its peers side by side on one throwaway Redis (issue #4).

See ``benchmarks/README.md`` for the workloads and how to read the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import meta, procs, report
from benchmarks.contenders import BY_NAME, CONTENDERS, Contender
from benchmarks.redis_server import redis_server
from benchmarks.workloads import REPO_ROOT, WORKLOADS, Bench, Record, Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` changes the defaults of the size options it does not override."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: N=2,000, 1 rep, W3 400 tasks")
    parser.add_argument("--only", help=f"comma-separated contenders (of {', '.join(BY_NAME)})")
    parser.add_argument("--skip", help="comma-separated contenders to leave out")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated workload groups: w1 (+W2; w2 names it too), w1b (+W4; or w4), "
                             "w3 (+idle), mem, backlog (router only)")  # fmt: skip
    parser.add_argument("--reps", type=int, help="repetitions, interleaved (default 3; 1 with --quick)")
    parser.add_argument("--n", type=int, help="tasks for W1/W1b/W2/W4 (default 20,000; 2,000 with --quick)")
    parser.add_argument("--w3-n", type=int, help="W3 tasks (default 2,000; 400 with --quick)")
    parser.add_argument("--w3-rate", type=float, default=200.0, help="W3 tasks per second (default 200)")
    parser.add_argument("--mem-n", type=int, help="tasks for memory per task (default 100,000; 20,000 quick)")
    parser.add_argument("--backlog-n", type=int, help="pending tasks for backlog W2 (default 1,000,000; 100,000 quick)")
    parser.add_argument("--backlog-archived", type=int, help="archived tasks there (default 100,000; 10,000 quick)")
    parser.add_argument("--idle-s", type=float, help="idle window in seconds (default 10; 5 with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Sizes from the options, defaulting by mode."""

    def pick(value: Any, full: Any, quick: Any) -> Any:
        return value if value is not None else (quick if args.quick else full)

    return Settings(
        n=pick(args.n, 20_000, 2_000),
        w3_n=pick(args.w3_n, 2_000, 400),
        w3_rate=args.w3_rate,
        mem_n=pick(args.mem_n, 100_000, 20_000),
        idle_s=pick(args.idle_s, 10.0, 5.0),
        backlog_n=pick(args.backlog_n, 1_000_000, 100_000),
        backlog_archived=pick(args.backlog_archived, 100_000, 10_000),
    )


def select(args: argparse.Namespace) -> list[Contender]:
    """The contenders named by ``--only``/``--skip``, in the canonical order."""
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        sys.exit(f"unknown contender(s): {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    skip = {n.strip() for n in args.skip.split(",")} if args.skip else set()
    return [c for c in CONTENDERS if c.name in names and c.name not in skip]


def run_rep(bench: Bench, c: Contender, workloads: Sequence[str], rep: int) -> Record:
    """One repetition of one contender: the selected workload groups in order (memory on rep 1 only)."""
    rec = Record()
    for name in workloads:
        if name == "mem" and (rep > 0 or bench.settings.mem_n <= 0):
            continue
        WORKLOADS[name](bench, c, rec)
    return rec


def _progress(rec: Record) -> str:
    figures = ", ".join(f"{k}={v:,.1f}" for k, v in rec.metrics.items())
    problems = "; ".join(f"{k}: {v[:120]}" for k, v in rec.notes.items())
    return figures + (f"  [{problems}]" if problems else "")


def write_outputs(out_dir: Path, latest_stem: str, doc: dict[str, Any], markdown: str, chart_ok: bool) -> None:
    """``<out_dir>/results.{md,json}`` and copies as ``<latest_stem>.{md,json,png}`` beside it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(markdown)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2, sort_keys=False))
    base = out_dir.parent
    shutil.copyfile(out_dir / "results.md", base / f"{latest_stem}.md")
    shutil.copyfile(out_dir / "results.json", base / f"{latest_stem}.json")
    if chart_ok:
        shutil.copyfile(out_dir / "chart.png", base / f"{latest_stem}.png")


def render(
    doc: dict[str, Any],
    chosen: Sequence[Contender],
    summaries: dict[str, dict[str, report.Stat]],
    records: dict[str, list[Record]],
    skipped: dict[str, str],
) -> str:
    """The markdown report."""
    s, m = doc["settings"], doc["meta"]
    versions = m["packages"]
    header = (
        f"# Benchmark {m['started']}{' (quick)' if doc['quick'] else ''}\n\n"
        f"N={s['n']:,}, reps={doc['reps']} (interleaved; median and min-max), W3 {s['w3_n']:,} tasks at "
        f"{s['w3_rate']:g}/s, memory over {s['mem_n']:,} tasks, idle window {s['idle_s']:g} s. "
        f"Redis {m['redis']['redis_version']} (save {m['redis']['save']!r}, appendonly "
        f"{m['redis']['appendonly']}), Python {m['machine']['python']}, {m['machine']['cpus']} CPUs, "
        f"commit {m['commit']}. Backlog W2 (router): {s['backlog_n']:,} pending, {s['backlog_archived']:,} "
        "archived.\n\n"
        "Throughput in tasks/s; W2/W4 rate = (N-1)/(last handler start - first handler start); start-up = "
        "worker process start to first handler start in W2; RSS summed over the worker's process tree.\n\n"
    )
    body = report.results_table(chosen, summaries, records, skipped, versions)
    ratios = report.ratio_table(chosen, summaries, BY_NAME)
    backlog = report.backlog_section(chosen, summaries, records, s["backlog_n"], s["backlog_archived"])
    pkgs = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (f"{header}{body}\n\n## router against the best peer\n\n{ratios}\n\n{backlog}"
            f"{report.notes_section(records)}\n## Versions\n\n{pkgs}\n")  # fmt: skip


#: Names accepted for the workload that another group runs: W2 drains W1's queue, W4 drains W1b's.
ALIASES = {"w2": "w1", "w4": "w1b"}


def workload_groups(spec: str) -> list[str]:
    """The workload groups named by ``--workloads`` (``w2`` and ``w4`` name the groups that run them), once each."""
    groups: list[str] = []
    for raw in spec.split(","):
        name = ALIASES.get(raw.strip(), raw.strip())
        if name not in WORKLOADS:
            sys.exit(f"unknown workload {raw.strip()!r}; choose from {', '.join([*WORKLOADS, *ALIASES])}")
        if name not in groups:
            groups.append(name)
    return groups


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = parse_args(argv)
    settings = settings_from(args)
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    workloads = workload_groups(args.workloads)
    chosen = select(args)
    skipped = {c.name: why for c in chosen if (why := c.unavailable())}
    active = [c for c in chosen if c.name not in skipped]
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", flush=True)

    started = datetime.now(timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    out_dir = args.out / stamp
    records: dict[str, list[Record]] = {c.name: [] for c in active}
    procs.install_cleanup()
    interrupted = False
    with redis_server() as url:
        bench = Bench(url, settings, out_dir / "logs")
        doc_meta: dict[str, Any] = {
            "started": started.isoformat(timespec="seconds"),
            "redis": meta.redis_info(bench.r),
            "packages": meta.package_versions(p for c in chosen for p in c.packages),
            "machine": meta.machine(),
            "commit": meta.git_commit(REPO_ROOT),
            "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        }
        print(f"Redis {doc_meta['redis']['redis_version']} at {url}; results in {out_dir}", flush=True)
        try:
            for rep in range(reps):
                for c in active:
                    t0 = time.monotonic()
                    rec = run_rep(bench, c, workloads, rep)
                    records[c.name].append(rec)
                    print(f"[rep {rep + 1}/{reps}] {c.name} ({time.monotonic() - t0:.0f} s): {_progress(rec)}",
                          flush=True)  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted: writing what was measured", flush=True)
        finally:
            procs.stop_all()

    summaries = {name: report.summarise(recs) for name, recs in records.items() if recs}
    doc: dict[str, Any] = {
        "meta": doc_meta,
        "settings": dataclasses.asdict(settings),
        "reps": reps,
        "quick": args.quick,
        "interrupted": interrupted,
        "contenders": {
            c.name: {
                "kind": c.kind,
                "mode": c.mode,
                "skipped": skipped.get(c.name),
                "runs": [dataclasses.asdict(r) for r in records.get(c.name, [])],
                "summary": report.as_json(summaries.get(c.name, {})),
            }
            for c in chosen
        },
    }
    markdown = render(doc, chosen, summaries, records, skipped)
    out_dir.mkdir(parents=True, exist_ok=True)
    chart_ok = True
    try:
        report.chart(out_dir / "chart.png", [c for c in chosen if c.name in summaries], summaries,
                     f"router benchmark {stamp}: medians, min-max whiskers")  # fmt: skip
    except Exception as exc:  # the chart is a convenience: never lose the figures over it
        chart_ok = False
        print(f"chart not written: {exc}", flush=True)
    write_outputs(out_dir, "latest-quick" if args.quick else "latest", doc, markdown, chart_ok)
    print("\n" + markdown, flush=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
