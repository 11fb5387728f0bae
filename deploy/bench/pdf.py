"""4. PDF: a cold render against a cached fetch of the same invoice (the documents issue's benchmark),
and the documents service's RPC latency while 20 PDFs render, against idle."""
from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from nameko.standalone.rpc import ClusterRpcProxy

from deploy.bench.common import timed
from deploy.bench.report import Goal, Result, summary

NAME = "4. PDF"
GOALS = ((NAME, "cold one-page invoice (15 lines) vs cached fetch"), (NAME, "documents.ping p99 during 20 renders vs idle"))


def invoice_data(lines: int, tag: str) -> dict:
    line = {"description": "Consulting", "quantity": "1", "unit_price": 10000, "tax_rate": "0",
            "discount_percent": "0", "discount": 0, "subtotal": 10000, "tax": 0, "total": 10000}
    total = 10000 * lines
    return {"id": tag, "number": f"BENCH-{tag}", "kind": "standard", "display_status": "sent", "currency": "USD",
            "issue_date": "2026-11-01", "due_date": "2026-12-01", "lines": [line] * lines, "subtotal": total,
            "discount_total": 0, "tax_total": 0, "total": total, "amount_paid": 0, "amount_credited": 0,
            "balance": total, "notes": tag, "terms": "", "client": {"name": "Bench Client", "address": ""}}


def run(ctx, report) -> None:
    workspace_id, _ = ctx.demo_client()
    config = {"AMQP_URI": ctx.amqp_uri}
    with ClusterRpcProxy(config, timeout=120) as rpc:
        docs = rpc.documents
        docs.render_document("invoice", workspace_id, invoice_data(15, "warmup"), purpose="bench")  # a worker up

        def cold(lines: int, runs: int) -> list[float]:
            return [timed(lambda: docs.render_document("invoice", workspace_id, invoice_data(lines, uuid.uuid4().hex),
                                                       purpose="bench"), 1)[0] for _ in range(runs)]

        one_page, ten_pages = cold(15, 5), cold(330, 3)
        fixed = invoice_data(15, "cached")
        docs.render_document("invoice", workspace_id, fixed, purpose="bench")
        cached = timed(lambda: docs.render_document("invoice", workspace_id, fixed, purpose="bench"), 200)
        timed(docs.ping, 30)
        idle = summary(timed(docs.ping, 300))

    def render(i: int) -> None:
        with ClusterRpcProxy(config, timeout=300) as own:
            own.documents.render_document("invoice", workspace_id, invoice_data(15, f"burst-{i}-{uuid.uuid4().hex}"),
                                          purpose="bench")

    with ThreadPoolExecutor(20) as pool, ClusterRpcProxy(config, timeout=60) as rpc:
        burst = [pool.submit(render, i) for i in range(20)]
        time.sleep(0.5)  # the burst is queued and rendering
        busy = []
        while not all(f.done() for f in burst):
            busy += timed(rpc.documents.ping, 1)
        for f in burst:
            f.result()
    loaded = summary(busy)
    cold_p50, cached_p50 = statistics.median(one_page), statistics.median(cached)
    report.details["pdf"] = {"cold_one_page_ms": one_page, "cold_ten_pages_ms": ten_pages,
                             "cached": summary(cached), "ping_idle": idle, "ping_during_20_renders": loaded}
    report.add(
        Result(NAME, "cold one-page invoice (15 lines) vs cached fetch", cold_p50, cached_p50, "ms", "cached fetch",
               Goal("ratio", ">=", 50), note=f"medians of 5 cold renders and 200 cached fetches; cold ten-page "
                                             f"invoice (330 lines) {statistics.median(ten_pages):.0f} ms"),
        Result(NAME, "documents.ping p99 during 20 renders vs idle", loaded["p99"], idle["p99"], "ms", "idle",
               Goal("ratio", "<=", 3), note=f"{len(busy)} pings during the burst; p50 {loaded['p50']:.2f} ms "
                                            f"vs {idle['p50']:.2f} ms idle"),
    )
