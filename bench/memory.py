"""6. Memory: resident memory (VmRSS from /proc, child processes included: documents' render workers,
gunicorn's workers) of each service and the gateway, idle and under the portal load."""

from __future__ import annotations

from bench.common import Sampler, rss_mb
from bench.report import Result
from deploy.devstack import SERVICES

NAME = "6. Memory"
PROCESSES = (*SERVICES, "gateway")


def snapshot(ctx) -> dict[str, float]:
    return {name: rss_mb(ctx.stack.pid(name)) for name in PROCESSES if name in ctx.stack.procs}


def sampler(ctx, interval: float = 0.5) -> Sampler:
    return Sampler(lambda: snapshot(ctx), interval)


def results(report, idle: dict[str, float], samples: list[dict[str, float]]) -> None:
    peak = {name: max([s.get(name, 0.0) for s in samples] or [0.0]) for name in idle}
    report.details["memory_mb"] = {"idle": idle, "under_load_peak": peak, "samples": len(samples)}
    for name in idle:
        report.add(Result(NAME, f"{name}: RSS under the portal load (peak)", peak[name], idle[name], "MB", "idle"))
    report.add(
        Result(
            NAME,
            "all services and the gateway (peak)",
            sum(peak.values()),
            sum(idle.values()),
            "MB",
            "idle",
            note="RSS counts pages shared between a parent and its forked children in each",
        )
    )
