"""Runs the benchmarks in order on one stack and writes the report (see bench/__init__.py)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from bench import pdf, portal, rpc_overhead, scaleout, webhooks
from bench import report as reporting
from bench.common import machine_busy
from bench.stack import running
from chassis.clock import utcnow
from deploy.devstack import ROOT

# Memory (6) is sampled during the portal load (2); webhooks stop documents, so they come last.
BENCHMARKS = {"rpc": rpc_overhead, "portal": portal, "pdf": pdf, "scaleout": scaleout, "webhooks": webhooks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "results"), help="where to write the report (default: bench/results/)"
    )
    args = parser.parse_args(argv)
    missing = [tool for tool in ("wrk", "pgbench") if not shutil.which(tool)]
    if missing:
        print(
            f"missing: {', '.join(missing)} (make bench installs them: apt-get install wrk postgresql-client)",
            file=sys.stderr,
        )
        return 2
    report = reporting.Report(
        machine={
            "when": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        }
    )
    admin_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    # py-amqp warns about confirms still arriving while nameko's proxies close their channels: noise
    logging.getLogger("amqp").setLevel(logging.ERROR)
    started = time.monotonic()
    selected = {key: module for key, module in BENCHMARKS.items() if not args.only or key in args.only}
    report.did_not_run.update(
        {module.NAME: "not selected (--only)" for key, module in BENCHMARKS.items() if key not in selected}
    )
    try:
        with running(admin_url) as ctx:
            print(f"stack up in {time.monotonic() - started:.0f} s", flush=True)
            for module in selected.values():
                run_one(module, ctx, report)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the stack did not come up: nothing ran
        traceback.print_exc()
        for module in selected.values():
            if module.NAME not in report.errors and not any(r.benchmark == module.NAME for r in report.results):
                report.errors[module.NAME] = f"the benchmark stack failed: {type(exc).__name__}: {exc}"
                report.did_not_run[module.NAME] = report.errors[module.NAME]
                report.account_for(module.GOALS, report.errors[module.NAME])
    report.machine["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report.machine["seconds"] = round(time.monotonic() - started)
    print(reporting.table(report))
    written = reporting.write(report, Path(args.out))
    print("\nwrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written))
    return 1 if report.errors else 0  # a crash fails the run; a goal it could not measure counts as missed


def settle(quiet: float = 0.25, longest: float = 60.0) -> tuple[float, float]:
    """Wait until the machine is quiet (under `quiet` of its CPU busy over a second), at most `longest`
    seconds: what the previous benchmark left running (its events still consumed, PostgreSQL's
    autovacuum after a seed) is not measured as the next one's. (seconds waited, the last second's
    busy share)"""
    started = time.monotonic()
    while True:
        busy_before, total_before = machine_busy()
        time.sleep(1.0)
        busy_after, total_after = machine_busy()
        busy = (busy_after - busy_before) / max(1, total_after - total_before)
        waited = time.monotonic() - started
        if busy < quiet or waited >= longest:
            return round(waited, 1), round(busy, 3)


def run_one(module, ctx, report: reporting.Report) -> None:
    """One benchmark; a crash is reported, its goals without a figure count as missed, the others go on."""
    began = time.monotonic()
    print(f"running {module.NAME} ...", flush=True)
    waited, busy = settle()
    report.machine.setdefault("settled_before", {})[module.NAME] = {"waited_s": waited, "busy": busy}
    try:
        module.run(ctx, report)
    except Exception as exc:  # noqa: BLE001 - report it, run the others
        traceback.print_exc()
        report.errors[module.NAME] = f"{type(exc).__name__}: {exc}"
        report.did_not_run[module.NAME] = f"crashed: {report.errors[module.NAME]}"
    report.account_for(
        module.GOALS,
        f"{module.NAME} crashed before measuring it: {report.errors[module.NAME]}"
        if module.NAME in report.errors
        else "not reported by its benchmark",
    )
    print(f"  {time.monotonic() - began:.0f} s", flush=True)
