"""A payment through Stripe shows the client the card or bank account it was paid with, as an
offline "Card ending 4242" does, and keeps Stripe's PaymentIntent id apart for looking it up there."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing.handlers.payments import paid_with

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("data", "label"),
    [
        ({"method": "card", "card": {"brand": "visa", "last4": "4242"}}, "Visa ending 4242"),
        ({"method": "card", "card": {"brand": "amex", "last4": "0005"}}, "American Express ending 0005"),
        ({"method": "card", "card": {"brand": "unknown", "last4": "4242"}}, "Card ending 4242"),
        ({"method": "card", "card": None}, "Card"),
        ({"method": "sepa_debit", "bank": {"last4": "3000", "country": "DE"}}, "SEPA Direct Debit ending 3000"),
        ({"method": "sepa_debit", "bank": None}, "SEPA Direct Debit"),
    ],
)
def test_what_a_stripe_payment_shows_the_client(data, label):
    assert paid_with(data) == label


def test_a_card_payment_is_recorded_with_its_card_and_stripe_id_apart(sqlite_engine):
    engine = sqlite_engine("billing")

    def run(work):
        with UnitOfWork(engine, lambda: NOW) as uow:
            answer = work(uow)
            uow.commit()
            return answer

    ws = run(lambda uow: h.create_workspace(uow, NOW, {"name": "Co", "email": "c@example.com"}))["id"]
    client = run(lambda uow: h.create_client(uow, NOW, ws, {"name": "Client"}))["id"]
    invoice = run(
        lambda uow: h.create_invoice(
            uow,
            NOW,
            ws,
            {"client_id": client, "lines": [{"description": "Work", "quantity": 1, "unit_price": 10000}], "send": True},
        )
    )
    event = {
        "id": "evt_1",
        "type": "payment.succeeded",
        "workspace_id": ws,
        "occurred_at": NOW.isoformat(),
        "data": {
            "payment_id": "attempt-1",
            "client_id": client,
            "allocations": [{"invoice_id": invoice["id"], "amount": 10000}],
            "amount": 10000,
            "currency": invoice["currency"],
            "method": "card",
            "reference": "pi_bEf77YbM6zirXu",
            "card": {"brand": "visa", "last4": "4242"},
            "bank": None,
        },
    }
    run(lambda uow: h.record_stripe_payment(uow, NOW, event))
    payment = run(lambda uow: h.get_payment(uow, NOW, ws, "attempt-1"))
    assert (payment["reference"], payment["stripe_reference"]) == ("Visa ending 4242", "pi_bEf77YbM6zirXu")
    with engine.connect() as conn:
        bodies = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "payment.recorded")).scalars()
        recorded = [json.loads(body) for body in bodies]
    assert [(e["data"]["reference"], e["data"]["stripe_reference"]) for e in recorded] == [
        ("Visa ending 4242", "pi_bEf77YbM6zirXu")
    ]
