"""Results as ratios to baselines, goals, and the three outputs: a table, results.json, report.md and
results.png. Pure: no broker, no stack (tests/unit/test_bench_report.py)."""

from __future__ import annotations

import json
import math
import operator
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: list[float]) -> dict:
    return {
        "n": len(samples),
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "mean": statistics.fmean(samples),
    }


@dataclass(frozen=True)
class Goal:
    """`on` is "ratio" (value / baseline) or "value" (the absolute figure); e.g. Goal("ratio", "<=", 2)."""

    on: str
    op: str
    threshold: float

    def met(self, value: float, ratio: float | None) -> bool | None:
        subject = ratio if self.on == "ratio" else value
        if subject is None:
            return None
        return OPS[self.op](subject, self.threshold)

    def __str__(self) -> str:
        if self.on == "ratio":
            return f"ratio {self.op} {self.threshold:g}x"
        return f"{self.op} {self.threshold:g}"


@dataclass
class Result:
    benchmark: str  # "1. RPC overhead"
    name: str  # what was measured
    value: float  # the figure
    baseline: float | None  # its baseline, measured in the same run
    unit: str
    baseline_name: str = ""
    goal: Goal | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value, self.ratio)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["goal"] = str(self.goal) if self.goal else None
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


@dataclass(frozen=True)
class Missed:
    """A goal with no figure: its benchmark crashed or could not measure it. It counts as not met."""

    benchmark: str
    name: str
    reason: str


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # per benchmark: the raw figures behind the results
    errors: dict = field(default_factory=dict)  # benchmark -> what went wrong
    machine: dict = field(default_factory=dict)
    missed: list[Missed] = field(default_factory=list)
    did_not_run: dict = field(default_factory=dict)  # benchmark -> why (crashed, or not selected)

    def add(self, *results: Result) -> None:
        self.results.extend(results)

    def miss(self, benchmark: str, name: str, reason: str) -> None:
        if not self.has(benchmark, name):
            self.missed.append(Missed(benchmark, name, reason))

    def has(self, benchmark: str, name: str) -> bool:
        return any(r.benchmark == benchmark and r.name == name for r in self.results) or any(
            m.benchmark == benchmark and m.name == name for m in self.missed
        )

    def account_for(self, goals, reason: str) -> None:
        """After a benchmark ran or crashed: every goal it owns that has no figure counts as missed."""
        for benchmark, name in goals:
            self.miss(benchmark, name, reason)

    def ordered(self) -> list[Result]:
        """By benchmark ("1. ..." to "6. ..."), in the order each added its results."""
        return sorted(self.results, key=lambda r: r.benchmark)

    @property
    def goals_met(self) -> tuple[int, int]:
        judged = [r.met for r in self.results if r.met is not None]
        return sum(judged), len(judged) + len(self.missed)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    magnitude = abs(value)
    text = (
        f"{value:,.0f}"
        if magnitude >= 100
        else f"{value:.1f}"
        if magnitude >= 10
        else f"{value:.2f}"
        if magnitude >= 0.1 or magnitude == 0
        else f"{value:.3f}"
    )
    return f"{text} {unit}".strip()


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: "-"}[met]


COLUMNS = ("result", "value", "baseline", "ratio", "goal", "")


def rows(report: Report) -> list[tuple[str, ...]]:
    return [
        (
            r.name,
            fmt(r.value, r.unit),
            (f"{fmt(r.baseline, r.unit)} ({r.baseline_name})" if r.baseline is not None else "-"),
            fmt(r.ratio, "x"),
            str(r.goal) if r.goal else "-",
            verdict(r.met),
        )
        for r in report.ordered()
    ]


def table(report: Report) -> str:
    """The plain-text table `make bench` prints, grouped by benchmark."""
    lines = []
    body = rows(report)
    widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c) for i, c in enumerate(COLUMNS)]
    widths = [min(w, 60) for w in widths]
    current = None
    for result, row in zip(report.ordered(), body):
        if result.benchmark != current:
            current = result.benchmark
            lines.append("")
            lines.append(current)
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
        lines.append("  " + "  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)))
    for benchmark, error in report.errors.items():
        lines.append(f"\n{benchmark}: FAILED: {error}")
    for missed in report.missed:
        lines.append(f"NOT MET, no figure: {missed.benchmark} / {missed.name}: {missed.reason}")
    met, judged = report.goals_met
    lines.append(
        f"\ngoals met: {met} of {judged}" + (f" ({len(report.missed)} without a figure)" if report.missed else "")
    )
    return "\n".join(lines)


def markdown(report: Report) -> str:
    met, judged = report.goals_met
    machine = report.machine
    out = [
        "# Benchmark report",
        "",
        f"Run {machine.get('when', '?')} on {machine.get('cpus', '?')} CPUs (load average before the run "
        f"{machine.get('load_before', '?')}). Each result is a ratio to a baseline measured in the same run; "
        "absolute figures drift on a shared machine, ratios much less.",
        "",
        f"**Goals met: {met} of {judged}.**",
        "",
    ]
    current = None
    for result, row in zip(report.ordered(), rows(report)):
        if result.benchmark != current:
            current = result.benchmark
            out += [
                "",
                f"## {current}",
                "",
                "| " + " | ".join(c or "met?" for c in COLUMNS) + " |",
                "|" + "---|" * len(COLUMNS),
            ]
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    notes = [(r.name, r.note) for r in report.ordered() if r.note]
    if notes:
        out += ["", "## Notes", ""] + [f"- **{name}**: {note}" for name, note in notes]
    for benchmark, error in report.errors.items():
        out += ["", f"**{benchmark} failed:** `{error}`"]
    if report.missed:
        out += ["", "## Goals without a figure (counted as not met)", ""] + [
            f"- {m.benchmark} / {m.name}: {m.reason}" for m in report.missed
        ]
    if report.did_not_run:
        out += ["", "## Did not run", ""] + [f"- {name}: {why}" for name, why in report.did_not_run.items()]
    if report.details:
        out += ["", "## Raw figures", "", "```json", json.dumps(report.details, indent=2, default=str), "```"]
    return "\n".join(out) + "\n"


def to_json(report: Report) -> dict:
    return {
        "machine": report.machine,
        "goals_met": dict(zip(("met", "judged"), report.goals_met)),
        "complete": not report.errors and not report.missed and not report.did_not_run,
        "results": [r.to_dict() for r in report.ordered()],
        "details": report.details,
        "errors": report.errors,
        "missed": [asdict(m) for m in report.missed],
        "did_not_run": report.did_not_run,
    }


def chart(report: Report, path: Path) -> None:
    """One horizontal bar per result with a baseline: its ratio (log scale), green when its goal is met,
    red when not, grey without a goal; a black tick marks a ratio goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in report.ordered() if r.ratio is not None and r.ratio > 0]
    height = max(3.0, 0.42 * len(shown) + 1.2)
    fig, ax = plt.subplots(figsize=(11, height))
    labels = [f"{r.benchmark.split('.')[0]}. {r.name}"[:70] for r in shown]
    colors = ["#2e7d32" if r.met else "#c62828" if r.met is False else "#9e9e9e" for r in shown]
    ys = list(range(len(shown)))[::-1]
    ax.barh(ys, [r.ratio for r in shown], color=colors)
    for y, r in zip(ys, shown):
        ax.text(r.ratio * 1.05, y, fmt(r.ratio, "x"), va="center", fontsize=8)
        if r.goal is not None and r.goal.on == "ratio":
            ax.plot([r.goal.threshold] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="#555", linewidth=0.8, linestyle="--")
    ax.set_xlabel("ratio to the baseline measured in the same run (log scale; black tick: goal)")
    met, judged = report.goals_met
    ax.set_title(f"make bench: {met} of {judged} goals met (green met, red not met, grey no goal)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: Report, directory: Path, with_chart: bool = True) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "results.json", directory / "report.md"]
    written[0].write_text(json.dumps(to_json(report), indent=2, default=str) + "\n")
    written[1].write_text(markdown(report))
    if with_chart:
        chart(report, directory / "results.png")
        written.append(directory / "results.png")
    return written
