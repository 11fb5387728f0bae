"""2. Portal throughput: the signed-in dashboard and invoice list under 50 concurrent clients (wrk),
against a Falcon hello-world served by the same gunicorn configuration and against the same portal as
a monolith; and the dashboard's latency against the sum of its parts.

The clients: 500 clients of the benchmark's workspace, each with its own portal contact and 20
invoices in a mix of statuses (bench/users.py); 50 of them sign in with a magic link. Under
load each of wrk's 50 connections is one of those 50 clients, with its own session (one wrk thread
per connection, each sending its own cookie: wrk_report.lua), so nothing one client's requests warm
serves another's. Like a browser, each keeps the renewed cookie the gateway sets once a minute. The
same pages with one cookie on all 50 connections (what this benchmark measured before) are reported
beside them, labelled as such.

Baselines, measured in the same run, interleaved with the pages:
- hello-world: bench/hello.py under the gateway's gunicorn.conf.py, loaded the same way;
- the monolith: bench/monolith.py, the gateway's own app with each RPC replaced by the
  service's handler called in process on the service's database (the same SQL, the same row-level
  security scope, the same template), one gunicorn like the gateway's, the same 50 clients;
- the sum of the dashboard's parts: hello-world's p50 + its RPCs x a raw AMQP round trip + its SQL
  round trips x a `pgbench -S` SELECT, each count counted (the gateway's metrics, the services'
  statement counters), not assumed. The monolith's page alone is set against the sum of its own
  parts the same way (no RPC; its SQL round trips counted in its process too): what one program
  with no hop at all comes to on the same machine.

Each load runs ROUNDS times, the pages and their baselines in turn within each round; figures are the
median over the rounds (errors: the sum). CPU per page is read from /proc before and after each load
for every process a page passes through. Auth's RPCs per page view are read from auth's own metrics
(`portal_rpc_duration_seconds_count`, every method but ping) before and after the 50-client loads.

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

from bench import memory, rpc_overhead, users
from bench.common import Sampler, cpu_seconds, cpu_seconds_of_command, timed, wrk
from bench.report import Goal, Result
from bench.stack import Context, free_port, http_ok, spawn_and_wait, with_sql_counter
from chassis.scope import Scope
from deploy.devstack import BIN, wait_for
from services.gateway.rpc import RpcPool

NAME = "2. Portal throughput"
USERS = 50
SECONDS = 10
ROUNDS = 3
PAGES = ("dashboard", "invoices")
DISTINCT = f"{USERS} distinct users"
ONE_COOKIE = f"{USERS} connections sharing one cookie"
GOALS = (
    *((NAME, f"/{page}: {what}, {DISTINCT}") for page in PAGES for what in ("req/s", "p95", "errors")),
    (NAME, f"/dashboard: CPU per page, all processes, {DISTINCT}"),
    (NAME, f"/dashboard: req/s vs the monolith, {DISTINCT}"),
    (NAME, "/dashboard p50 alone vs the sum of its parts"),
    (NAME, "auth RPCs per signed-in page view"),
    *rpc_overhead.REPLY_QUEUE_GOALS,
)


def _gunicorn(ctx: Context, name: str, app: str, env: dict | None = None) -> str:
    """One more gunicorn under the stack, with the gateway's configuration; its URL."""
    if name in ctx.stack.procs:
        return ctx.shared[f"{name}_url"]
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    spawn_and_wait(
        ctx.stack,
        name,
        [str(BIN / "gunicorn"), "-c", "services/gateway/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", app],
        lambda: http_ok(url if name == "hello" else url + "livez"),
        env={**ctx.env, "GATEWAY_BIND": f"127.0.0.1:{port}", **(env or {})},
    )
    ctx.shared[f"{name}_url"] = url
    return url


def start_hello(ctx: Context) -> str:
    return _gunicorn(ctx, "hello", "bench.hello:app")


def start_monolith(ctx: Context) -> str:
    """The monolith, with the SQL round-trip counter the services have (hooks/sitecustomize.py)."""
    return _gunicorn(ctx, "monolith", "bench.monolith:get_app()", env=with_sql_counter(ctx.env))


def portal_users(ctx: Context) -> list[users.User]:
    """The benchmark's clients, made and signed in once per run."""
    if "portal_users" not in ctx.shared:
        workspace_id, _ = ctx.demo_client()
        started = time.monotonic()
        made = users.seed(ctx.env["BILLING_DATABASE_URL"], workspace_id, uuid.uuid4().hex[:6])
        print(
            f"  {len(made)} clients with {users.INVOICES} invoices each in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        emails = {u.email for u in made}
        placeholders = ",".join(["%s"] * len(emails))
        ctx.shared["seed_seconds"] = time.monotonic() - started
        wait_for(
            lambda: (
                ctx.query("auth", f"SELECT count(*) FROM contacts WHERE email IN ({placeholders})", *emails)[0][0]
                == len(emails)
            ),
            120,
            "auth to learn the benchmark's contacts",
        )
        ctx.shared["portal_users"] = users.sign_in_all(ctx.stack.url, ctx.work / "mail", made[:USERS])
        ctx.vacuum_analyze()
        ctx.shared["workspace_id"] = workspace_id
        ctx.shared["clients"] = len(made)
    return ctx.shared["portal_users"]


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
        out = subprocess.run(
            ["pgbench", "-S", "-n", "-M", "simple", "-c", "1", "-j", "1", "-T", str(seconds), *conn, db],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    return float(re.search(r"latency average = ([\d.]+) ms", out).group(1))


def count_parts(ctx: Context, url: str, cookies: dict, n: int = 20) -> dict:
    """RPCs (the gateway's own metric) and SQL round trips (every service) per request of `url`."""
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
    return {
        "rpcs": None if rpc_before is None else (rpc_after - rpc_before) / n,
        "sql": sql,
        "sql_round_trips": sum(sql.values()),
        "requests": n,
        "background_sql_per_second": {k: v / elapsed for k, v in background.items()},
    }


def _by_kind(parts: dict) -> str:
    """count_parts' SQL round trips a request, by kind (statements, begins, ...), for a note."""
    return ", ".join(f"{kind} {count:.1f}" for kind, count in parts["sql"].items())


def dashboard_rpcs_ms(ctx: Context, workspace_id: str, user: users.User, n: int = 100) -> dict:
    """p50 of each RPC the dashboard makes, called alone through the gateway's pool as the gateway
    calls them: where the dashboard's time goes."""
    pool = RpcPool({"AMQP_URI": ctx.amqp_uri}, timeout=10, size=1)
    calls = {
        "billing.client_dashboard": lambda: pool.call(  # as the page asks for it
            "billing",
            "client_dashboard",
            workspace_id,
            user.client_id,
            fields="brief",
            scope=Scope(workspace_id, user.client_id),
        )
    }
    for call in calls.values():
        timed(call, 10)
    return {name: statistics.median(timed(call, n)) for name, call in calls.items()}


# Auth's RPCs that no page waits on: the gateways' batched "last seen" reports (at most one a minute
# per worker, sent in the background) and the revocation snapshot a gateway worker takes as it starts.
OFF_THE_PAGE = ("ping", "sessions_seen", "revocations")


def auth_rpcs(ctx: Context) -> dict[str, float]:
    """RPCs auth has answered so far, by method (its portal_rpc_duration_seconds histogram)."""
    text = requests.get(f"{ctx.stack.http_url('auth')}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("portal_rpc_duration_seconds_count{"):
            method = line.split('method="', 1)[1].split('"', 1)[0]
            counts[method] = counts.get(method, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def auth_session_checks(ctx: Context) -> tuple[float, float]:
    """(RPCs to auth that a page could wait on, RPCs sent off the page's path) answered so far."""
    counts = auth_rpcs(ctx)
    background = sum(counts.get(method, 0.0) for method in OFF_THE_PAGE if method != "ping")
    return sum(v for k, v in counts.items() if k not in OFF_THE_PAGE), background


def cpu_used(ctx: Context, processes, with_broker: bool = True) -> dict[str, float]:
    """CPU seconds used so far by each of the stack's `processes` (child processes included), the
    broker and PostgreSQL: everything a page's request passes through."""
    used = {name: cpu_seconds(ctx.stack.pid(name)) for name in processes}
    if with_broker:
        used["rabbitmq"] = cpu_seconds_of_command("beam.smp")
    used["postgresql"] = cpu_seconds_of_command("postgres")
    return used


def loaded_with_cpu(ctx: Context, url: str, processes, with_broker: bool = True, **load) -> dict:
    """wrk's figures for `url` under the benchmark's load, plus the CPU each process spent per
    request meanwhile (milliseconds), read from /proc before and after."""
    before = cpu_used(ctx, processes, with_broker)
    figures = wrk(url, USERS, SECONDS, **load)
    after = cpu_used(ctx, processes, with_broker)
    figures["cpu_ms_per_request"] = {
        name: (after[name] - before[name]) * 1000 / max(figures["requests"], 1) for name in after
    }
    return figures


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over the rounds; errors summed; CPU per process the median of each."""
    keys = ("rps", "p50", "p90", "p95", "p99", "mean", "requests")
    merged = {key: statistics.median(run[key] for run in runs) for key in keys}
    merged["errors"] = sum(run["errors"] for run in runs)
    merged["error_detail"] = {k: sum(run["error_detail"][k] for run in runs) for k in runs[0]["error_detail"]}
    if "cpu_ms_per_request" in runs[0]:
        merged["cpu_ms_per_request"] = {
            name: statistics.median(run["cpu_ms_per_request"][name] for run in runs)
            for name in runs[0]["cpu_ms_per_request"]
        }
        merged["cpu_ms_total"] = statistics.median(sum(run["cpu_ms_per_request"].values()) for run in runs)
    merged["rounds"] = [{k: run[k] for k in ("rps", "p50", "p95", "errors")} for run in runs]
    return merged


def run(ctx: Context, report) -> None:
    clients = portal_users(ctx)
    workspace_id = ctx.shared["workspace_id"]
    cookies = users.cookie_file(clients, ctx.work / "portal-cookies.txt")
    one_cookie = {"Cookie": f"portal_session={clients[0].cookie}"}
    hello, monolith = start_hello(ctx), start_monolith(ctx)
    pages = {page: f"{ctx.stack.url}/{page}" for page in PAGES}
    for url in (hello, f"{monolith}dashboard", *pages.values()):  # warm up: pools, templates, caches
        wrk(url, USERS, 3, cookies=cookies)
    time.sleep(1)
    idle_memory = memory.snapshot(ctx)
    queues_before = ctx.management.reply_queues()
    mem, queues = memory.sampler(ctx), Sampler(ctx.management.reply_queues, 1.0)
    mem.start()
    queues.start()
    runs: dict[str, list[dict]] = {}
    checks = {"session_checks": 0.0, "background": 0.0, "pages": 0}
    try:
        for number in range(ROUNDS):
            print(f"  round {number + 1} of {ROUNDS}", flush=True)
            loads = {
                "hello": lambda: loaded_with_cpu(ctx, hello, ["hello"], with_broker=False, cookies=cookies),
                "monolith": lambda: loaded_with_cpu(
                    ctx, f"{monolith}dashboard", ["monolith"], with_broker=False, cookies=cookies
                ),
            }
            for page, url in pages.items():
                loads[page] = lambda url=url: loaded_with_cpu(ctx, url, memory.PROCESSES, cookies=cookies)
            loads["hello_one_cookie"] = lambda: loaded_with_cpu(ctx, hello, ["hello"], with_broker=False)
            for page, url in pages.items():
                loads[f"{page}_one_cookie"] = lambda url=url: loaded_with_cpu(
                    ctx, url, memory.PROCESSES, headers=one_cookie
                )
            for name, load in loads.items():
                before = auth_session_checks(ctx) if name in PAGES else None
                runs.setdefault(name, []).append(load())
                if before is not None:
                    after = auth_session_checks(ctx)
                    checks["session_checks"] += after[0] - before[0]
                    checks["background"] += after[1] - before[1]
                    checks["pages"] += runs[name][-1]["requests"]
            runs.setdefault("hello_alone", []).append(wrk(hello, 1, 5, threads=1))
            runs.setdefault("dashboard_alone", []).append(wrk(pages["dashboard"], 1, 5, threads=1, headers=one_cookie))
            runs.setdefault("monolith_alone", []).append(
                wrk(f"{monolith}dashboard", 1, 5, threads=1, headers=one_cookie)
            )
    finally:
        mem_samples, queue_samples = mem.stop(), queues.stop()
    time.sleep(1)
    queues_after = ctx.management.reply_queues()
    loaded = {name: median_of(values) for name, values in runs.items()}

    # the dashboard's parts, counted and measured
    parts = count_parts(ctx, pages["dashboard"], {"portal_session": clients[0].cookie})
    monolith_parts = count_parts(ctx, f"{monolith}dashboard", {"portal_session": clients[0].cookie})
    rtt = rpc_overhead.raw_round_trip_ms(ctx)
    select_ms = pgbench_select_ms(ctx.admin_url)
    rpc_ms = dashboard_rpcs_ms(ctx, workspace_id, clients[0])
    rpcs = parts["rpcs"]
    alone = loaded["dashboard_alone"]["p50"]
    sum_of_parts = loaded["hello_alone"]["p50"] + (rpcs or 0) * rtt + parts["sql_round_trips"] * select_ms
    monolith_sum_of_parts = loaded["hello_alone"]["p50"] + monolith_parts["sql_round_trips"] * select_ms
    checks_per_page = checks["session_checks"] / max(checks["pages"], 1)
    report.details["portal"] = {
        "clients": ctx.shared["clients"],
        "invoices_per_client": users.INVOICES,
        "signed_in": len(clients),
        "seed_seconds": ctx.shared["seed_seconds"],
        "rounds": ROUNDS,
        "seconds_per_load": SECONDS,
        "median_of_rounds": loaded,
        "dashboard_parts": parts,
        "raw_rtt_p50_ms": rtt,
        "pgbench_select_ms": select_ms,
        "sum_of_parts_ms": sum_of_parts,
        "monolith_parts": monolith_parts,
        "monolith_sum_of_parts_ms": monolith_sum_of_parts,
        "dashboard_rpcs_alone_p50_ms": rpc_ms,
        "auth_session_checks": checks,
    }

    base, base_one = loaded["hello"], loaded["hello_one_cookie"]
    how = (
        f"median of {ROUNDS} rounds of {SECONDS} s, the pages and their baselines in turn in each round; "
        f"{ctx.shared['clients']} clients with {users.INVOICES} invoices each, {USERS} signed in, one per "
        f"connection (wrk: one thread per connection, each with its own session cookie, renewed as a browser's is)"
    )
    for page in PAGES:
        figures, shared = loaded[page], loaded[f"{page}_one_cookie"]
        report.add(
            Result(
                NAME,
                f"/{page}: req/s, {DISTINCT}",
                figures["rps"],
                base["rps"],
                "req/s",
                "hello-world",
                Goal("ratio", ">=", 0.08),
                note=how,
            ),
            Result(
                NAME,
                f"/{page}: p95, {DISTINCT}",
                figures["p95"],
                base["p95"],
                "ms",
                "hello-world",
                Goal("value", "<=", 300),
                note=f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms; "
                f"{figures['requests']:.0f} requests a round",
            ),
            Result(
                NAME,
                f"/{page}: errors, {DISTINCT}",
                figures["errors"],
                base["errors"],
                "",
                "hello-world",
                Goal("value", "==", 0),
                note=f"in all {ROUNDS} rounds: {figures['error_detail']}",
            ),
            Result(
                NAME,
                f"/{page}: req/s, {ONE_COOKIE}",
                shared["rps"],
                base_one["rps"],
                "req/s",
                "hello-world",
                note=f"the same client's session on all {USERS} connections (2 wrk threads), as this benchmark "
                f"measured before; p95 {shared['p95']:.1f} ms, errors {shared['errors']}",
            ),
        )
    # Where the CPU goes: every process a page passes through, per page, against hello-world's gunicorn.
    hello_cpu = base["cpu_ms_per_request"]["hello"]
    for name, label, goal in (
        ("dashboard", f"/dashboard: CPU per page, all processes, {DISTINCT}", Goal("ratio", "<=", 12)),
        ("invoices", f"/invoices: CPU per page, all processes, {DISTINCT}", None),
        ("monolith", f"monolith /dashboard: CPU per page, {DISTINCT}", None),
    ):
        split = {k: v for k, v in loaded[name]["cpu_ms_per_request"].items() if v > 0.005}
        report.add(
            Result(
                NAME,
                label,
                loaded[name]["cpu_ms_total"],
                hello_cpu,
                "ms",
                "hello-world's gunicorn",
                goal,
                note="per process: "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(split.items(), key=lambda kv: -kv[1]))
                + " ms; from /proc before and after each load; "
                + (
                    "the monolith and PostgreSQL (counted whole: other work on it too)"
                    if name == "monolith"
                    else "the broker and PostgreSQL count whole (other work on them too)"
                ),
            )
        )
    mono = loaded["monolith"]
    report.add(
        Result(
            NAME,
            f"/dashboard: req/s vs the monolith, {DISTINCT}",
            loaded["dashboard"]["rps"],
            mono["rps"],
            "req/s",
            "the monolith",
            Goal("ratio", ">=", 0.5),
            note=f"the monolith: the gateway's app with each RPC replaced by the service's handler in process "
            f"(bench/monolith.py), one gunicorn like the gateway's; its /dashboard p95 "
            f"{mono['p95']:.1f} ms, {mono['errors']} errors, {mono['rps'] / max(base['rps'], 1e-9):.2f}x "
            f"hello-world's req/s",
        ),
        Result(NAME, f"monolith /dashboard: req/s, {DISTINCT}", mono["rps"], base["rps"], "req/s", "hello-world"),
        Result(
            NAME,
            f"/dashboard: CPU per page vs the monolith, {DISTINCT}",
            loaded["dashboard"]["cpu_ms_total"],
            mono["cpu_ms_total"],
            "ms",
            "the monolith",
            note=f"what the services' design adds over one program reading the same data, in the same run; "
            f"against hello-world's gunicorn, the monolith's page costs "
            f"{mono['cpu_ms_total'] / max(hello_cpu, 1e-9):.1f}x and the 12x goal is {12 * hello_cpu:.2f} ms",
        ),
    )
    rpc_text = f"{rpcs:.1f}" if rpcs is not None else "? (the gateway served no /metrics)"
    report.add(
        Result(
            NAME,
            "/dashboard p50 alone vs the sum of its parts",
            alone,
            sum_of_parts,
            "ms",
            "sum of parts",
            Goal("ratio", "<=", 2.0),
            note=f"parts: hello-world p50 {loaded['hello_alone']['p50']:.2f} ms + {rpc_text} RPCs x {rtt:.3f} ms raw "
            f"round trip + {parts['sql_round_trips']:.1f} SQL round trips "
            f"({_by_kind(parts)}) x {select_ms:.3f} ms pgbench -S "
            f"= {sum_of_parts:.2f} ms; one connection, 5 s each, median of {ROUNDS} rounds",
        ),
        Result(
            NAME,
            "monolith /dashboard p50 alone vs the sum of its parts",
            loaded["monolith_alone"]["p50"],
            monolith_sum_of_parts,
            "ms",
            "its sum of parts",
            note=f"the same measure for one program with no hop (no goal): hello-world p50 "
            f"{loaded['hello_alone']['p50']:.2f} ms + {monolith_parts['sql_round_trips']:.1f} SQL round trips "
            f"({_by_kind(monolith_parts)}) x {select_ms:.3f} ms "
            f"pgbench -S = {monolith_sum_of_parts:.2f} ms; it checks each page's session against its row, as "
            f"one program with one database would",
        ),
    )
    report.add(
        Result(
            NAME,
            "auth RPCs per signed-in page view",
            checks_per_page,
            None,
            "calls",
            "",
            Goal("value", "==", 0),
            note=f"{checks['session_checks']:.0f} calls answered by auth (its /metrics) during "
            f"{checks['pages']:.0f} pages served to the {USERS} clients ({ROUNDS} rounds of /dashboard and "
            f"/invoices); besides them, {checks['background']:.0f} background calls no page waited on "
            f"(the gateways' batched last-seen reports and revocation snapshots)",
        )
    )
    for name, ms in rpc_ms.items():
        report.add(
            Result(
                NAME,
                f"/dashboard's {name} RPC alone: p50",
                ms,
                rtt,
                "ms",
                "raw AMQP round trip",
                note="called through the gateway's pool as the page calls it: where the page's time goes",
            )
        )
    rpc_overhead.reply_queue_results(report, queues_before, queue_samples, queues_after)
    memory.results(report, idle_memory, mem_samples)
