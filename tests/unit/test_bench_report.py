"""The pure parts of `make bench` (bench/report.py): percentiles, ratios to baselines, goals,
and the table, JSON, Markdown and PNG it writes; and how the RPC benchmark counts CPU per call."""

import json
import os
import struct
import subprocess
import sys
import time

import pytest

from bench.report import Goal, Report, Result, fmt, markdown, percentile, summary, table, to_json, write
from bench.rpc_overhead import cpu_per_call


def test_percentiles_are_nearest_rank():
    samples = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 95) == 95.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # sorted first
    assert summary([4.0, 1.0, 3.0, 2.0]) == {"n": 4, "p50": 2.0, "p95": 4.0, "p99": 4.0, "mean": 2.5}


def test_a_ratio_goal_is_judged_on_value_over_baseline():
    within = Result("1. RPC overhead", "p50", value=1.5, baseline=0.75, unit="ms", goal=Goal("ratio", "<=", 2.0))
    assert within.ratio == pytest.approx(2.0)
    assert within.met is True  # exactly 2x is within 2x
    beyond = Result("1. RPC overhead", "p50", value=1.8, baseline=0.75, unit="ms", goal=Goal("ratio", "<=", 2.0))
    assert beyond.ratio == pytest.approx(2.4) and beyond.met is False
    throughput = Result("2. Portal", "req/s", value=800, baseline=3000, unit="req/s", goal=Goal("ratio", ">=", 0.25))
    assert throughput.ratio == pytest.approx(0.2667, abs=1e-4) and throughput.met is True


def test_a_value_goal_ignores_the_baseline_and_no_goal_is_no_verdict():
    p95 = Result("2. Portal", "p95", value=120.0, baseline=4.0, unit="ms", goal=Goal("value", "<", 100))
    assert p95.ratio == pytest.approx(30.0) and p95.met is False
    errors = Result("2. Portal", "errors", value=0, baseline=0, unit="", goal=Goal("value", "==", 0))
    assert errors.ratio is None and errors.met is True  # no ratio to a zero baseline, still judged
    info = Result("6. Memory", "rss", value=90.0, baseline=60.0, unit="MB")
    assert info.ratio == pytest.approx(1.5) and info.met is None
    assert str(Goal("ratio", "<=", 2.0)) == "ratio <= 2x" and str(Goal("value", "<", 100)) == "< 100"


def sample_report() -> Report:
    report = Report(machine={"when": "2026-01-01 00:00 UTC", "cpus": 2, "load_before": "1.00"})
    report.add(
        Result(
            "2. Portal throughput",
            "/dashboard: p95",
            120.0,
            4.0,
            "ms",
            "hello-world",
            Goal("value", "<", 100),
            note="p50 40 ms",
        )
    )
    report.add(
        Result(
            "1. RPC overhead",
            "p50: RpcPool -> nameko echo",
            1.5,
            0.75,
            "ms",
            "raw AMQP round trip",
            Goal("ratio", "<=", 2.0),
        )
    )
    report.add(Result("6. Memory", "billing RSS", 90.0, 60.0, "MB", "idle"))
    report.details["rpc_overhead"] = {"raw": {"p50": 0.75}}
    return report


def test_the_table_groups_by_benchmark_in_order_and_counts_the_goals():
    report = sample_report()
    assert report.goals_met == (1, 2)
    text = table(report)
    assert text.index("1. RPC overhead") < text.index("2. Portal throughput") < text.index("6. Memory")
    rpc_line = next(line for line in text.splitlines() if "RpcPool -> nameko echo" in line)
    assert "1.50 ms" in rpc_line and "0.75 ms (raw AMQP round trip)" in rpc_line and "2.00x" in rpc_line
    assert rpc_line.rstrip().endswith("met")
    assert "NOT MET" in next(line for line in text.splitlines() if "/dashboard: p95" in line)
    assert text.rstrip().endswith("goals met: 1 of 2")


def test_figures_are_formatted_to_a_sensible_precision():
    assert fmt(3069.4, "req/s") == "3,069 req/s"
    assert fmt(45.23, "ms") == "45.2 ms"
    assert fmt(0.7481, "ms") == "0.75 ms"
    assert fmt(0.0412, "ms") == "0.041 ms"
    assert fmt(2.0, "x") == "2.00x"
    assert fmt(None) == "-"


def test_the_report_files(tmp_path):
    report = sample_report()
    written = write(report, tmp_path)
    assert [p.name for p in written] == ["results.json", "report.md", "results.png"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == json.loads(json.dumps(to_json(report)))
    assert data["goals_met"] == {"met": 1, "judged": 2}
    first = data["results"][0]
    assert first["name"] == "p50: RpcPool -> nameko echo"
    assert first["ratio"] == pytest.approx(2.0) and first["met"] is True and first["goal"] == "ratio <= 2x"
    assert data["results"][1]["met"] is False and data["results"][2]["met"] is None
    md = (tmp_path / "report.md").read_text()
    assert md == markdown(report)
    assert "**Goals met: 1 of 2.**" in md and "## 1. RPC overhead" in md
    assert "| p50: RpcPool -> nameko echo | 1.50 ms | 0.75 ms (raw AMQP round trip) | 2.00x | ratio <= 2x | met |" in md
    assert "- **/dashboard: p95**: p50 40 ms" in md
    png = (tmp_path / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_cpu_by_command_name_counts_every_process_of_that_name():
    """What the portal benchmark reads for the broker (beam.smp) and PostgreSQL (postgres)."""
    from pathlib import Path

    from bench.common import cpu_seconds_of_command

    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # spend some CPU, so there is something to count
        pass
    own = time.process_time() - 0.05  # this process alone (its children, e.g. a test stack, not); /proc has 10 ms ticks
    assert cpu_seconds_of_command(Path("/proc/self/comm").read_text().strip()) >= own >= 0.25
    assert cpu_seconds_of_command("no-such-command-here") == 0


class Crashing:
    """A benchmark that reports one of its two goals, then crashes."""

    NAME = "4. PDF"
    GOALS = (("4. PDF", "cold vs cached"), ("4. PDF", "ping under load"))

    @staticmethod
    def run(ctx, report):
        report.add(Result("4. PDF", "cold vs cached", 60.0, 1.0, "ms", "cached", Goal("ratio", ">=", 50)))
        raise ConnectionError("port 15672 refused")


def test_a_crashed_benchmark_fails_the_run_and_its_goals_without_a_figure_count_as_missed(tmp_path):
    from bench.run import run_one

    report = sample_report()
    run_one(Crashing, ctx=None, report=report)
    assert report.errors == {"4. PDF": "ConnectionError: port 15672 refused"}
    assert [(m.benchmark, m.name) for m in report.missed] == [("4. PDF", "ping under load")]
    assert report.goals_met == (2, 4)  # the crash's unmeasured goal is judged, and not met
    assert table(report).rstrip().endswith("goals met: 2 of 4 (1 without a figure)")
    write(report, tmp_path, with_chart=False)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["complete"] is False
    assert data["did_not_run"] == {"4. PDF": "crashed: ConnectionError: port 15672 refused"}
    assert data["missed"] == [
        {
            "benchmark": "4. PDF",
            "name": "ping under load",
            "reason": "4. PDF crashed before measuring it: ConnectionError: port 15672 refused",
        }
    ]


def test_every_goal_in_the_last_published_run_is_declared_by_its_benchmark():
    """A crash can only be counted against goals the benchmark declares up front: the published
    results (bench/results/results.json) have no goal that a benchmark would fail to account for."""
    from bench.run import BENCHMARKS
    from deploy.devstack import ROOT

    declared = {goal for module in BENCHMARKS.values() for goal in module.GOALS}
    published = json.loads((ROOT / "bench" / "results" / "results.json").read_text())
    judged = {(r["benchmark"], r["name"]) for r in published["results"] if r["goal"]}
    assert judged and judged <= declared, sorted(judged - declared)


def test_without_the_management_api_the_reply_queue_goals_are_missed_not_invented():
    from bench import rpc_overhead

    report = Report()
    rpc_overhead.reply_queue_results(report, None, [None, None], None)
    assert [m.name for m in report.missed] == [name for _, name in rpc_overhead.REPLY_QUEUE_GOALS]
    assert report.results == [] and report.goals_met == (0, 2)


def test_the_portal_reports_the_median_of_its_rounds_and_every_round_s_errors():
    from bench.portal import median_of

    def run(rps, p95, errors, billing_cpu):
        return {
            "rps": rps,
            "p50": p95 / 2,
            "p90": p95 * 0.9,
            "p95": p95,
            "p99": p95 * 1.2,
            "mean": p95 / 2,
            "requests": rps * 10,
            "errors": errors,
            "error_detail": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non200": errors},
            "cpu_ms_per_request": {"billing": billing_cpu, "gateway": 1.0},
        }

    merged = median_of([run(100, 300, 0, 5.0), run(80, 500, 2, 9.0), run(120, 250, 1, 4.0)])
    assert merged["rps"] == 100 and merged["p95"] == 300  # the middle round, not the best
    assert merged["errors"] == 3 and merged["error_detail"]["non200"] == 3  # any round's errors count
    assert merged["cpu_ms_per_request"] == {"billing": 5.0, "gateway": 1.0} and merged["cpu_ms_total"] == 6.0
    assert [r["rps"] for r in merged["rounds"]] == [100, 80, 120]


def test_cpu_per_call_counts_the_callers_thread_and_the_answering_process():
    """The RPC benchmark's CPU per call: the calling thread's own time, and the serving process's from
    /proc (here the test's own process, which does the work)."""

    def burn_a_millisecond():
        started = time.thread_time()
        while time.thread_time() - started < 0.001:
            pass

    client_us, server_us = cpu_per_call(burn_a_millisecond, os.getpid(), 100)
    assert 1000 <= client_us < 1500
    # /proc counts in ticks of 10 ms: 100 ms of work reads as 90 to 110 ms, plus what else the process did
    assert 0.85 * client_us <= server_us < 2 * client_us


def test_the_sql_counter_counts_every_statement_of_threads_that_start_at_once(tmp_path):
    """bench/hooks/sitecustomize.py in a process whose threads all make their first statement together,
    as a gunicorn worker's do under load: the process lives, and no statement goes uncounted."""
    threads, statements = 16, 200
    program = f"""
import builtins
import os
import threading
import time
import sqlalchemy as sa
opened = builtins.open
made = []
def slow_to_make_the_file(path, mode="r", *args, **kwargs):  # widens the windows a race would need
    if str(path).startswith(os.environ["BENCH_SQL_COUNTS"]):
        if mode == "wb":
            made.append(path)
        if mode == "wb" and len(made) > 1:  # a second thread making it anew leaves it empty a while
            file = opened(path, mode, *args, **kwargs)
            time.sleep(0.05)
            return file
        if mode == "r+b":  # the first, about to map it
            time.sleep(0.02)
    return opened(path, mode, *args, **kwargs)
builtins.open = slow_to_make_the_file
engine = sa.create_engine("sqlite://", poolclass=sa.pool.NullPool)
start = threading.Barrier({threads})
def work():
    with engine.connect() as conn:
        start.wait()
        for _ in range({statements}):
            conn.execute(sa.text("SELECT 1"))
workers = [threading.Thread(target=work) for _ in range({threads})]
[w.start() for w in workers]
[w.join() for w in workers]
"""
    counts = tmp_path / "counts"
    counts.mkdir()
    hooks = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "hooks")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([hooks, os.environ.get("PYTHONPATH", "")]),
        "BENCH_SQL_COUNTS": str(counts),
    }
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    [written] = list(counts.iterdir())
    assert struct.unpack("<5Q", written.read_bytes())[0] == threads * statements
