"""3. Webhook to paid: 1,000 Stripe `payment_intent.succeeded` events, signed as Stripe signs them,
delivered to `POST /webhooks/stripe` as fast as the gateway accepts them (16 at a time); the time until
billing shows all 1,000 invoices Paid, as events per second against the broker's raw publish->consume
rate, measured just before and just after the deliveries and averaged (kombu: persistent messages to
a durable queue, publisher confirms as the outbox relay uses them, consumer acks).

The path measured: gateway -> payments (processes and stores the event in one transaction, outbox) ->
broker -> billing (records the payment, the invoice becomes Paid). The goal's figure pays one client's
1,000 invoices, so every payment also queues for that client's summary and engagement rows; the same
run over 50 clients (20 invoices each) is reported beside it, labelled, to tell that queue apart from
the CPU an event costs. Documents is stopped for this benchmark (it is not on that path): the 2,000
invoice and receipt PDFs it would render would otherwise compete for the 2 cores. It is the last
benchmark for that reason.

Beside them, labelled and without a goal, what one program would pay for the same: the portal
benchmark's monolith (bench/monolith.py), which answers a webhook by running payments' and billing's
same handlers on their same databases in the request's thread, with no broker. Its invoices are made
while the services run; payments and billing are then stopped, so that nothing else handles (or
competes for the cores with) what the monolith stores."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import kombu
import psycopg2
import requests

from bench.common import Sampler
from bench.memory import PROCESSES
from bench.portal import cpu_used, start_monolith
from bench.report import Goal, Result
from chassis.scope import Scope
from deploy.devstack import wait_for
from services.gateway.rpc import RpcPool

NAME = "3. Webhook to paid"
EVENTS = 1000
PAID = f"events/s until all {EVENTS} invoices show Paid"
GOALS = ((NAME, PAID),)
SENDERS = 16
SPREAD = 50  # clients in the second, labelled run


def broker_rate(amqp_uri: str, n: int = 3000) -> dict:
    """Messages per second from a publisher to a consumer through one durable queue."""
    queue = kombu.Queue(f"bench-raw-rate-{uuid.uuid4().hex[:6]}", durable=True, auto_delete=False)
    consumed, first_publish = threading.Event(), {}
    count = [0]
    with (
        kombu.Connection(amqp_uri) as consumer_conn,
        kombu.Connection(amqp_uri, transport_options={"confirm_publish": True}) as producer_conn,
    ):
        channel = consumer_conn.channel()
        bound = queue(channel)
        bound.declare()

        def on_message(body, message):
            message.ack()
            count[0] += 1
            if count[0] == n:
                consumed.set()

        consumer = kombu.Consumer(channel, queues=[bound], callbacks=[on_message], accept=["json"])
        consumer.qos(prefetch_count=100)
        consumer.consume()

        def drain():
            while not consumed.is_set():
                try:
                    consumer_conn.drain_events(timeout=1)
                except TimeoutError:
                    pass

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        producer = kombu.Producer(producer_conn.channel())
        first_publish["t"] = time.perf_counter()
        for i in range(n):
            producer.publish({"i": i, "pad": "x" * 200}, routing_key=queue.name, delivery_mode=2, serializer="json")
        consumed.wait(120)
        elapsed = time.perf_counter() - first_publish["t"]
        reader.join(5)
        bound.delete()
    return {"messages": n, "seconds": elapsed, "per_second": n / elapsed}


def signed(secret: str, event: dict) -> tuple[bytes, dict]:
    """A delivery as Stripe signs it: HMAC-SHA256 of "<t>.<body>" with the endpoint secret."""
    body = json.dumps(event).encode()
    timestamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


def make_attempts(ctx, workspace_id: str, clients: int = 1) -> list[dict]:
    """EVENTS sent invoices spread evenly over `clients` new clients, each with a payment attempt (as
    "Proceed to payment" makes), made through the services' RPC acting for the workspace (the
    business) and the invoice's client (the portal)."""
    pool = RpcPool({"AMQP_URI": ctx.amqp_uri}, timeout=60, size=8)
    business = Scope(workspace_id)
    tag = uuid.uuid4().hex[:6]
    client_ids = [
        pool.call(
            "billing",
            "create_client",
            workspace_id,
            {
                "name": f"Webhook Bench {n} Ltd",
                "contacts": [{"email": f"webhooks-{tag}-{n}@example.com", "name": "Bench", "is_primary": True}],
            },
            scope=business,
        )["id"]
        for n in range(clients)
    ]

    def one(i: int) -> dict:
        client_id = client_ids[i % clients]
        invoice = pool.call(
            "billing",
            "create_invoice",
            workspace_id,
            {
                "client_id": client_id,
                "send": True,
                "lines": [{"description": f"Webhook bench {i}", "quantity": 1, "unit_price": 1000 + i}],
            },
            scope=business,
        )
        attempt = pool.call(
            "payments",
            "start_payment",
            workspace_id,
            client_id,
            {"invoice_ids": [invoice["id"]]},
            f"bench-{tag}-{i}",
            scope=Scope(workspace_id, client_id, role="owner"),  # as the gateway sends a signed-in owner
        )
        return {"invoice_id": invoice["id"], "client_id": client_id, "attempt": attempt}

    with ThreadPoolExecutor(8) as executor:
        return list(executor.map(one, range(EVENTS)))


def event_for(made: dict, i: int) -> dict:
    attempt = made["attempt"]
    return {
        "id": f"evt_bench_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"pi_bench_{i}_{uuid.uuid4().hex[:8]}",
                "object": "payment_intent",
                "status": "succeeded",
                "amount": attempt["amount"],
                "currency": attempt["currency"].lower(),
                "payment_method": None,
                "metadata": {"attempt_id": attempt["id"]},
            }
        },
    }


@contextmanager
def counting(ctx, service: str):
    """`count(sql, *args)` on one connection to `service`'s database, held open for the run: polled
    every quarter second, a connection each time would cost PostgreSQL a new backend each time, on the
    CPU the benchmark counts."""
    conn = psycopg2.connect(ctx.admin_db[service])
    conn.autocommit = True

    def count(sql: str, *args) -> int:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]

    try:
        yield count
    finally:
        conn.close()


def deliver_all(ctx, made: list[dict], setup_seconds: float, url: str, on_path: list[str]) -> dict:
    """EVENTS webhooks to `url` paying the invoices `made`: seconds until all were accepted and until
    all show Paid, the CPU of the processes `on_path` (and the broker's and PostgreSQL's) meanwhile,
    and the broker's raw rate measured just before and just after, on the machine as it is then (a
    rate measured once, minutes away, varied 2x between runs)."""
    ctx.vacuum_analyze()
    raw_before = broker_rate(ctx.amqp_uri)
    secret = ctx.env["STRIPE_WEBHOOK_SECRET"]
    deliveries = [signed(secret, event_for(m, i)) for i, m in enumerate(made)]
    client_ids = sorted({m["client_id"] for m in made})
    local = threading.local()

    def deliver(delivery) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()  # one keep-alive connection per sender
        return local.session.post(url, data=delivery[0], headers=delivery[1], timeout=60).status_code

    with counting(ctx, "billing") as billing, counting(ctx, "payments") as payments:

        def counts() -> tuple[int, int]:
            """Events payments has handled (in this run and any before it); this run's invoices that
            billing shows Paid."""
            return (
                payments("SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL"),
                billing("SELECT count(*) FROM invoices WHERE client_id = ANY(%s) AND status = 'paid'", client_ids),
            )

        processed_before = counts()[0]
        cpu_before, started = cpu_used(ctx, on_path), time.monotonic()
        # which stage is behind, as it happens: payments' handled events and billing's paid invoices
        progress = Sampler(lambda: (time.monotonic() - started, *counts()), 0.25)
        progress.start()
        try:
            with ThreadPoolExecutor(SENDERS) as executor:
                statuses = list(executor.map(deliver, deliveries))
            accepted_seconds = time.monotonic() - started
            wait_for(
                lambda: bool(progress.values) and progress.values[-1][2] == EVENTS, 600, f"all {EVENTS} invoices paid"
            )
            cpu_after = cpu_used(ctx, on_path)
        finally:  # no sampling on after its connections are closed
            samples = progress.stop()
        timeline = [(t, done - processed_before, paid) for t, done, paid in samples]
    all_paid_seconds = next(t for t, _, paid in timeline if paid == EVENTS)
    raw_after = broker_rate(ctx.amqp_uri)
    return {
        "clients": len(client_ids),
        "setup_seconds": setup_seconds,
        "accepted_seconds": accepted_seconds,
        "all_paid_seconds": all_paid_seconds,
        "rejected": sum(status != 200 for status in statuses),
        # when payments had handled every event, and when billing showed every invoice Paid (each a sample's
        # time, so up to 0.25 s late)
        "processed_seconds": next((t for t, done, _ in timeline if done >= EVENTS), all_paid_seconds),
        "progress": [(round(t, 2), done, paid) for t, done, paid in timeline],
        # steadier than events/s on a shared machine: what each process spent, whatever else ran
        "cpu_ms_per_event": {name: (cpu_after[name] - cpu_before[name]) * 1000 / EVENTS for name in cpu_after},
        "broker_raw": {
            "before": raw_before,
            "after": raw_after,
            "per_second": (raw_before["per_second"] + raw_after["per_second"]) / 2,
        },
    }


def timed_attempts(ctx, workspace_id: str, clients: int) -> tuple[list[dict], float]:
    """make_attempts' invoices, and the seconds it took to make them."""
    started = time.monotonic()
    made = make_attempts(ctx, workspace_id, clients)
    return made, time.monotonic() - started


def through_services(ctx, workspace_id: str, clients: int) -> dict:
    on_path = [name for name in PROCESSES if name != "documents"]  # documents is stopped
    made, seconds = timed_attempts(ctx, workspace_id, clients)
    return deliver_all(ctx, made, seconds, f"{ctx.stack.url}/webhooks/stripe", on_path)


def through_monolith(ctx, workspace_id: str) -> tuple[dict, dict]:
    """The same two runs through the monolith: one client's EVENTS invoices, then 50 clients'."""
    made = [timed_attempts(ctx, workspace_id, clients) for clients in (1, SPREAD)]  # while the services answer
    for name in ("payments", "billing"):
        ctx.stack.stop_process(name)
    url = f"{start_monolith(ctx)}webhooks/stripe"
    one, spread = (deliver_all(ctx, invoices, seconds, url, ["monolith"]) for invoices, seconds in made)
    return one, spread


def run(ctx, report) -> None:
    ctx.stack.stop_process("documents")
    workspace_id, _ = ctx.demo_client()
    one = through_services(ctx, workspace_id, 1)
    spread = through_services(ctx, workspace_id, SPREAD)
    alone, alone_spread = through_monolith(ctx, workspace_id)  # stops payments and billing: last
    report.details["webhooks"] = {
        "events": EVENTS,
        "senders": SENDERS,
        **one,
        "spread": spread,
        "monolith": {**alone, "spread": alone_spread},
    }
    raw, raw_spread = one["broker_raw"], spread["broker_raw"]
    report.add(
        Result(
            NAME,
            PAID,
            EVENTS / one["all_paid_seconds"],
            raw["per_second"],
            "events/s",
            "broker raw publish->consume",
            Goal("ratio", ">=", 0.2),
            note=f"one client's {EVENTS} invoices: all Paid {one['all_paid_seconds']:.1f} s after the first "
            f"delivery; accepted in {one['accepted_seconds']:.1f} s ({one['rejected']} rejected), all handled by "
            f"payments in {one['processed_seconds']:.1f} s; broker: "
            f"{raw['before']['messages']} persistent messages with confirms and acks, "
            f"{raw['before']['per_second']:.0f}/s just before and {raw['after']['per_second']:.0f}/s just after",
        ),
        Result(
            NAME,
            f"events/s accepted by POST /webhooks/stripe ({SENDERS} at a time)",
            EVENTS / one["accepted_seconds"],
            raw["per_second"],
            "events/s",
            "broker raw publish->consume",
        ),
        Result(
            NAME,
            f"the same, the invoices of {SPREAD} clients (not the goal's figure)",
            EVENTS / spread["all_paid_seconds"],
            raw_spread["per_second"],
            "events/s",
            "broker raw publish->consume",
            note=f"{EVENTS // SPREAD} invoices each: all Paid {spread['all_paid_seconds']:.1f} s after the first "
            f"delivery; accepted in {spread['accepted_seconds']:.1f} s ({spread['rejected']} rejected), all handled "
            f"by payments in {spread['processed_seconds']:.1f} s",
        ),
        *(
            Result(
                NAME,
                f"the same, {label}, through the monolith (one program, no broker; not the goal's figure)",
                EVENTS / delivered["all_paid_seconds"],
                delivered["broker_raw"]["per_second"],
                "events/s",
                "broker raw publish->consume",
                note=f"each webhook answered once payments' and billing's handlers had run in its thread: all Paid "
                f"{delivered['all_paid_seconds']:.1f} s after the first delivery ({delivered['rejected']} rejected)",
            )
            for label, delivered in (("one client", alone), (f"{SPREAD} clients", alone_spread))
        ),
        *(
            Result(
                NAME,
                f"CPU per event, every process, {label}",
                sum(delivered["cpu_ms_per_event"].values()),
                None,
                "ms",
                note=", ".join(f"{name} {ms:.1f}" for name, ms in sorted(delivered["cpu_ms_per_event"].items())),
            )
            for label, delivered in (
                ("one client", one),
                (f"{SPREAD} clients", spread),
                ("the monolith, one client", alone),
                (f"the monolith, {SPREAD} clients", alone_spread),
            )
        ),
    )
