"""5. Scale-out: billing's throughput with two replicas against one, on this machine.

The load: 16 concurrent callers, each with its own connection from the gateway's RpcPool, calling
billing.client_dashboard for the demo client (the portal's heaviest billing call: several queries
under the client's row-level-security scope). One replica, then a second `nameko run` of billing
consuming the same queue (competing consumers), alternately, twice each; the baseline is the mean of
the one-replica runs. Each run also records the CPU the billing processes used and how busy the
whole machine was: a second replica can only gain what the machine's cores have left."""

from __future__ import annotations

import threading
import time

from bench.common import cpu_seconds, machine_busy
from bench.report import Goal, Result
from bench.stack import free_port, wait_consumers
from chassis.scope import Scope
from services.gateway.rpc import RpcPool

NAME = "5. Scale-out"
GOALS = ((NAME, "billing.client_dashboard calls/s: 2 replicas vs 1"),)
CALLERS = 16
SECONDS = 10


def load(ctx, workspace_id: str, client_id: str, seconds: float, replicas: list[str]) -> dict:
    pool = RpcPool({"AMQP_URI": ctx.amqp_uri}, timeout=30, size=CALLERS)
    scope = Scope(workspace_id, client_id)
    done, errors = [0] * CALLERS, [0] * CALLERS
    warm_until = time.monotonic() + 2
    stop_at = warm_until + seconds

    def caller(i: int) -> None:
        while time.monotonic() < stop_at:
            try:
                pool.call("billing", "client_dashboard", workspace_id, client_id, scope=scope)
                if time.monotonic() >= warm_until:
                    done[i] += 1
            except Exception:  # noqa: BLE001 - counted
                errors[i] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, warm_until - time.monotonic()))
    cpu_before, (busy_before, total_before) = {r: cpu_seconds(ctx.stack.pid(r)) for r in replicas}, machine_busy()
    for t in threads:
        t.join()
    cpu_after, (busy_after, total_after) = {r: cpu_seconds(ctx.stack.pid(r)) for r in replicas}, machine_busy()
    cores = {r: (cpu_after[r] - cpu_before[r]) / seconds for r in replicas}
    return {
        "replicas": len(replicas),
        "calls_per_second": sum(done) / seconds,
        "calls": sum(done),
        "errors": sum(errors),
        "billing_cpu_cores": sum(cores.values()),
        "cores_per_replica": cores,
        "machine_busy": (busy_after - busy_before) / max(1, total_after - total_before),
    }


def run(ctx, report) -> None:
    workspace_id, client_id = ctx.demo_client()
    runs = []
    for _ in range(2):
        runs.append(load(ctx, workspace_id, client_id, SECONDS, ["billing"]))
        ctx.stack.start_service("billing", "billing-2", http_address=f"127.0.0.1:{free_port()}")
        try:
            wait_consumers(ctx, "rpc-billing", 2)
            runs.append(load(ctx, workspace_id, client_id, SECONDS, ["billing", "billing-2"]))
        finally:
            ctx.stack.stop_process("billing-2")
        wait_consumers(ctx, "rpc-billing", 1)
    one = [r for r in runs if r["replicas"] == 1]
    two = [r for r in runs if r["replicas"] == 2]

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    report.details["scale_out"] = {"runs": runs}
    rates = ", ".join(f"{r['calls_per_second']:.0f}" for r in runs)
    # Competing consumers share the work: each replica's part of the CPU the two used together.
    shares = [min(r["cores_per_replica"].values()) / max(r["billing_cpu_cores"], 1e-9) for r in two]
    report.add(
        Result(
            NAME,
            "billing.client_dashboard calls/s: 2 replicas vs 1",
            mean(two, "calls_per_second"),
            mean(one, "calls_per_second"),
            "calls/s",
            "1 replica",
            Goal("ratio", ">=", 1.2),
            note=f"{CALLERS} concurrent callers, {SECONDS} s a run, 1-2-1-2 replicas: {rates} calls/s; "
            f"billing used {mean(one, 'billing_cpu_cores'):.2f} cores with one replica, "
            f"{mean(two, 'billing_cpu_cores'):.2f} with two (the less busy replica did "
            f"{min(shares):.0%} of it at least); the machine was "
            f"{mean(one, 'machine_busy'):.0%} / {mean(two, 'machine_busy'):.0%} busy (2 cores, shared with the "
            f"broker, PostgreSQL, the load generator and anything else running); errors "
            f"{sum(r['errors'] for r in runs)}",
        )
    )

    def per_core(rs):  # calls per second of billing CPU: what a replica costs, whatever the machine has left
        return sum(r["calls"] for r in rs) / max(sum(r["billing_cpu_cores"] * SECONDS for r in rs), 1e-9)

    report.add(
        Result(
            NAME,
            "calls per billing CPU-second: 2 replicas vs 1",
            per_core(two),
            per_core(one),
            "calls/CPU-s",
            "1 replica",
            note="near 1x: the replicas do not slow each other (no shared lock or queue order to wait on), so a "
            "second replica adds what a core it gets can do; below 1x: they compete for the same cores",
        )
    )
