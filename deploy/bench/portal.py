"""2. Portal throughput: the signed-in dashboard and invoice list under 50 concurrent users (wrk),
against a Falcon hello-world served by the same gunicorn configuration; and the dashboard's latency
against the sum of its parts (hello-world + its RPCs x a raw AMQP round trip + its SQL round trips x
a `pgbench -S` SELECT), each part measured in this run and each count counted, not assumed.

While the load runs, the memory benchmark (6) samples RSS and the RPC benchmark (1) counts reply
queues."""
from __future__ import annotations

import re
import statistics
import subprocess
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlparse

import psycopg2
import requests

from deploy.bench import memory, rpc_overhead
from chassis.scope import Scope
from deploy.bench.common import Sampler, cpu_seconds, cpu_seconds_of_command, timed, wrk
from deploy.bench.report import Goal, Result
from deploy.bench.stack import Context, free_port, http_ok, spawn_and_wait
from deploy.devstack import BIN
from services.gateway.rpc import RpcPool

NAME = "2. Portal throughput"
USERS = 50
SECONDS = 10
GOALS = (*((NAME, f"/{page}: {what}, {USERS} users") for page in ("dashboard", "invoices")
           for what in ("req/s", "p95", "errors")),
         (NAME, "/dashboard p50 alone vs the sum of its parts"), *rpc_overhead.REPLY_QUEUE_GOALS)


def start_hello(ctx: Context) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    spawn_and_wait(ctx.stack, "hello", [str(BIN / "gunicorn"), "-c", "services/gateway/gunicorn.conf.py",
                                        "--bind", f"127.0.0.1:{port}", "deploy.bench.hello:app"],
                   lambda: http_ok(url), env={**ctx.env, "GATEWAY_BIND": f"127.0.0.1:{port}"})
    return url


@contextmanager
def pgbench_database(admin_url: str):
    name = f"portal_bench_pgbench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pgbench_select_ms(admin_url: str, seconds: int = 5) -> float:
    """Average latency of pgbench's built-in SELECT-only script (-S), one client, over TCP like the
    services, simple protocol like psycopg2."""
    url = urlparse(admin_url)
    conn = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    env = {"PGPASSWORD": url.password or "", "PATH": "/usr/bin:/bin"}
    with pgbench_database(admin_url) as db:
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", *conn, db], check=True, capture_output=True, env=env)
        out = subprocess.run(["pgbench", "-S", "-n", "-M", "simple", "-c", "1", "-j", "1", "-T", str(seconds),
                              *conn, db], check=True, capture_output=True, text=True, env=env).stdout
    return float(re.search(r"latency average = ([\d.]+) ms", out).group(1))


def count_parts(ctx: Context, url: str, n: int = 20) -> dict:
    """RPCs (the gateway's own metric) and SQL round trips (every service) per request of `url`."""
    cookies = ctx.cookie
    requests.get(url, cookies=cookies, timeout=10)  # caches warm, as under load
    time.sleep(0.5)  # the services' timers (outbox relay) keep running: sample their rate too
    idle_before, idle_started = ctx.sql_counts(), time.monotonic()
    time.sleep(2)
    idle_after, idle_seconds = ctx.sql_counts(), time.monotonic() - idle_started
    rpc_before, sql_before, started = ctx.gateway_rpc_count(), ctx.sql_counts(), time.monotonic()
    for _ in range(n):
        assert requests.get(url, cookies=cookies, timeout=10, allow_redirects=False).status_code == 200
    rpc_after, sql_after, elapsed = ctx.gateway_rpc_count(), ctx.sql_counts(), time.monotonic() - started
    background = {k: (idle_after[k] - idle_before[k]) / idle_seconds * elapsed for k in sql_after}
    sql = {k: max(0.0, (sql_after[k] - sql_before[k] - background[k]) / n) for k in sql_after}
    return {"rpcs": None if rpc_before is None else (rpc_after - rpc_before) / n,
            "sql": sql, "sql_round_trips": sum(sql.values()), "requests": n,
            "background_sql_per_second": {k: v / elapsed for k, v in background.items()}}


def dashboard_rpcs_ms(ctx: Context, n: int = 100) -> dict:
    """p50 of each RPC the dashboard makes, called alone through the gateway's pool as the gateway
    calls them: where the dashboard's time goes."""
    workspace_id, client_id = ctx.demo_client()
    pool = RpcPool({"AMQP_URI": ctx.amqp_uri}, timeout=10, size=1)
    calls = {"auth.validate_session": lambda: pool.call("auth", "validate_session", ctx.cookie["portal_session"]),
             "billing.client_dashboard": lambda: pool.call("billing", "client_dashboard", workspace_id, client_id,
                                                           scope=Scope(workspace_id, client_id))}
    for call in calls.values():
        timed(call, 10)
    return {name: statistics.median(timed(call, n)) for name, call in calls.items()}


def cpu_used(ctx: Context, processes) -> dict[str, float]:
    """CPU seconds used so far by each of the stack's `processes` (child processes included), the
    broker and PostgreSQL: everything a page's request passes through."""
    used = {name: cpu_seconds(ctx.stack.pid(name)) for name in processes}
    used["rabbitmq"] = cpu_seconds_of_command("beam.smp")
    used["postgresql"] = cpu_seconds_of_command("postgres")
    return used


def loaded_with_cpu(ctx: Context, url: str, processes, headers: dict | None = None) -> dict:
    """wrk's figures for `url` under the benchmark's load, plus the CPU each process spent per
    request meanwhile (milliseconds), read from /proc before and after."""
    before = cpu_used(ctx, processes)
    figures = wrk(url, USERS, SECONDS, headers=headers)
    after = cpu_used(ctx, processes)
    figures["cpu_ms_per_request"] = {name: (after[name] - before[name]) * 1000 / max(figures["requests"], 1)
                                     for name in after}
    return figures


def run(ctx: Context, report) -> None:
    hello = start_hello(ctx)
    pages = {"dashboard": f"{ctx.stack.url}/dashboard", "invoices": f"{ctx.stack.url}/invoices"}
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in ctx.cookie.items())}
    for url in (hello, *pages.values()):  # warm up: pools filled, templates compiled, caches primed
        wrk(url, USERS, 3, headers=headers)
    time.sleep(1)
    idle_memory = memory.snapshot(ctx)
    queues_before = ctx.management.reply_queues()
    mem, queues = memory.sampler(ctx), Sampler(ctx.management.reply_queues, 1.0)
    mem.start()
    queues.start()
    loaded = {"hello": loaded_with_cpu(ctx, hello, ["hello"])}
    for name, url in pages.items():
        loaded[name] = loaded_with_cpu(ctx, url, memory.PROCESSES, headers=headers)
    mem_samples, queue_samples = mem.stop(), queues.stop()
    time.sleep(1)
    queues_after = ctx.management.reply_queues()

    # the dashboard alone (one connection), and its parts, side by side
    single = {"hello": wrk(hello, 1, 5, threads=1), "dashboard": wrk(pages["dashboard"], 1, 5, threads=1, headers=headers)}
    parts = count_parts(ctx, pages["dashboard"])
    rtt = rpc_overhead.raw_round_trip_ms(ctx)
    select_ms = pgbench_select_ms(ctx.admin_url)
    rpc_ms = dashboard_rpcs_ms(ctx)
    rpcs = parts["rpcs"]
    sum_of_parts = single["hello"]["p50"] + (rpcs or 0) * rtt + parts["sql_round_trips"] * select_ms
    report.details["portal"] = {"under_load": loaded, "one_connection": single, "dashboard_parts": parts,
                                "raw_rtt_p50_ms": rtt, "pgbench_select_ms": select_ms,
                                "sum_of_parts_ms": sum_of_parts, "dashboard_rpcs_alone_p50_ms": rpc_ms}

    base = loaded["hello"]
    for name in pages:
        figures = loaded[name]
        report.add(
            Result(NAME, f"/{name}: req/s, {USERS} users", figures["rps"], base["rps"], "req/s", "hello-world",
                   Goal("ratio", ">=", 0.25)),
            Result(NAME, f"/{name}: p95, {USERS} users", figures["p95"], base["p95"], "ms", "hello-world",
                   Goal("value", "<", 100), note=f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms; "
                                                 f"{figures['requests']} requests in {SECONDS} s"),
            Result(NAME, f"/{name}: errors, {USERS} users", figures["errors"], base["errors"], "", "hello-world",
                   Goal("value", "==", 0), note=f"{figures['error_detail']}"),
        )
    # Where the CPU goes: every process a page passes through, per page, against hello-world's gunicorn.
    hello_cpu = base["cpu_ms_per_request"]["hello"]
    for name in pages:
        split = {k: v for k, v in loaded[name]["cpu_ms_per_request"].items() if v > 0.005}
        report.add(Result(
            NAME, f"/{name}: CPU per page, all processes, {USERS} users", sum(split.values()), hello_cpu, "ms",
            "hello-world's gunicorn", note="per process: " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(split.items(), key=lambda kv: -kv[1])) + " ms; from /proc "
                "before and after the load; the broker and PostgreSQL count whole (other work on them too)"))
    rpc_text = f"{rpcs:.1f}" if rpcs is not None else "? (the gateway served no /metrics)"
    report.add(Result(
        NAME, "/dashboard p50 alone vs the sum of its parts", single["dashboard"]["p50"], sum_of_parts, "ms",
        "sum of parts", Goal("ratio", "<=", 2.0),
        note=f"parts: hello-world p50 {single['hello']['p50']:.2f} ms + {rpc_text} RPCs x {rtt:.3f} ms raw round trip "
             f"+ {parts['sql_round_trips']:.1f} SQL round trips ({', '.join(f'{k} {v:.1f}' for k, v in parts['sql'].items())}) "
             f"x {select_ms:.3f} ms pgbench -S = {sum_of_parts:.2f} ms; one connection, 5 s each"))
    for name, ms in rpc_ms.items():
        report.add(Result(NAME, f"/dashboard's {name} RPC alone: p50", ms, rtt, "ms", "raw AMQP round trip",
                          note="called through the gateway's pool as the page calls it: where the page's time goes"))
    rpc_overhead.reply_queue_results(report, queues_before, queue_samples, queues_after)
    memory.results(report, idle_memory, mem_samples)
