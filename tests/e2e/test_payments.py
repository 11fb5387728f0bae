"""Card payments end to end over HTTP, against the running services, RabbitMQ, PostgreSQL and
localstripe (the real Stripe SDK): paying, bad input, signed webhooks delivered many times and out of
order, concurrent confirmations, refunds, disputes and autopay. After every test, what billing
recorded equals what localstripe charged, per client."""

from __future__ import annotations

import concurrent.futures
import io
import random
import re
import time

import pytest
import requests
from pypdf import PdfReader

from tests.conftest import business_today, new_portal_client, services_rpc, sign_in
from tests.e2e.payments_support import (
    CARD_3DS,
    CARD_OK,
    assert_ledger_matches_stripe,
    attempt_status,
    deliver,
    paid_by_card,
    pay_card,
    query,
    save_card,
    signed,
    start,
    stripe_client,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def ledger_check(stack):
    yield
    assert_ledger_matches_stripe(stack)


def admin(stack, method: str, path: str, key: str, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{stack.url}/api/admin/v1{path}", headers={"Authorization": f"Bearer {key}"}, timeout=15, **kwargs
    )


@pytest.fixture(scope="module")
def api_key(stack):
    workspace_id = query(stack, "billing", "SELECT id FROM workspaces WHERE name = 'Acme Studio'")[0][0]
    with services_rpc(stack, workspace_id) as rpc:
        return rpc.billing.create_api_key(workspace_id, "payment tests")["key"]


def invoice(session, stack, invoice_id: str) -> str:
    return session.get(f"{stack.url}/invoices/{invoice_id}").text


def test_pay_one_invoice_and_get_a_receipt(stack):
    made = new_portal_client(stack, "Payone Ltd", "payone@example.com", invoices=1)
    invoice_id = made["invoices"][0]["id"]
    session = sign_in(stack, "payone@example.com")
    assert "Pay now" in invoice(session, stack, invoice_id)
    started = start(session, stack, invoice=invoice_id)
    assert started.status_code == 303
    attempt_id = started.headers["Location"].rsplit("/", 1)[1]
    assert pay_card(session, stack, attempt_id, CARD_OK)["status"] == "processing"
    wait_until(lambda: attempt_status(session, stack, attempt_id) == "succeeded", what="the webhook")
    done = session.get(f"{stack.url}/pay/{attempt_id}/done").text
    assert "Thank you" in done and "$100.00" in done
    page = wait_until(lambda: "Paid" in invoice(session, stack, invoice_id) and invoice(session, stack, invoice_id))
    assert "Pay now" not in page
    payments = session.get(f"{stack.url}/payments").text
    assert "$100.00" in payments and made["invoices"][0]["number"] in payments
    [receipt] = stack.outbox.wait_for("payone@example.com", subject="Payment received")
    assert any(part.get_content_type() == "application/pdf" for part in receipt.iter_attachments())
    assert session.get(f"{stack.url}/payments/{attempt_id}/receipt.pdf").status_code == 200


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_credit_applied_on_proceeding_is_stated_and_the_card_shows_on_the_receipt(stack):
    made = new_portal_client(stack, "Credit Card Co", "creditcard@example.com", invoices=1)
    invoice = made["invoices"][0]
    with services_rpc(stack, made["workspace_id"]) as rpc:
        rpc.billing.issue_credit_note(made["workspace_id"], {"client_id": made["client"]["id"], "amount": 6000})
    session = sign_in(stack, "creditcard@example.com")
    review = session.get(f"{stack.url}/pay", params={"invoice": invoice["id"]}).text
    assert "Use my credit ($60.00) first" in review
    assert "applied to these invoices as soon as you proceed" in review
    started = start(session, stack, invoice=invoice["id"], apply_balance="1")
    attempt_id = started.headers["Location"].rsplit("/", 1)[1]
    card_page = session.get(f"{stack.url}/pay/{attempt_id}").text
    assert f"$60.00 of your credit was applied to {invoice['number']}; $40.00 remains to pay by card." in card_page
    assert pay_card(session, stack, attempt_id, CARD_OK)["status"] == "processing"
    wait_until(lambda: attempt_status(session, stack, attempt_id) == "succeeded", what="the webhook")
    # the client sees the card it paid with, never Stripe's id; ops still find that id on the payment
    [(reference, stripe_reference)] = wait_until(
        lambda: query(stack, "billing", "SELECT reference, stripe_reference FROM payments WHERE id = %s", attempt_id)
    )
    assert reference == "Visa ending 4242" and stripe_reference.startswith("pi_")
    payments = session.get(f"{stack.url}/payments").text
    assert "Visa ending 4242" in payments and "pi_" not in payments
    receipt = session.get(f"{stack.url}/payments/{attempt_id}/receipt.pdf")
    assert receipt.status_code == 200
    text = pdf_text(receipt.content)
    assert "Visa ending 4242" in text and "pi_" not in text


def test_bad_input_is_refused_clearly_and_calls_no_stripe(stack):
    made = new_portal_client(stack, "Careful GmbH", "careful@example.com", invoices=2)
    other = new_portal_client(stack, "Nosy Inc", "nosy@example.com", invoices=1)
    session = sign_in(stack, "careful@example.com")
    first, second = made["invoices"]
    intents_before = len(stripe_client(stack).v1.payment_intents.list({"limit": 100}).data)
    attempts_before = query(stack, "payments", "SELECT count(*) FROM attempts")[0][0]
    with services_rpc(stack, made["workspace_id"]) as rpc:
        rpc.billing.void_invoice(made["workspace_id"], second["id"])
        # The invoice as the business sees it now: void.
        cases = {
            "above the balance": ({"invoice": first["id"], "amount": "100.01"}, 422, "more than"),
            "not a number": ({"invoice": first["id"], "amount": "lots"}, 422, "number"),
            **{  # never rounded, nor read as Python or Babel would: refused, nothing started
                f"odd amount {odd}": ({"invoice": first["id"], "amount": odd}, 422, "at most two decimals")
                for odd in ("10.001", "1e3", "-5", "nan", "1,2,3", "9" * 2000)
            },
            "void": ({"invoice": second["id"]}, 422, "void"),
            "another client's": ({"invoice": other["invoices"][0]["id"]}, 404, ""),
            "unknown": ({"invoice": "no-such-invoice"}, 404, ""),
        }
        for name, (form, status, words) in cases.items():
            answer = (
                start(session, stack, **form)
                if "amount" in form
                else session.get(f"{stack.url}/pay", params={"invoice": form["invoice"]})
            )  # refused on review
            assert answer.status_code == status, (name, answer.status_code)
            assert words.lower() in answer.text.lower(), name
            assert other["client"]["name"] not in answer.text
        # The wrong currency and a paid invoice, asked of the payments service directly.
        with pytest.raises(Exception, match="USD"):
            rpc.payments.start_payment(
                made["workspace_id"],
                made["client"]["id"],
                {"invoice_ids": [first["id"]], "currency": "EUR"},
                "wrong-currency",
            )
        rpc.billing.record_payment(
            made["workspace_id"], {"invoice_id": first["id"], "amount": 10000, "method": "bank_transfer"}
        )
        with pytest.raises(Exception, match="paid"):
            rpc.payments.start_payment(
                made["workspace_id"], made["client"]["id"], {"invoice_ids": [first["id"]]}, "paid-already"
            )
        ws = rpc.billing.get_workspace(made["workspace_id"])
        rpc.billing.update_workspace(
            made["workspace_id"], {"settings": {**ws["settings"], "partial_payment_minimum": 5000}}
        )
        try:
            third = rpc.billing.create_invoice(
                made["workspace_id"],
                {
                    "client_id": made["client"]["id"],
                    "send": True,
                    "lines": [{"description": "More", "quantity": 1, "unit_price": 20000}],
                },
            )
            below = start(session, stack, invoice=third["id"], amount="49.99")
            assert below.status_code == 422 and "at least" in below.text
        finally:
            rpc.billing.update_workspace(made["workspace_id"], {"settings": ws["settings"]})
    assert len(stripe_client(stack).v1.payment_intents.list({"limit": 100}).data) == intents_before
    assert query(stack, "payments", "SELECT count(*) FROM attempts")[0][0] == attempts_before


def test_each_event_three_times_out_of_order_gives_one_payment(stack):
    made = new_portal_client(stack, "Replay Co", "replay@example.com", invoices=1)
    session = sign_in(stack, "replay@example.com")
    attempt_id = paid_by_card(session, stack, made["invoices"][0]["id"])
    intent_id = query(stack, "payments", "SELECT payment_intent_id FROM attempts WHERE id = %s", attempt_id)[0][0]
    intent = stripe_client(stack).v1.payment_intents.retrieve(intent_id).to_dict()
    events = [
        {
            "id": f"evt_replay_{kind}_{attempt_id[:8]}",
            "object": "event",
            "type": f"payment_intent.{kind}",
            "created": int(time.time()),
            "data": {"object": {**intent, "status": status}},
        }
        for kind, status in (("succeeded", "succeeded"), ("processing", "processing"))
    ]
    deliveries = events * 3
    random.shuffle(deliveries)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda e: deliver(stack, e), deliveries))
    assert all(a.status_code == 200 for a in answers)
    assert sum(not a.json()["duplicate"] for a in answers) == 2  # each event stored once
    wait_until(
        lambda: not query(stack, "payments", "SELECT 1 FROM stripe_events WHERE processed_at IS NULL"),
        what="the events to be processed",
    )
    # billing learns of the payment from payments' event, a moment after payments is done
    recorded = "SELECT count(*) FROM payments WHERE id = %s"
    wait_until(lambda: query(stack, "billing", recorded, attempt_id)[0][0], what="billing to record the payment")
    time.sleep(1)  # give any duplicate the time to show up
    assert query(stack, "billing", recorded, attempt_id)[0][0] == 1
    assert stack.outbox.count("replay@example.com", "Payment received") == 1


@pytest.fixture()
def payments_timer_an_hour_away(stack):
    """payments restarted with its Stripe-event timer an hour away (it first runs an interval after
    the start): a stored event is processed as it is stored, or not within the test."""

    def restart(**env):
        stack.stop_process("payments")
        stack.start_service("payments", env=env)
        stack.wait_healthy(90)

    restart(STRIPE_EVENTS_INTERVAL="3600")
    try:
        yield
    finally:
        restart()


def test_a_stored_event_is_processed_without_waiting_for_the_timer(stack, payments_timer_an_hour_away):
    made = new_portal_client(stack, "Prompt Ltd", "prompt@example.com", invoices=1)
    invoice_id = made["invoices"][0]["id"]
    session = sign_in(stack, "prompt@example.com")
    attempt_id = paid_by_card(session, stack, invoice_id)  # settled by localstripe's own webhook, within 15 s
    wait_until(
        lambda: query(stack, "billing", "SELECT status FROM invoices WHERE id = %s", invoice_id)[0][0] == "paid",
        what="the invoice paid",
    )

    # A new delivery of the same outcome, three times at once: stored once, processed at once, no second payment.
    intent_id = query(stack, "payments", "SELECT payment_intent_id FROM attempts WHERE id = %s", attempt_id)[0][0]
    intent = stripe_client(stack).v1.payment_intents.retrieve(intent_id).to_dict()
    event = {
        "id": f"evt_prompt_{attempt_id[:8]}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": intent},
    }
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda e: deliver(stack, e), [event] * 3))
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
    wait_until(
        lambda: (
            query(stack, "payments", "SELECT processed_at FROM stripe_events WHERE id = %s", event["id"])[0][0]
            is not None
        ),
        timeout=10,
        what="the event processed as it was stored",
    )
    assert query(stack, "billing", "SELECT count(*) FROM payments WHERE id = %s", attempt_id)[0][0] == 1
    assert not query(
        stack, "payments", "SELECT id FROM stripe_events WHERE processed_at IS NULL AND body LIKE %s", f"%{attempt_id}%"
    )  # none of this payment's events waits for the timer


def test_a_delivery_whose_handling_fails_is_kept_retried_then_parked(stack):
    """Stripe gets its 2xx even so: the delivery is stored for the timer's retries (its first failed
    try counted), then parked in the dead-letter table once out of tries; a redelivery changes nothing."""
    event = {
        "id": f"evt_broken_{random.randrange(10**12)}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": "pi_broken", "object": "payment_intent"}},  # no amount, status or currency
    }
    answer = deliver(stack, event)
    assert answer.status_code == 200 and answer.json() == {"received": True, "duplicate": False}
    outcome = "SELECT outcome, attempts FROM stripe_events WHERE id = %s"
    wait_until(
        lambda: query(stack, "payments", outcome, event["id"])[0][0].startswith("dead-lettered"),
        timeout=60,
        what="the event parked after its retries",
    )
    tries = int(stack.env["EVENT_RETRY_ATTEMPTS"])
    assert query(stack, "payments", outcome, event["id"])[0][1] == tries  # the first, in the request, included
    parked = "SELECT count(*) FROM dead_letters WHERE event_id = %s AND consumer = 'payments.stripe_event'"
    assert query(stack, "payments", parked, event["id"]) == [(1,)]
    assert deliver(stack, event).json() == {"received": True, "duplicate": True}
    assert query(stack, "payments", parked, event["id"]) == [(1,)]


def test_a_bad_or_old_signature_is_rejected_and_stored_nowhere(stack):
    event = {
        "id": "evt_forged_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_forged", "amount": 1, "currency": "usd", "metadata": {}, "status": "succeeded"}},
    }
    body, headers = signed(stack, event, secret="whsec_not_ours")
    assert requests.post(f"{stack.url}/webhooks/stripe", data=body, headers=headers).status_code == 400
    body, headers = signed(stack, event, timestamp=int(time.time()) - 3600)
    assert requests.post(f"{stack.url}/webhooks/stripe", data=body, headers=headers).status_code == 400
    body, headers = signed(stack, event)
    tampered = body.replace(b'"amount": 1', b'"amount": 2')
    answer = requests.post(f"{stack.url}/webhooks/stripe", data=tampered, headers=headers)
    assert answer.status_code == 400 and answer.headers["Content-Type"].startswith("application/problem+json")
    assert query(stack, "payments", "SELECT count(*) FROM stripe_events WHERE id = 'evt_forged_1'")[0][0] == 0


def test_two_concurrent_confirmations_charge_once(stack):
    made = new_portal_client(stack, "Twice Ltd", "twice@example.com", invoices=1)
    session = sign_in(stack, "twice@example.com")
    card = save_card(session, stack, CARD_OK)
    attempt_id = start(session, stack, invoice=made["invoices"][0]["id"]).headers["Location"].rsplit("/", 1)[1]
    page = f"{stack.url}/pay/{attempt_id}"
    token = session.get(page).text.split('data-csrf="')[1].split('"')[0]

    def confirm(_):
        return session.post(f"{page}/confirm", json={"payment_method": card["id"]}, headers={"X-CSRF-Token": token})

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(confirm, range(2)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    wait_until(lambda: attempt_status(session, stack, attempt_id) == "succeeded", what="the webhook")
    customer = query(
        stack, "payments", "SELECT stripe_customer_id FROM customers WHERE client_id = %s", made["client"]["id"]
    )[0][0]
    assert len(stripe_client(stack).v1.charges.list({"customer": customer}).data) == 1


def test_refunds_through_the_admin_api_reopen_the_invoice(stack, api_key):
    made = new_portal_client(stack, "Refund Me", "refundme@example.com", invoices=1)
    invoice_id = made["invoices"][0]["id"]
    session = sign_in(stack, "refundme@example.com")
    attempt_id = paid_by_card(session, stack, invoice_id)
    wait_until(lambda: admin(stack, "GET", f"/invoices/{invoice_id}", api_key).json()["status"] == "paid")
    too_much = admin(
        stack, "POST", f"/payments/{attempt_id}/refunds", api_key, json={"amount": 10001, "idempotency_key": "r-big"}
    )
    assert too_much.status_code == 409  # more than is left to refund: a state, not a malformed request
    refund = admin(
        stack,
        "POST",
        f"/payments/{attempt_id}/refunds",
        api_key,
        json={"amount": 4000, "reason": "Unused hours", "idempotency_key": "r-1"},
    )
    again = admin(
        stack,
        "POST",
        f"/payments/{attempt_id}/refunds",
        api_key,
        json={"amount": 4000, "reason": "Unused hours", "idempotency_key": "r-1"},
    )
    assert refund.status_code == 201 and again.json()["id"] == refund.json()["id"]
    reopened = wait_until(
        lambda: (lambda inv: inv if inv["balance"] == 4000 else None)(
            admin(stack, "GET", f"/invoices/{invoice_id}", api_key).json()
        ),
        what="billing to reopen the invoice",
    )
    assert reopened["status"] == "partially_paid"
    # the client sees the refund: on the payments page, on the invoice, on the receipt and in an email
    payments_page = re.sub(r"<[^>]+>", "", session.get(f"{stack.url}/payments").text)
    assert "$100.00, $40.00 refunded" in " ".join(payments_page.split())
    invoice_page = session.get(f"{stack.url}/invoices/{invoice_id}").text
    assert "−$100.00" in invoice_page and "Refunded " in invoice_page and "+$40.00" in invoice_page
    receipt = "".join(pdf_text(session.get(f"{stack.url}/payments/{attempt_id}/receipt.pdf").content).split())
    assert "Keptafterrefunds:$60.00" in receipt and "$40.00" in receipt
    [mail] = stack.outbox.wait_for("refundme@example.com", subject="Refund: $40.00", timeout=60)  # a PDF is rendered
    text = mail.get_body(("plain",)).get_content()
    assert "refunded $40.00 of your payment of $100.00" in text and "Your payment now comes to $60.00." in text
    intent = query(stack, "payments", "SELECT payment_intent_id FROM attempts WHERE id = %s", attempt_id)[0][0]
    charge = (
        stripe_client(stack)
        .v1.charges.list({"customer": stripe_client(stack).v1.payment_intents.retrieve(intent).customer})
        .data[0]
    )
    assert charge.amount_refunded == 4000
    other_key = None
    with services_rpc(stack) as rpc:
        other_ws = rpc.billing.create_workspace({"name": "Elsewhere Ltd", "email": "x@example.com"})
    with services_rpc(stack, other_ws["id"]) as rpc:
        other_key = rpc.billing.create_api_key(other_ws["id"], "other")["key"]
    assert (
        admin(
            stack, "POST", f"/payments/{attempt_id}/refunds", other_key, json={"amount": 100, "idempotency_key": "r-x"}
        ).status_code
        == 404
    )


def test_a_dispute_is_recorded_and_visible_to_the_business(stack, api_key):
    made = new_portal_client(stack, "Dispute Co", "dispute@example.com", invoices=1)
    session = sign_in(stack, "dispute@example.com")
    attempt_id = paid_by_card(session, stack, made["invoices"][0]["id"])
    intent = query(stack, "payments", "SELECT payment_intent_id FROM attempts WHERE id = %s", attempt_id)[0][0]
    dispute = {
        "id": f"dp_{attempt_id[:8]}",
        "object": "dispute",
        "amount": 10000,
        "currency": "usd",
        "payment_intent": intent,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    event = {"id": f"evt_dispute_{attempt_id[:8]}", "object": "event", "type": "charge.dispute.created"}
    event["data"] = {"object": dispute}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # Stripe's deliveries of one event may overlap
        answers = list(pool.map(lambda e: deliver(stack, e), [event] * 3))
    assert [a.status_code for a in answers] == [200] * 3
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
    log = (stack.log_dir / "payments.log").read_text(errors="replace").splitlines()
    assert not [line for line in log if "stripe event failed" in line and event["id"] in line]  # no false alarm
    listed = wait_until(
        lambda: [d for d in admin(stack, "GET", "/disputes", api_key).json() if d["payment_id"] == attempt_id],
        what="the dispute",
    )
    assert listed[0]["reason"] == "fraudulent" and listed[0]["status"] == "needs_response"
    activity = wait_until(
        lambda: [
            a
            for a in admin(stack, "GET", f"/clients/{made['client']['id']}/activity", api_key).json()
            if "disputed" in a["summary"]
        ]
    )
    assert len(activity) == 1


@pytest.mark.parametrize("card, paid", [(CARD_OK, True), (CARD_3DS, False)], ids=["charged", "needs-authentication"])
def test_autopay_for_a_recurring_invoice(stack, card, paid):
    email = f"autopay-{'ok' if paid else '3ds'}@example.com"
    made = new_portal_client(stack, f"Autopay {'Ok' if paid else 'Bank'}", email, invoices=0)
    session = sign_in(stack, email)
    save_card(session, stack, card)
    with services_rpc(stack, made["workspace_id"]) as rpc:
        rpc.billing.create_recurring(
            made["workspace_id"],
            {
                "client_id": made["client"]["id"],
                "frequency": "monthly",
                "start_date": business_today().isoformat(),
                "autopay": True,
                "lines": [{"description": "Retainer", "quantity": 1, "unit_price": 25000}],
            },
        )
    issued = wait_until(
        lambda: query(stack, "billing", "SELECT id, status FROM invoices WHERE client_id = %s", made["client"]["id"]),
        what="the recurring invoice",
    )
    invoice_id = issued[0][0]
    if paid:
        wait_until(
            lambda: query(stack, "billing", "SELECT status FROM invoices WHERE id = %s", invoice_id)[0][0] == "paid",
            what="autopay to pay the invoice",
        )
        stack.outbox.wait_for(email, subject="Payment received")
    else:
        [mail] = stack.outbox.wait_for(
            email, subject="did not go through"
        )  # the pay link, since the bank wants the client
        assert f"/pay?invoice={invoice_id}" in mail.get_body(("plain",)).get_content()
        assert query(stack, "billing", "SELECT status FROM invoices WHERE id = %s", invoice_id)[0][0] == "sent"
        assert (
            query(stack, "payments", "SELECT status FROM attempts WHERE request_key = %s", f"autopay:{invoice_id}")[0][
                0
            ]
            == "failed"
        )
