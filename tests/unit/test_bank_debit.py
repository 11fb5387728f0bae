"""Bank debits without a broker or Stripe: the bank details are checked before anything is sent, and
billing's view of debits in flight is order-proof (processing, succeeded and failed in any order and
repeated: the invoice is processing only between processing and its outcome, and never again after
the payment is in the ledger)."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Conflict, Invalid
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing.handlers import processing
from services.payments.bank_debit import check_acceptance, check_bank_details
from services.payments.handlers import cards, charging, payment_attempts, webhook_events
from tests.unit.test_billing_handlers import db, events, ws  # noqa: F401 - shared fixtures
from tests.unit.test_payments_handlers import CLIENT, NOW, WS, FakeBilling, FakeStripe, intent_event

GOOD = {"holder_name": "Erika Mustermann", "email": "erika@example.com", "iban": "de89 3704 0044 0532 0130 00"}


def test_good_bank_details_are_normalised():
    assert check_bank_details(GOOD) == {
        "holder_name": "Erika Mustermann",
        "email": "erika@example.com",
        "iban": "DE89370400440532013000",
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"iban": "DE89370400440532013001"}, "iban"),  # a check digit off
        ({"iban": "hello"}, "iban"),
        ({"iban": ""}, "iban"),
        ({"iban": 12345}, "iban"),
        ({"iban": "BR1500000000000010932840814P2"}, "iban"),  # valid, but outside SEPA
        ({"holder_name": "  "}, "holder_name"),
        ({"holder_name": None}, "holder_name"),
        ({"email": "not-an-email"}, "email"),
        ({"email": ""}, "email"),
    ],
)
def test_bad_bank_details_are_refused_naming_the_field(change, field):
    with pytest.raises(Invalid) as refused:
        check_bank_details({**GOOD, **change})
    assert field in refused.value.fields


@pytest.mark.parametrize("acceptance", [None, {}, {"accepted": False}, {"accepted": "yes"}])
def test_a_mandate_must_be_accepted_in_so_many_words(acceptance):
    with pytest.raises(Invalid, match="Accept the direct debit mandate"):
        check_acceptance(acceptance)


def _debit(ws_id, client, invoice, payment_id, try_number=0) -> dict:
    return {
        "payment_id": payment_id,
        "client_id": client,
        "amount": invoice["total"],
        "currency": invoice["currency"],
        "allocations": [{"invoice_id": invoice["id"], "amount": invoice["total"]}],
        "off_session": False,
        "method": "sepa_debit",
        "try": try_number,
    }


def _succeed(db, ws_id, data):
    db(
        h.record_payment,
        ws_id,
        {
            "payment_id": data["payment_id"],
            "allocations": data["allocations"],
            "amount": data["amount"],
            "currency": data["currency"],
            "client_id": data["client_id"],
            "method": "sepa_debit",
            "source": "stripe",
        },
        allow_unapplied=True,
    )
    db(processing.payment_succeeded, ws_id, data)


def _processing(db, ws_id, invoice_id):
    return db(h.get_invoice, ws_id, invoice_id)["processing"]


def test_processing_until_settled_and_a_second_payment_is_refused_meanwhile(db, ws):
    ws_id, client = ws
    invoice = db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "send": True, "lines": [{"description": "W", "unit_price": 5000}]},
    )
    data = _debit(ws_id, client, invoice, str(uuid.uuid4()))
    assert db(processing.payment_processing, ws_id, data) == 1
    assert db(processing.payment_processing, ws_id, data) == 0  # a redelivery
    view = db(h.get_invoice, ws_id, invoice["id"])
    assert view["processing"] == 5000 and view["display_status"] == "processing" and view["balance"] == 5000
    assert db(h.client_dashboard, ws_id, client)["processing"] == {"amount": 5000, "currency": "USD"}
    with pytest.raises(Conflict, match="still processing"):
        db(h.plan_payment, ws_id, client, {"invoice_ids": [invoice["id"]]})
    with pytest.raises(Invalid, match="Nothing to pay"):  # pay all leaves it out
        db(h.plan_payment, ws_id, client, {})
    [listed] = db(processing.list_processing, ws_id, client)
    assert listed["amount"] == 5000 and listed["invoices"][0]["number"] == invoice["number"]
    _succeed(db, ws_id, data)
    assert _processing(db, ws_id, invoice["id"]) == 0
    assert db(h.get_invoice, ws_id, invoice["id"])["display_status"] == "paid"


def test_a_failed_try_reopens_the_invoice_and_another_try_can_process(db, ws):
    ws_id, client = ws
    invoice = db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "send": True, "lines": [{"description": "W", "unit_price": 5000}]},
    )
    payment_id = str(uuid.uuid4())
    db(processing.payment_processing, ws_id, _debit(ws_id, client, invoice, payment_id, 0))
    db(processing.payment_failed, ws_id, _debit(ws_id, client, invoice, payment_id, 0))
    assert _processing(db, ws_id, invoice["id"]) == 0
    assert db(h.plan_payment, ws_id, client, {"invoice_ids": [invoice["id"]]})["amount"] == 5000  # open again
    db(processing.payment_processing, ws_id, _debit(ws_id, client, invoice, payment_id, 0))  # late: no effect
    assert _processing(db, ws_id, invoice["id"]) == 0
    db(processing.payment_processing, ws_id, _debit(ws_id, client, invoice, payment_id, 1))  # the next try
    assert _processing(db, ws_id, invoice["id"]) == 5000


@pytest.mark.parametrize(
    "order", sorted(set(itertools.permutations(["processing", "succeeded", "processing", "succeeded"])))
)
def test_processing_and_success_in_any_order_end_paid_and_not_processing(db, ws, order):
    ws_id, client = ws
    invoice = db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "send": True, "lines": [{"description": "W", "unit_price": 5000}]},
    )
    data = _debit(ws_id, client, invoice, str(uuid.uuid4()))
    for kind in order:
        if kind == "processing":
            db(processing.payment_processing, ws_id, data)
        else:
            _succeed(db, ws_id, data)
    view = db(h.get_invoice, ws_id, invoice["id"])
    assert view["processing"] == 0 and view["status"] == "paid" and view["amount_paid"] == 5000


def test_a_card_that_fails_after_processing_is_a_late_failure_and_emailed(sqlite_engine):
    """Like a returned debit: the client left the page, so payment.failed says `late` (documents emails it)."""
    engine = sqlite_engine("payments")

    def run(handler, *args):
        with UnitOfWork(engine) as uow:
            result = handler(uow, NOW, *args)
            uow.commit()
            return result

    stripe, billing = FakeStripe(), FakeBilling()
    attempt = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "late-1")
    setup = run(cards.card_setup, stripe, billing, WS, CLIENT, attempt["id"])
    assert run(charging.confirm_attempt, stripe, WS, CLIENT, attempt["id"], setup["setup_intent"])["status"] == (
        "processing"
    )
    [pi] = stripe.intents.values()
    run(
        webhook_events.receive_event,
        intent_event("evt_late", "payment_intent.payment_failed", pi, "requires_payment_method"),
    )
    assert run(webhook_events.process_event, stripe, "evt_late") == "failed"
    with engine.connect() as conn:
        [body] = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "payment.failed")).scalars().all()
    failed = json.loads(body)["data"]
    assert failed["late"] is True and failed["off_session"] is False and failed["try"] == 0
    assert failed["reason"] == "Your card was declined." and "/pay?invoice=inv-1" in failed["pay_url"]


def test_a_debit_with_the_bank_or_failed_announces_the_invoice_changed(db, ws):
    """Billing changes the invoice's state on payments' events without an edit: it says so
    (invoice.updated), so subscribers and documents' record of the client's current PDFs see it."""
    from nameko.testing.services import worker_factory

    from chassis.events import envelope
    from chassis.nameko_ext import DatabaseHandle
    from services.billing.service import BillingService

    ws_id, client = ws
    lines = [{"description": "W", "unit_price": 5000}]
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "send": True, "lines": lines})
    billing = worker_factory(BillingService, db=DatabaseHandle(db.engine), clock=lambda: NOW)
    updated = lambda: [json.loads(b)["data"] for b in events(db, "invoice.updated")]  # noqa: E731
    data = _debit(ws_id, client, invoice, str(uuid.uuid4()))
    billing.on_payment_processing(envelope("payment.processing", ws_id, data, occurred_at=NOW))
    assert [(e["id"], e["client_id"]) for e in updated()] == [(invoice["id"], client)]
    billing.on_payment_processing(envelope("payment.processing", ws_id, data, occurred_at=NOW))  # changes nothing
    assert len(updated()) == 1
    billing.on_payment_failed(envelope("payment.failed", ws_id, {**data, "reason": "no funds"}, occurred_at=NOW))
    assert [e["status"] for e in updated()] == ["sent", "sent"] and _processing(db, ws_id, invoice["id"]) == 0
