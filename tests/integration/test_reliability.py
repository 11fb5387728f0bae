"""Reliability on the running stack: RPC between services gives up after its timeout, a consumer that
cannot finish parks the event in dead letters, the CLI lists and replays it once the cause is gone,
and with one service down the portal pages that do not need it keep working."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import requests

from tests.conftest import ROOT, new_portal_client, services_rpc, sign_in
from tests.integration.test_admin_api import portalctl
from tests.integration.test_services import query, wait_until

pytestmark = pytest.mark.integration


def letters_of(stack, service: str, event_type: str, data_id: str) -> list[dict]:
    """The service's dead letters of that event type about one record (other tests may park their own)."""
    letters = [
        letter
        for letter in portalctl(stack, "dead-letters", "list", "--service", service)[service]
        if letter["event_type"] == event_type
    ]
    shown = [portalctl(stack, "dead-letters", "show", "--service", service, "--id", str(x["id"])) for x in letters]
    return [letter for letter in shown if letter["event"]["data"]["id"] == data_id]


def test_a_consumer_whose_peer_is_down_times_out_parks_the_event_and_a_replay_delivers_it_once(stack):
    """documents needs billing to write a receipt. With billing down its RPC gives up after
    SERVICE_RPC_TIMEOUT, is retried EVENT_RETRY_ATTEMPTS times, and the event is parked, not lost.
    documents waits 2 s for billing here, not the stack's 8: four tries of 8 s were most of this
    test's minute, and how long one try waits changes nothing of what is checked."""
    email = f"parked-{uuid.uuid4().hex[:6]}@example.com"
    made = new_portal_client(stack, "Parked Ltd", email, invoices=1)
    invoice = made["invoices"][0]
    stack.stop_process("documents")
    try:
        with services_rpc(stack, made["workspace_id"], timeout=20) as rpc:
            payment = rpc.billing.record_payment(
                made["workspace_id"],
                {
                    "invoice_id": invoice["id"],
                    "amount": invoice["total"],
                    "method": "bank_transfer",
                    "reference": "parked",
                },
            )
        wait_until(
            lambda: (
                query(
                    stack.databases["billing"],
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL AND event_type = 'payment.recorded'",
                )[0][0]
                == 0
            ),
            what="payment.recorded published",
        )
        stack.stop_process("billing")  # the event waits in documents' durable queue; billing is gone
    finally:
        stack.start_service("documents", env={"SERVICE_RPC_TIMEOUT": "2"})
    try:
        [letter] = wait_until(
            lambda: letters_of(stack, "documents", "payment.recorded", payment["id"]),
            timeout=120,
            what="the receipt event parked after the retries",
        )
        assert "did not answer within 2s" in letter["error"]
        assert stack.outbox.count(email, "Payment received") == 0
    finally:
        stack.stop_process("documents")  # back to the stack's own timeout for the tests after this one
        stack.start_service("documents")
        stack.start_service("billing")
    stack.wait_healthy(60)

    replayed = portalctl(stack, "dead-letters", "replay", "--service", "documents", "--id", str(letter["id"]))
    assert replayed == [
        {
            "id": letter["id"],
            "consumer": "documents.on_payment_recorded",
            "event_id": letter["event_id"],
            "handled": True,
        }
    ]
    stack.outbox.wait_for(email, 1, subject="Payment received")
    assert letters_of(stack, "documents", "payment.recorded", payment["id"]) == []
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.billing.cli",
            "dead-letters",
            "replay",
            "--service",
            "documents",
            "--id",
            str(letter["id"]),
        ],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "No dead letter" in result.stderr  # replayed once, gone
    time.sleep(1)
    assert stack.outbox.count(email, "Payment received") == 1


@pytest.mark.parametrize(
    "down, broken, working",
    [
        ("documents", ["/invoices/{invoice}/pdf"], ["/dashboard", "/invoices", "/invoices/{invoice}", "/payments"]),
        ("payments", ["/payment-methods"], ["/dashboard", "/invoices", "/invoices/{invoice}", "/statement"]),
    ],
)
def test_with_one_service_down_the_pages_that_do_not_need_it_still_work(stack, down, broken, working):
    email = f"degraded-{down}-{uuid.uuid4().hex[:6]}@example.com"
    made = new_portal_client(stack, f"Degraded {down}", email, invoices=1)
    session = sign_in(stack, email)
    paths = {"invoice": made["invoices"][0]["id"]}
    stack.stop_process(down)
    try:
        for path in working:
            page = session.get(stack.url + path.format(**paths), timeout=30)
            assert page.status_code == 200, (path, page.status_code)
        for path in broken:
            page = session.get(stack.url + path.format(**paths), timeout=30)
            assert page.status_code in (503, 504), (path, page.status_code)
            assert "not available right now; the rest of the portal still works" in page.text
        api = session.get(f"{stack.url}/api/portal/v1/invoices", timeout=30)
        assert api.status_code == 200 and api.json()
        health = requests.get(f"{stack.url}/healthz", timeout=20).json()["checks"]
        assert health[down]["ok"] is False and health["billing"]["ok"] is True
    finally:
        stack.start_service(down)
    stack.wait_healthy(60)
    for path in broken:
        assert session.get(stack.url + path.format(**paths), timeout=30).status_code == 200


def test_sigterm_lets_the_work_in_flight_finish_before_the_service_stops(stack):
    """A long PDF render is under way when documents gets SIGTERM: the caller still gets its PDF,
    answered after the signal, and the service exits only then."""
    import threading

    made = new_portal_client(stack, "Graceful Ltd", f"graceful-{uuid.uuid4().hex[:6]}@example.com", invoices=1)
    with services_rpc(stack, made["workspace_id"], timeout=60) as rpc:
        invoice = rpc.billing.get_invoice(made["workspace_id"], made["invoices"][0]["id"])
        long_invoice = {
            **invoice,
            "notes": uuid.uuid4().hex,  # new content: a cold render, not the cache
            "lines": [{**invoice["lines"][0], "description": f"Line {i}"} for i in range(1200)],  # seconds of work
        }
        reply = rpc.documents.render_document.call_async(
            "invoice", made["workspace_id"], long_invoice, purpose="preview"
        )
        answered = {}

        def wait_for_answer():
            try:
                answered["pdf"] = reply.result()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                answered["error"] = repr(exc)
            answered["at"] = time.monotonic()

        waiter = threading.Thread(target=wait_for_answer)
        waiter.start()
        time.sleep(1.0)  # documents is idle: it took the request at once and is rendering
        signalled_at = time.monotonic()
        try:
            stack.stop_process("documents")  # SIGTERM, then waits for the process to exit
            stopped_at = time.monotonic()
            waiter.join(60)
            assert "error" not in answered, answered.get("error")
            assert answered["at"] > signalled_at, "the render had finished before the signal; make it longer"
            assert answered["at"] <= stopped_at
            assert answered["pdf"]["filename"].endswith(".pdf") and answered["pdf"]["size"] > 10_000
        finally:
            stack.start_service("documents")
    stack.wait_healthy(60)
