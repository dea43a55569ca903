"""Summaries of the raw records: the markdown table, the router-vs-best-peer ratios and the PNG chart."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.contenders import Contender
from benchmarks.workloads import Record


@dataclass(frozen=True)
class Metric:
    """One reported figure; ``higher`` says whether a larger value is better."""

    key: str
    label: str
    unit: str
    higher: bool
    digits: int = 0
    compared: bool = True  # False: router only, left out of the ratio to the best peer


METRICS: tuple[Metric, ...] = (
    Metric("w1", "W1 enqueue", "tasks/s", True),
    Metric("w1b", "W1b bulk enqueue", "tasks/s", True),
    Metric("w2", "W2 drain, 1 worker", "tasks/s", True),
    Metric("w4", "W4 drain, 2 workers", "tasks/s", True),
    Metric("w3_p50", "W3 latency p50", "ms", False, 2),
    Metric("w3_p99", "W3 latency p99", "ms", False, 2),
    Metric("w3_max", "W3 latency max", "ms", False, 1),
    Metric("startup", "start-up", "s", False, 2),
    Metric("mem_per_task", "Redis memory per pending task", "B", False),
    Metric("rss_idle", "worker RSS idle", "MiB", False, 1),
    Metric("rss_w2", "worker RSS under W2", "MiB", False, 1),
    Metric("idle_cmds", "Redis commands/s of an idle worker", "cmd/s", False, 1),
    Metric("backlog_w2", "W2 drain with a backlog", "tasks/s", True, compared=False),
    Metric("backlog_ratio", "backlog W2 / W2", "x", True, 2, compared=False),
    Metric("backlog_mem", "Redis memory per pending task in the backlog", "B", False, compared=False),
    Metric("backlog_preload", "backlog preload (enqueue_many by 1,000)", "tasks/s", True, compared=False),
    Metric("backlog_preload_s", "backlog preload time", "s", False, 1, compared=False),
    Metric("backlog_archive_s", "backlog archive time (enqueue + burst worker)", "s", False, 1, compared=False),
)
BY_KEY = {m.key: m for m in METRICS}
# Which workload's note explains a missing metric.
NOTE_OF = {"w3_p50": "w3", "w3_p99": "w3", "w3_max": "w3", "startup": "w2", "rss_w2": "w2",
           "rss_idle": "w3", "idle_cmds": "w3", "mem_per_task": "mem",
           **{m: "backlog" for m in ("backlog_w2", "backlog_ratio", "backlog_mem", "backlog_preload",
                                     "backlog_preload_s", "backlog_archive_s")}}  # fmt: skip


@dataclass(frozen=True)
class Stat:
    """Median and spread of one metric over the repetitions that produced it."""

    median: float
    low: float
    high: float
    count: int

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "count": self.count}


def summarise(records: Sequence[Record]) -> dict[str, Stat]:
    """Median, min and max of every metric present in at least one record."""
    out: dict[str, Stat] = {}
    for metric in METRICS:
        values = [r.metrics[metric.key] for r in records if metric.key in r.metrics]
        if values:
            out[metric.key] = Stat(statistics.median(values), min(values), max(values), len(values))
    return out


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def cell(stat: Stat | None, metric: Metric, note: str | None = None) -> str:
    """``median (min-max)`` when there were several repetitions; the failure note's first word when none."""
    if stat is None:
        return _short_note(note) if note else "n/a"
    text = _num(stat.median, metric.digits)
    if stat.count > 1 and stat.high > stat.low:
        text += f" ({_num(stat.low, metric.digits)}-{_num(stat.high, metric.digits)})"
    return text


def _short_note(note: str) -> str:
    return note.split(":", 1)[0]


def _note_for(records: Sequence[Record], key: str) -> str | None:
    workload = NOTE_OF.get(key, key)
    for r in records:
        if workload in r.notes:
            return r.notes[workload]
    return None


def best_peer(
    summaries: Mapping[str, Mapping[str, Stat]], contenders: Mapping[str, Contender], metric: Metric
) -> tuple[str, float] | None:
    """The peer (limits and router excluded) with the best median on ``metric``."""
    candidates = [
        (name, s[metric.key].median)
        for name, s in summaries.items()
        if contenders[name].kind == "peer" and metric.key in s
    ]
    if not candidates:
        return None
    pick = max if metric.higher else min
    return pick(candidates, key=lambda item: item[1])


def results_table(
    contenders: Sequence[Contender],
    summaries: Mapping[str, Mapping[str, Stat]],
    records: Mapping[str, Sequence[Record]],
    skipped: Mapping[str, str],
    versions: Mapping[str, str],
) -> str:
    """The main markdown table: one row per contender, medians with (min-max)."""
    head = ("| contender (mode) | W1 | W1b | W2 | W4 | W3 p50 / p99 / max ms | start-up s | B/task "
            "| RSS idle / W2 MiB | idle cmd/s |")  # fmt: skip
    lines = [head, "|" + "---|" * 10]
    for c in contenders:
        title = f"**{c.name}** ({_version_of(c, versions)}; {c.mode})"
        if c.name in skipped:
            lines.append(f"| {title} | skipped: {skipped[c.name]} |" + " |" * 8)
            continue
        s, recs = summaries.get(c.name, {}), records.get(c.name, [])
        if not recs:
            lines.append(f"| {title} | not run (interrupted) |" + " |" * 8)
            continue

        def one(key: str, s: Mapping[str, Stat] = s, recs: Sequence[Record] = recs) -> str:
            return cell(s.get(key), BY_KEY[key], _note_for(recs, key))

        row = [title, one("w1"), one("w1b"), one("w2"), one("w4"),
               f"{one('w3_p50')} / {one('w3_p99')} / {one('w3_max')}", one("startup"), one("mem_per_task"),
               f"{one('rss_idle')} / {one('rss_w2')}", one("idle_cmds")]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


DISPLAY_NAMES = {"redis": "redis-py"}


def _version_of(c: Contender, versions: Mapping[str, str]) -> str:
    package = c.packages[0]
    return f"{DISPLAY_NAMES.get(package, package)} {versions.get(package, '?')}"


def ratio_table(
    contenders: Sequence[Contender],
    summaries: Mapping[str, Mapping[str, Stat]],
    by_name: Mapping[str, Contender],
) -> str:
    """For each metric: the best peer, and each router mode's median and its ratio to that peer."""
    routers = [c.name for c in contenders if c.kind == "router" and summaries.get(c.name)]
    head = "| metric | best peer | " + " | ".join(f"{r} | {r} / best" for r in routers) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(routers))]
    for metric in (m for m in METRICS if m.compared):
        best = best_peer(summaries, by_name, metric)
        arrow = "higher is better" if metric.higher else "lower is better"
        row = [f"{metric.label}, {metric.unit} ({arrow})"]
        row.append(f"{_num(best[1], metric.digits)} ({best[0]})" if best else "n/a")
        for r in routers:
            stat = summaries[r].get(metric.key)
            row.append(_num(stat.median, metric.digits) if stat else "n/a")
            row.append(f"{stat.median / best[1]:.2f}x" if stat and best and best[1] else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def backlog_section(
    contenders: Sequence[Contender],
    summaries: Mapping[str, Mapping[str, Stat]],
    records: Mapping[str, Sequence[Record]],
    pending: int,
    archived: int,
) -> str:
    """Issue #4's backlog check, for the router contenders that ran it ("" when none did)."""
    ran = [c for c in contenders if c.kind == "router" and any(
        "backlog" in r.notes or "backlog_w2" in r.metrics for r in records.get(c.name, []))]  # fmt: skip
    if not ran:
        return ""
    lines = [f"## Backlog: W2 with {pending:,} tasks pending and {archived:,} archived\n",
             "Same worker and rate as W2, over the first N handler starts; the target is backlog / W2 >= 0.90.\n",
             "| contender | W2 | backlog W2 | backlog / W2 | B per pending task | preload s (tasks/s) | archive s |",
             "|" + "---|" * 7]  # fmt: skip
    for c in ran:
        s, recs = summaries.get(c.name, {}), records[c.name]

        def one(key: str, s: Mapping[str, Stat] = s, recs: Sequence[Record] = recs) -> str:
            return cell(s.get(key), BY_KEY[key], _note_for(recs, key))

        row = [c.name, one("w2"), one("backlog_w2"), one("backlog_ratio"), one("backlog_mem"),
               f"{one('backlog_preload_s')} ({one('backlog_preload')})", one("backlog_archive_s")]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n\n"


def notes_section(records: Mapping[str, Sequence[Record]]) -> str:
    """Every failure note, per contender and repetition, and what an idle worker sends to Redis."""
    lines: list[str] = []
    for name, recs in records.items():
        for rep, r in enumerate(recs, 1):
            lines += [f"- {name}, rep {rep}, {workload}: {note}" for workload, note in r.notes.items()]
    idle = []
    for name, recs in records.items():
        cmds = next((r.extra["idle_commands"] for r in recs if r.extra.get("idle_commands")), None)
        if cmds:
            top = ", ".join(f"{k} {v}" for k, v in list(cmds.items())[:5])
            idle.append(f"- {name}: {top}")
    out = ""
    if lines:
        out += "### Failures\n\n" + "\n".join(lines) + "\n\n"
    if idle:
        out += "### What an idle worker sends (calls in the idle window, top 5)\n\n" + "\n".join(idle) + "\n"
    return out


def chart(
    path: Path,
    contenders: Sequence[Contender],
    summaries: Mapping[str, Mapping[str, Stat]],
    title: str,
) -> None:
    """A grid of horizontal bar charts (median, min-max whiskers), one panel per metric."""
    import matplotlib  # noqa: PLC0415 - imported late so a missing matplotlib only loses the chart

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    keys = ["w1", "w1b", "w2", "w4", "w3_p50", "w3_p99", "mem_per_task", "idle_cmds"]
    fig, axes = plt.subplots(2, 4, figsize=(20, 9))
    colours = {"router": "tab:blue", "peer": "tab:orange", "limit": "tab:gray"}
    for ax, key in zip(axes.flat, keys, strict=True):
        metric = BY_KEY[key]
        rows = [(c, summaries[c.name][key]) for c in contenders if key in summaries.get(c.name, {})]
        ax.set_title(f"{metric.label} ({metric.unit}, {'higher' if metric.higher else 'lower'} is better)",
                     fontsize=9)  # fmt: skip
        if not rows:
            ax.set_axis_off()
            continue
        names = [c.name for c, _ in rows]
        medians = [s.median for _, s in rows]
        err = [[s.median - s.low for _, s in rows], [s.high - s.median for _, s in rows]]
        ax.barh(names, medians, xerr=err, color=[colours[c.kind] for c, _ in rows], capsize=3)
        ax.invert_yaxis()
        if key.startswith("w3") and max(medians) / max(min(medians), 1e-9) > 50:
            ax.set_xscale("log")
        ax.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def as_json(stats: Mapping[str, Stat]) -> dict[str, Any]:
    """A summary in JSON-ready form."""
    return {key: stat.as_dict() for key, stat in stats.items()}
