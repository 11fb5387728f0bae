"""1. RPC overhead: a nameko RPC through the gateway's pool against a raw AMQP round trip.

Side by side, interleaved in rounds on the same broker and vhost:
- the baseline: bench/raw_echo.py (py-amqp echo server and client, direct reply-to);
- the gateway's RpcPool calling a trivial nameko echo that answers as the portal's services do;
- the same echo on nameko as shipped (ClusterRpcProxy, reused, to a stock-nameko echo): "before";
- RpcPool calling billing.ping (a real service: its dependencies and a SELECT 1 on PostgreSQL).
Then a pooled call against a client (connection) created per call, and nameko's proxy per call.

Then what a call costs in CPU, on each side, in rounds of its own: the caller's thread (`thread_time`)
and the answering process (/proc), for the raw echo, the nameko echo and the dashboard's own call
(billing.client_dashboard, brief, for the demo client). The nameko echo's figures against the raw
echo's are the fixed CPU cost of one RPC as the portal makes it; the dashboard's against the echo's,
what billing's own work for a page adds to it (its dependencies, the read, the answer).
"""

from __future__ import annotations

import statistics
import sys
import time

from nameko.standalone.rpc import ClusterRpcProxy

from bench.common import cpu_seconds, interleaved, timed
from bench.raw_echo import RawClient
from bench.report import Goal, Result, summary
from bench.stack import Context, spawn_and_wait
from chassis.scope import Scope
from deploy.devstack import BIN
from services.gateway.rpc import RpcClient, RpcPool

NAME = "1. RPC overhead"
REPLY_QUEUE_GOALS = ((NAME, "reply queues during the portal load (peak)"), (NAME, "reply queues after the portal load"))
GOALS = ((NAME, "p50: RpcPool -> nameko echo"),)  # the reply-queue goals are measured by the portal benchmark
RAW_QUEUE = "bench-raw-echo"


def _answers(call) -> bool:
    try:
        return call() == "hello"
    except Exception:  # noqa: BLE001 - not up yet
        return False


def start_echo_servers(ctx: Context) -> None:
    """The raw echo server and both nameko echo services, as processes of the stack."""
    if "raw-echo" in ctx.stack.procs:
        return
    raw = {}

    def raw_ready():
        try:
            raw.setdefault("client", RawClient(ctx.amqp_uri, RAW_QUEUE, timeout=2))
            return raw["client"].call() == "hello"
        except Exception:  # noqa: BLE001 - not up yet
            raw.clear()
            return False

    spawn_and_wait(ctx.stack, "raw-echo", [sys.executable, "-m", "bench.raw_echo", ctx.amqp_uri, RAW_QUEUE], raw_ready)
    raw["client"].close()
    pool = RpcPool({"AMQP_URI": ctx.amqp_uri}, timeout=2, size=1)
    spawn_and_wait(
        ctx.stack,
        "echo",
        [str(BIN / "nameko"), "run", "--broker", ctx.amqp_uri, "bench.echo_service:EchoService"],
        lambda: _answers(lambda: pool.call("bench_echo", "echo", "hello")),
    )

    def stock_answers():  # a stock nameko service cannot answer direct reply-to: nameko's own proxy
        with ClusterRpcProxy({"AMQP_URI": ctx.amqp_uri}, timeout=2) as proxy:
            return _answers(lambda: proxy.bench_echo_stock.echo("hello"))

    spawn_and_wait(
        ctx.stack,
        "echo-stock",
        [str(BIN / "nameko"), "run", "--broker", ctx.amqp_uri, "bench.echo_service:StockEchoService"],
        stock_answers,
        env={**ctx.env, "BENCH_STOCK_NAMEKO": "1"},
    )


def raw_round_trip_ms(ctx: Context, n: int = 400) -> float:
    """p50 of the raw AMQP round trip, now (for the portal benchmark's sum of parts)."""
    start_echo_servers(ctx)
    client = RawClient(ctx.amqp_uri, RAW_QUEUE)
    try:
        timed(client.call, 50)
        return statistics.median(timed(client.call, n))
    finally:
        client.close()


CPU_CALLS = 3000  # per side per round: /proc counts in 10 ms ticks, ~1% of a round's server CPU
CPU_ROUNDS = 3


def cpu_per_call(call, server_pid: int, n: int) -> tuple[float, float]:
    """(the calling thread's CPU, the server process's CPU) per call of `call`, in microseconds."""
    client_before, server_before = time.thread_time(), cpu_seconds(server_pid)
    for _ in range(n):
        call()
    client_after, server_after = time.thread_time(), cpu_seconds(server_pid)
    return (client_after - client_before) * 1e6 / n, (server_after - server_before) * 1e6 / n


def cpu_of_calls(ctx: Context, calls: dict) -> dict[str, dict[str, float]]:
    """Each of `calls` ({name: (call, server process name)}) measured in turn for CPU_ROUNDS rounds;
    the median of the rounds for each side."""
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for _ in range(CPU_ROUNDS):
        for name, (call, server) in calls.items():
            rounds[name].append(cpu_per_call(call, ctx.stack.pid(server), CPU_CALLS))
    return {
        name: {
            "client_us": statistics.median(client for client, _ in values),
            "server_us": statistics.median(server for _, server in values),
        }
        for name, values in rounds.items()
    }


def run(ctx: Context, report) -> None:
    start_echo_servers(ctx)
    config = {"AMQP_URI": ctx.amqp_uri}
    raw = RawClient(ctx.amqp_uri, RAW_QUEUE)
    pool = RpcPool(config, timeout=10, size=1)
    stock = ClusterRpcProxy(config, timeout=10)
    stock_proxy = stock.start()
    try:
        samples = interleaved(
            {
                "raw": raw.call,
                "pool_echo": lambda: pool.call("bench_echo", "echo", "hello", request_id="bench"),
                "stock_echo": lambda: stock_proxy.bench_echo_stock.echo("hello"),
                "pool_ping": lambda: pool.call("billing", "ping", request_id="bench"),
            },
            rounds=20,
            per_round=100,
        )
        pooled = timed(lambda: pool.call("bench_echo", "echo", "hello"), 200)

        def per_call():
            client = RpcClient(config, timeout=10)
            try:
                client.call("bench_echo", "echo", ("hello",), {})
            finally:
                client.close()

        def stock_per_call():
            with ClusterRpcProxy(config, timeout=10) as proxy:
                proxy.bench_echo_stock.echo("hello")

        fresh = timed(per_call, 100)
        stock_fresh = timed(stock_per_call, 50)
        workspace_id, client_id = ctx.demo_client()
        cpu = cpu_of_calls(
            ctx,
            {
                "raw": (raw.call, "raw-echo"),
                "pool_echo": (lambda: pool.call("bench_echo", "echo", "hello", request_id="bench"), "echo"),
                "dashboard": (
                    lambda: pool.call(
                        "billing",
                        "client_dashboard",
                        workspace_id,
                        client_id,
                        fields="brief",
                        request_id="bench",
                        scope=Scope(workspace_id, client_id),
                    ),
                    "billing",
                ),
            },
        )
    finally:
        stock.stop()
        raw.close()
    # the per-call proxies above each left a reply queue behind (x-expires: 5 minutes): gone, so the
    # portal benchmark's count shows the running system's own
    left_behind = ctx.management.delete_unused_standalone_reply_queues()
    figures = {name: summary(values) for name, values in samples.items()}
    figures["pooled"], figures["client_per_call"] = summary(pooled), summary(fresh)
    figures["stock_proxy_per_call"] = summary(stock_fresh)
    figures["stock_reply_queues_left_behind"] = left_behind
    figures["cpu_per_call"] = cpu
    ctx.shared["raw_rtt_p50"] = figures["raw"]["p50"]
    report.details["rpc_overhead"] = figures
    base = figures["raw"]
    raw_name = "raw AMQP round trip"
    report.add(
        Result(
            NAME,
            "p50: RpcPool -> nameko echo",
            figures["pool_echo"]["p50"],
            base["p50"],
            "ms",
            raw_name,
            Goal("ratio", "<=", 2.0),
            note="2,000 calls each, interleaved with the baseline in 20 rounds of 100",
        ),
        Result(NAME, "p99: RpcPool -> nameko echo", figures["pool_echo"]["p99"], base["p99"], "ms", raw_name),
        Result(
            NAME,
            "p50: nameko as shipped (ClusterRpcProxy -> stock echo)",
            figures["stock_echo"]["p50"],
            base["p50"],
            "ms",
            raw_name,
            note="what the gateway did before its own RPC client",
        ),
        Result(NAME, "p99: nameko as shipped", figures["stock_echo"]["p99"], base["p99"], "ms", raw_name),
        Result(
            NAME,
            "p50: RpcPool -> billing.ping (SELECT 1 on PostgreSQL)",
            figures["pool_ping"]["p50"],
            base["p50"],
            "ms",
            raw_name,
        ),
        Result(
            NAME,
            "p50: a client (connection) per call vs pooled",
            figures["client_per_call"]["p50"],
            figures["pooled"]["p50"],
            "ms",
            "pooled call",
        ),
        Result(
            NAME,
            "p50: nameko's ClusterRpcProxy per call vs pooled",
            figures["stock_proxy_per_call"]["p50"],
            figures["pooled"]["p50"],
            "ms",
            "pooled call",
            note="declares a reply queue per call, left behind for 5 minutes (x-expires): "
            + (
                f"{left_behind} after this comparison, deleted before the portal benchmark counts queues"
                if left_behind is not None
                else "not counted (no management API)"
            ),
        ),
    )
    how = f"median of {CPU_ROUNDS} rounds of {CPU_CALLS:,} calls each, one after another"
    compared = (  # (what, its label, its baseline, the baseline's label, (the caller's note, the answerer's))
        (
            "pool_echo",
            "RpcPool -> nameko echo",
            "raw",
            "raw AMQP round trip",
            (
                "thread_time of the calling thread: the pool's checkout, the request's encoding and publishing, "
                "the reply's reading and decoding",
                "/proc of the echo process: nameko's consumer, worker and reply (the portal's patches applied), "
                "against a py-amqp server that answers and acks",
            ),
        ),
        (
            "dashboard",
            "RpcPool -> billing.client_dashboard",
            "pool_echo",
            "RpcPool -> nameko echo",
            (
                "the dashboard page's call (brief, the demo client, its scope): the longer answer to read and decode",
                "the dashboard page's call (brief, the demo client, its scope): billing's dependency providers "
                "(scope, clock, metrics, logging), the one read on PostgreSQL and the answer, on top of an echo's cost",
            ),
        ),
    )
    for side, label in (("client_us", "the caller's thread"), ("server_us", "the answering process")):
        for what, what_label, baseline, baseline_label, notes in compared:
            report.add(
                Result(
                    NAME,
                    f"CPU per call, {label}: {what_label}",
                    cpu[what][side],
                    cpu[baseline][side],
                    "µs",
                    baseline_label,
                    note=f"{how}; {notes[side == 'server_us']}",
                )
            )


def reply_queue_results(report, before: int | None, during: list[int | None], after: int | None) -> None:
    """Reply queues counted through the management API before, during and after the portal load."""
    if before is None or after is None:
        for benchmark, name in REPLY_QUEUE_GOALS:
            report.miss(benchmark, name, "not measured: the RabbitMQ management API is not available")
        return
    during = [count for count in during if count is not None]
    report.details["reply_queues"] = {"before": before, "during": during, "after": after}
    peak = max(during) if during else before
    report.add(
        Result(
            NAME,
            "reply queues during the portal load (peak)",
            peak,
            before,
            "queues",
            "before the load",
            Goal("value", "<=", before),
            note=f"sampled {len(during)} times under load: {sorted(set(during))}; "
            f"after the load: {after}. The services' own in-service proxies "
            "hold one each; the gateway's calls use none (direct reply-to)",
        ),
        Result(
            NAME,
            "reply queues after the portal load",
            after,
            before,
            "queues",
            "before the load",
            Goal("value", "<=", before),
        ),
    )
