"""4. PDF: a cold render against a cached fetch of the same invoice (what caching PDFs buys),
the documents service's RPC latency while 20 PDFs render, against idle, and a cached invoice PDF
fetched again through the gateway as a signed-in client fetches it (GET /invoices/<id>/pdf: the
session check, then documents' current render for the client, streamed from its HTTP port; the first
fetch goes through billing and documents' RPC, which records it), against a hello-world request,
interleaved on one keep-alive connection each."""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from nameko.standalone.rpc import ClusterRpcProxy

from bench.common import interleaved, timed
from bench.report import Goal, Result, summary
from chassis.scope import CONTEXT_KEY, Scope

NAME = "4. PDF"
GATEWAY_FETCH = "cached invoice PDF through the gateway: p50 vs hello-world p50"
GOALS = (
    (NAME, "cold one-page invoice (15 lines) vs cached fetch"),
    (NAME, "documents.ping p99 during 20 renders vs idle"),
    (NAME, GATEWAY_FETCH),
)


def invoice_data(lines: int, tag: str) -> dict:
    line = {
        "description": "Consulting",
        "quantity": "1",
        "unit_price": 10000,
        "tax_rate": "0",
        "discount_percent": "0",
        "discount": 0,
        "subtotal": 10000,
        "tax": 0,
        "total": 10000,
    }
    total = 10000 * lines
    return {
        "id": tag,
        "number": f"BENCH-{tag}",
        "kind": "standard",
        "display_status": "sent",
        "currency": "USD",
        "issue_date": "2026-11-01",
        "due_date": "2026-12-01",
        "lines": [line] * lines,
        "subtotal": total,
        "discount_total": 0,
        "tax_total": 0,
        "tax_breakdown": [{"category": "Z", "rate": "0", "base": total, "tax": 0}],
        "total": total,
        "amount_paid": 0,
        "amount_credited": 0,
        "balance": total,
        "notes": tag,
        "terms": "",
        "client": {"name": "Bench Client", "address": ""},
    }


def through_the_gateway(ctx) -> dict:
    """p50s of the demo client's cached invoice PDF through the gateway and of hello-world, interleaved."""
    from bench.portal import start_hello

    hello = start_hello(ctx)
    [(invoice_id,)] = ctx.query(
        "billing",
        "SELECT i.id FROM invoices i JOIN contacts c ON c.client_id = i.client_id "
        "WHERE c.email = 'demo@example.com' AND i.status = 'sent' "
        "ORDER BY i.number LIMIT 1",
    )
    url = f"{ctx.stack.url}/invoices/{invoice_id}/pdf"
    client, baseline = requests.Session(), requests.Session()
    client.cookies.update(ctx.cookie)

    def fetch():
        answer = client.get(url, timeout=30)
        assert answer.status_code == 200 and answer.content.startswith(b"%PDF-"), answer.status_code
        return answer

    size = len(fetch().content)  # rendered into the cache now, if it was not there
    asked_before = billing_asked(ctx)
    samples = interleaved(
        {"hello": lambda: baseline.get(hello, timeout=10).raise_for_status(), "pdf": fetch},
        rounds=10,
        per_round=20,
        warmup=20,
    )
    asked = billing_asked(ctx) - asked_before
    return {
        "size": size,
        "hello": summary(samples["hello"]),
        "pdf": summary(samples["pdf"]),
        "fetches": len(samples["pdf"]) + 20,
        "asked_billing": asked,
    }


def billing_asked(ctx) -> float:
    """How often the gateway has asked billing for an invoice (its /metrics)."""
    return ctx.gateway_rpc_count(service="billing", method="get_invoice") or 0.0


def run(ctx, report) -> None:
    workspace_id, _ = ctx.demo_client()
    # the business's own tool acting for its workspace (the services' databases enforce it)
    config = {"AMQP_URI": ctx.amqp_uri}
    scoped = {CONTEXT_KEY: Scope(workspace_id).to_context()}
    with ClusterRpcProxy(config, context_data=scoped, timeout=120) as rpc:
        docs = rpc.documents
        docs.render_document("invoice", workspace_id, invoice_data(15, "warmup"), purpose="bench")  # a worker up

        def cold(lines: int, runs: int) -> list[float]:
            return [
                timed(
                    lambda: docs.render_document(
                        "invoice", workspace_id, invoice_data(lines, uuid.uuid4().hex), purpose="bench"
                    ),
                    1,
                )[0]
                for _ in range(runs)
            ]

        one_page, ten_pages = cold(15, 5), cold(330, 3)
        fixed = invoice_data(15, "cached")
        docs.render_document("invoice", workspace_id, fixed, purpose="bench")
        cached = timed(lambda: docs.render_document("invoice", workspace_id, fixed, purpose="bench"), 200)
        timed(docs.ping, 30)
        idle = summary(timed(docs.ping, 300))

    def render(i: int) -> None:
        with ClusterRpcProxy(config, context_data=scoped, timeout=300) as own:
            own.documents.render_document(
                "invoice", workspace_id, invoice_data(15, f"burst-{i}-{uuid.uuid4().hex}"), purpose="bench"
            )

    with ThreadPoolExecutor(20) as pool, ClusterRpcProxy(config, context_data=scoped, timeout=60) as rpc:
        burst = [pool.submit(render, i) for i in range(20)]
        time.sleep(0.5)  # the burst is queued and rendering
        busy = []
        while not all(f.done() for f in burst):
            busy += timed(rpc.documents.ping, 1)
        for f in burst:
            f.result()
    loaded = summary(busy)
    gateway = through_the_gateway(ctx)
    cold_p50, cached_p50 = statistics.median(one_page), statistics.median(cached)
    report.details["pdf"] = {
        "cold_one_page_ms": one_page,
        "cold_ten_pages_ms": ten_pages,
        "cached": summary(cached),
        "ping_idle": idle,
        "ping_during_20_renders": loaded,
        "through_the_gateway": gateway,
    }
    report.add(
        Result(
            NAME,
            "cold one-page invoice (15 lines) vs cached fetch",
            cold_p50,
            cached_p50,
            "ms",
            "cached fetch",
            Goal("ratio", ">=", 50),
            note="medians of 5 cold renders and 200 cached fetches (documents' RPC, the PDF in its answer); "
            f"cold ten-page invoice (330 lines) {statistics.median(ten_pages):.0f} ms",
        ),
        Result(
            NAME,
            "documents.ping p99 during 20 renders vs idle",
            loaded["p99"],
            idle["p99"],
            "ms",
            "idle",
            Goal("ratio", "<=", 3),
            note=f"{len(busy)} pings during the burst; p50 {loaded['p50']:.2f} ms vs {idle['p50']:.2f} ms idle",
        ),
        Result(
            NAME,
            GATEWAY_FETCH,
            gateway["pdf"]["p50"],
            gateway["hello"]["p50"],
            "ms",
            "hello-world",
            Goal("ratio", "<=", 3),
            note=f"GET /invoices/<id>/pdf signed in as the demo client, a {gateway['size']:,} "
            f"byte PDF already cached; 200 fetches interleaved with 200 hello-world "
            f"requests in 10 rounds, one keep-alive connection each, after 20 of each; "
            f"{gateway['asked_billing']:.0f} of the {gateway['fetches']} fetches asked billing (the "
            f"rest were documents' current render); p95 "
            f"{gateway['pdf']['p95']:.2f} ms vs {gateway['hello']['p95']:.2f} ms",
        ),
    )
