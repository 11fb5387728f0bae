"""Observability of the running stack: every service's and the gateway's /metrics move with real portal
requests, every service is live and ready, and one request id is found in the JSON logs of each
service a request reaches (over RPC, service-to-service RPC and events through the outbox)."""

from __future__ import annotations

import json
import random
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SERVICE_NAMES, SIGN_IN, Browser, link_token, new_portal_client, sign_in
from tests.e2e.payments_support import paid_by_card, query, signed
from tests.integration.test_services import wait_until

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict:
    """{(sample name, frozenset of label pairs): value} of one /metrics page."""
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_service_and_gateway_metrics_move_with_real_requests(stack):
    made = new_portal_client(stack, "Metered Co", "metered@example.com", invoices=2)
    session = sign_in(stack, "metered@example.com")
    services = {name: stack.http_url(name) for name in SERVICE_NAMES}
    before = {name: scrape(url) for name, url in services.items()} | {"gateway": scrape(stack.url)}

    for _ in range(5):
        assert session.get(f"{stack.url}/invoices").status_code == 200
    for _ in range(3):
        assert session.get(f"{stack.url}/dashboard").status_code == 200
    assert session.get(f"{stack.url}/invoices/{made['invoices'][0]['id']}").status_code == 200
    day = random.randint(1, 28)  # a period no other test asked for: a cold render, not a cached one
    pdf = session.get(
        f"{stack.url}/statement.pdf",
        params={"from": f"2019-0{random.randint(1, 9)}-{day:02d}", "to": f"2019-10-{day:02d}"},
    )
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")

    after = {name: scrape(url) for name, url in services.items()} | {"gateway": scrape(stack.url)}

    def moved(where: str, name: str, **labels) -> float:
        return sample(after[where], name, **labels) - sample(before[where], name, **labels)

    # the gateway: one series per route template, all gunicorn workers added up (exact counts)
    http = "portal_http_request_duration_seconds_count"
    assert moved("gateway", http, method="GET", route="/invoices", status="200") == 5
    assert moved("gateway", http, method="GET", route="/dashboard", status="200") == 3
    assert moved("gateway", http, method="GET", route="/invoices/{invoice_id}", status="200") == 1
    assert not any(made["invoices"][0]["id"] in dict(labels).get("route", "") for _, labels in after["gateway"])
    inf = dict(method="GET", route="/dashboard", status="200", le="+Inf")
    assert sample(after["gateway"], "portal_http_request_duration_seconds_bucket", **inf) == sample(
        after["gateway"], http, method="GET", route="/dashboard", status="200"
    )
    assert (
        moved("gateway", "portal_http_request_duration_seconds_sum", method="GET", route="/dashboard", status="200") > 0
    )
    gateway_rpc = "portal_gateway_rpc_duration_seconds_count"
    assert moved("gateway", gateway_rpc, service="billing", method="list_invoices", outcome="ok") == 5
    # sessions are checked at the gateway: ten signed-in pages and a PDF, and not one call to auth
    assert [
        dict(labels)
        for name, labels in after["gateway"]
        if name == gateway_rpc and dict(labels)["service"] == "auth" and moved("gateway", gateway_rpc, **dict(labels))
    ] == []

    # the services: their side of the same calls
    rpc = "portal_rpc_duration_seconds_count"
    assert moved("billing", rpc, service="billing", method="list_invoices", outcome="ok") == 5
    assert moved("billing", rpc, service="billing", method="client_dashboard", outcome="ok") == 3
    assert moved("auth", rpc, service="auth", method="check_session", outcome="ok") == 0  # (emails' links may)
    assert moved("documents", rpc, service="documents", method="render_document", outcome="ok") == 1
    assert moved("documents", "portal_pdf_render_seconds_count", kind="statement") == 1
    assert moved("documents", "portal_pdf_render_seconds_sum", kind="statement") > 0.05
    # the sign-in's auth.signed_in event reached billing's consumer
    assert (
        sample(
            after["billing"],
            "portal_events_handled_total",
            service="billing",
            consumer="billing.on_signed_in",
            outcome="processed",
        )
        >= 1
    )
    for name in SERVICE_NAMES:  # outbox lag and parked letters, read from each service's database
        assert ("portal_outbox_pending", frozenset({("service", name)})) in after[name]
        assert sample(after[name], "portal_outbox_oldest_seconds", service=name) < 60
        assert ("portal_dead_letters_parked", frozenset({("service", name)})) in after[name]


def test_a_card_payment_is_counted_by_outcome(stack):
    made = new_portal_client(stack, "Metered Payer", "metered-payer@example.com", invoices=1)
    session = sign_in(stack, "metered-payer@example.com")
    before = scrape(stack.http_url("payments"))
    paid_by_card(session, stack, made["invoices"][0]["id"])

    def counted() -> float:
        now = sample(scrape(stack.http_url("payments")), "portal_payments_total", outcome="succeeded")
        return now - sample(before, "portal_payments_total", outcome="succeeded")

    assert wait_until(lambda: counted() >= 1, what="payments to count the payment") and counted() == 1
    webhooks = sample(
        scrape(stack.url),
        "portal_http_request_duration_seconds_count",
        method="POST",
        route="/webhooks/stripe",
        status="200",
    )
    assert webhooks >= 1
    stripe_events = sample(
        scrape(stack.http_url("payments")),
        "portal_events_handled_total",
        service="payments",
        consumer="payments.stripe_event",
        outcome="processed",
    )
    assert stripe_events >= 1  # stored Stripe events count like broker events


def test_every_service_is_live_and_ready(stack):
    for name in SERVICE_NAMES:
        live = requests.get(f"{stack.http_url(name)}/healthz", timeout=10)
        assert live.status_code == 200 and live.json() == {"service": name, "ok": True}
        ready = requests.get(f"{stack.http_url(name)}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "service": name,
            "ready": True,
            "checks": {"database": {"ok": True}, "broker": {"ok": True}},
        }
    assert requests.get(f"{stack.url}/livez", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{stack.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["broker"]["ok"] is True


def log_lines(stack, process: str, request_id: str) -> list[dict]:
    path = stack.log_dir / f"{process}.log"
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and request_id in line:
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return [entry for entry in lines if entry.get("request_id") == request_id]


def wait_for_log(stack, process: str, request_id: str, **fields) -> dict:
    def found():
        return next(
            (
                entry
                for entry in log_lines(stack, process, request_id)
                if all(entry.get(k) == v for k, v in fields.items())
            ),
            None,
        )

    return wait_until(found, timeout=20, what=f"{process} to log {fields} with request id {request_id}")


def test_one_request_id_follows_a_sign_in_through_every_service_it_reaches(stack):
    new_portal_client(stack, "Traced Co", "traced@example.com")
    browser = Browser(stack.url)
    login_id, verify_id = f"trace-login-{uuid.uuid4().hex[:12]}", f"trace-verify-{uuid.uuid4().hex[:12]}"

    # gateway -> auth.request_link (RPC) -> documents.send_magic_link (auth's own RPC to documents)
    before = stack.outbox.count("traced@example.com", SIGN_IN)
    page = browser.post(f"{stack.url}/login", data={"email": "traced@example.com"}, headers={"X-Request-Id": login_id})
    assert page.status_code == 200 and page.headers["X-Request-ID"] == login_id
    wait_for_log(stack, "gateway", login_id, method="POST", path="/login", status=200)
    wait_for_log(stack, "auth", login_id, message="rpc handled", method="request_link", outcome="ok")
    wait_for_log(stack, "documents", login_id, message="rpc handled", method="send_magic_link", outcome="ok")
    wait_for_log(stack, "documents", login_id, message="email sent", kind="magic_link")  # by the mail timer, later

    # gateway -> auth.consume_link (RPC) -> auth.signed_in (auth's outbox, relayed) -> billing's consumer
    token = link_token(stack.outbox.wait_for("traced@example.com", before + 1, subject=SIGN_IN)[-1])
    page = browser.post(
        f"{stack.url}/login/verify", data={"token": token}, headers={"X-Request-Id": verify_id}, allow_redirects=False
    )
    assert page.status_code == 303 and page.headers["X-Request-ID"] == verify_id
    wait_for_log(stack, "auth", verify_id, message="rpc handled", method="consume_link", outcome="ok")
    handled = wait_for_log(stack, "billing", verify_id, message="event handled", consumer="billing.on_signed_in")
    assert handled["outcome"] == "processed" and handled["event_type"] == "auth.signed_in"
    assert all(
        entry["service"] == process for process in ("auth", "billing") for entry in log_lines(stack, process, verify_id)
    )


def test_one_request_id_follows_a_stripe_webhook_to_the_consumer_of_its_event(stack):
    """gateway -> payments.receive_stripe_event (processed as stored) -> the payment.disputed event
    (payments' outbox) -> billing's consumer: all under the webhook's id."""
    made = new_portal_client(stack, "Traced Payer", "traced-payer@example.com", invoices=1)
    attempt_id = paid_by_card(sign_in(stack, "traced-payer@example.com"), stack, made["invoices"][0]["id"])
    intent = query(stack, "payments", "SELECT payment_intent_id FROM attempts WHERE id = %s", attempt_id)[0][0]
    event = {
        "id": f"evt_trace_{attempt_id[:8]}",
        "object": "event",
        "type": "charge.dispute.created",
        "data": {
            "object": {
                "id": f"dp_trace_{attempt_id[:8]}",
                "object": "dispute",
                "amount": 10000,
                "currency": "usd",
                "payment_intent": intent,
                "reason": "fraudulent",
                "status": "needs_response",
            }
        },
    }
    webhook_id = f"trace-webhook-{uuid.uuid4().hex[:12]}"
    body, headers = signed(stack, event)
    answer = requests.post(
        f"{stack.url}/webhooks/stripe", data=body, headers={**headers, "X-Request-Id": webhook_id}, timeout=10
    )
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == webhook_id
    wait_for_log(stack, "payments", webhook_id, message="rpc handled", method="receive_stripe_event", outcome="ok")
    processed = wait_for_log(stack, "payments", webhook_id, message="stripe event processed", event_id=event["id"])
    assert processed["outcome"].startswith("dispute")
    handled = wait_for_log(
        stack, "billing", webhook_id, message="event handled", consumer="billing.on_payment_disputed"
    )
    assert handled["outcome"] == "processed" and handled["event_type"] == "payment.disputed"
