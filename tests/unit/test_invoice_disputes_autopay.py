"""A dispute raised while an automatic payment of the invoice is pending, with billing's real handlers
on one SQLite database and payments' on another (the events carried between them by hand, as the
consumers run them), and a stateful Stripe fake.

The semantics: an autopay charge still queued (not claimed by the autopay timer) is cancelled when
`invoice.disputed` reaches payments, and nothing was taken; a charge the timer had already claimed
completes, and the dispute's adjustment then becomes the client's credit. Either way the invoice is
charged at most once per queued charge, and when the dispute is resolved autopay resumes once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Conflict
from chassis.events import OUTBOX
from services.billing import handlers as billing_handlers
from services.billing.service import BillingService
from services.payments.handlers import autopay, cards, charging, webhook_events
from tests.unit.test_payments_handlers import FakeStripe, intent_event

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


class Billing:
    """The billing RPCs payments calls, as the real handlers on billing's own database."""

    def __init__(self, engine):
        self.engine = engine

    def run(self, fn, *args, now=NOW, **kwargs):
        with UnitOfWork(self.engine, lambda: now) as uow:
            result = fn(uow, now, *args, **kwargs)
            uow.commit()
            return result

    def consume(self, method: str, event: dict, now=NOW) -> None:
        with UnitOfWork(self.engine, lambda: now) as uow:
            getattr(BillingService, method).__wrapped__(None, uow, now, event)
            uow.commit()

    def get_client(self, workspace_id, client_id):
        return self.run(billing_handlers.get_client, workspace_id, client_id)

    def get_workspace(self, workspace_id):
        return self.run(billing_handlers.get_workspace, workspace_id)

    def plan_payment(self, workspace_id, client_id, request, commit=False, key=None):
        return self.run(billing_handlers.plan_payment, workspace_id, client_id, request, commit, key)

    def events(self, event_type):
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).scalars().all()
        return [json.loads(body)["data"] for body in rows]


@pytest.fixture
def billing(sqlite_engine):
    return Billing(sqlite_engine("billing"))


@pytest.fixture
def payments(sqlite_engine):
    engine = sqlite_engine("payments")

    def run(fn, *args, now=NOW, **kwargs):
        with UnitOfWork(engine, lambda: now) as uow:
            result = fn(uow, now, *args, **kwargs)
            uow.commit()
            return result

    run.engine = engine
    return run


@pytest.fixture
def stripe():
    return FakeStripe()


@pytest.fixture
def autopay_invoice(billing, payments, stripe):
    """A client with a saved card and a recurring invoice with autopay, issued: (ws, client, contact,
    the invoice.sent event's data)."""
    ws = billing.run(billing_handlers.create_workspace, {"name": "Acme", "email": "a@example.com"})["id"]
    client = billing.run(billing_handlers.create_client, ws, {"name": "Client"})["id"]
    contact = billing.run(billing_handlers.add_contact, ws, client, {"email": "c@example.com", "portal_access": True})
    setup = payments(cards.card_setup, stripe, billing, ws, client)
    payments(cards.save_card, stripe, ws, client, setup["setup_intent"])
    billing.run(
        billing_handlers.create_recurring,
        ws,
        {
            "client_id": client,
            "frequency": "monthly",
            "start_date": "2026-11-23",
            "payment_terms_days": 14,
            "lines": [{"description": "Hosting", "unit_price": 10_000}],
            "autopay": True,
        },
    )
    billing.run(billing_handlers.run_due_recurring, ws)
    [sent] = billing.events("invoice.sent")
    assert sent["autopay"] is True and sent["balance"] == 10_000
    return ws, client, contact["id"], sent


def charges(stripe) -> int:
    return sum(pi["amount"] for pi in stripe.intents.values())


def settle(billing, payments, stripe, ws, event_id):
    """Stripe's success event processed by payments, then its payment.succeeded consumed by billing."""
    pi = list(stripe.intents.values())[-1]
    payments(webhook_events.receive_event, intent_event(event_id, "payment_intent.succeeded", pi))
    payments(webhook_events.process_event, stripe, event_id)
    with payments.engine.connect() as conn:
        body = conn.execute(
            sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "payment.succeeded").order_by(OUTBOX.c.seq.desc())
        ).scalar()
    billing.consume("on_payment_succeeded", {"workspace_id": ws, "data": json.loads(body)["data"]})


def test_a_queued_autopay_charge_is_cancelled_by_a_dispute_and_queued_again_once_resolved(
    billing, payments, stripe, autopay_invoice
):
    ws, client, contact, sent = autopay_invoice
    queued = payments(autopay.queue_autopay, billing, ws, sent)
    assert queued["status"] == "open" and queued["amount"] == 10_000

    billing.run(billing_handlers.raise_invoice_dispute, ws, client, contact, "Ann", sent["id"], "Not delivered")
    [disputed] = billing.events("invoice.disputed")
    assert disputed["autopay"] is True
    assert payments(autopay.pause_autopay, ws, disputed) == [queued["id"]]
    assert payments(autopay.pause_autopay, ws, disputed) == []  # a redelivered event changes nothing

    with UnitOfWork(payments.engine) as uow:
        assert autopay.due_autopay(uow) == []
    # the timer had read it as due just before: its claim now fails, nothing reaches Stripe
    assert payments(charging.charge, stripe, queued["id"], "pm_good")["status"] == "cancelled"
    assert stripe.intents == {}
    # a late or redelivered invoice.sent queues nothing while the dispute is open
    assert payments(autopay.queue_autopay, billing, ws, sent, key=f"autopay:{sent['id']}:late") is None
    with pytest.raises(Conflict):
        billing.plan_payment(ws, client, {"invoice_ids": [sent["id"]], "autopay": True}, True, "k")
    # the client can still pay by hand (a preview of the plan the pay page shows)
    assert billing.plan_payment(ws, client, {"invoice_ids": [sent["id"]]})["amount"] == 10_000

    [dispute] = billing.run(billing_handlers.list_invoice_disputes, ws)["items"]
    later = NOW + timedelta(days=1)
    billing.run(billing_handlers.resolve_invoice_dispute, ws, dispute["id"], "adjust", {"amount": 2_500}, now=later)
    [resolved] = billing.events("invoice.dispute_resolved")
    assert resolved["autopay"] is True and resolved["balance"] == 7_500
    again = payments(autopay.resume_autopay, billing, ws, resolved, now=later)
    assert again["status"] == "open" and again["amount"] == 7_500
    assert payments(autopay.resume_autopay, billing, ws, resolved, now=later)["id"] == again["id"]  # once

    with UnitOfWork(payments.engine) as uow:
        assert autopay.due_autopay(uow) == [(again["id"], "pm_good", ws, client)]
    assert payments(charging.charge, stripe, again["id"], "pm_good", now=later)["status"] == "processing"
    settle(billing, payments, stripe, ws, "evt_resumed")
    invoice = billing.run(billing_handlers.get_invoice, ws, sent["id"])
    assert invoice["status"] == "paid" and invoice["balance"] == 0
    assert charges(stripe) == 7_500 and invoice["amount_paid"] == 7_500 and invoice["amount_credited"] == 2_500


def test_an_autopay_charge_already_claimed_completes_and_the_adjustment_becomes_credit(
    billing, payments, stripe, autopay_invoice
):
    ws, client, contact, sent = autopay_invoice
    queued = payments(autopay.queue_autopay, billing, ws, sent)
    assert payments(charging.charge, stripe, queued["id"], "pm_good")["status"] == "processing"  # with Stripe

    billing.run(billing_handlers.raise_invoice_dispute, ws, client, contact, "Ann", sent["id"], "Not delivered")
    [disputed] = billing.events("invoice.disputed")
    assert payments(autopay.pause_autopay, ws, disputed) == []  # too late to stop: it completes
    settle(billing, payments, stripe, ws, "evt_claimed")
    invoice = billing.run(billing_handlers.get_invoice, ws, sent["id"])
    assert invoice["status"] == "paid" and charges(stripe) == 10_000

    [dispute] = billing.run(billing_handlers.list_invoice_disputes, ws, {"status": "open"})["items"]
    later = NOW + timedelta(days=1)
    billing.run(billing_handlers.resolve_invoice_dispute, ws, dispute["id"], "adjust", {"amount": 2_500}, now=later)
    balances = billing.run(billing_handlers.client_balances, ws, client)
    assert balances["outstanding"] == 0 and balances["credit_available"] == 2_500  # nothing lost
    [resolved] = billing.events("invoice.dispute_resolved")
    assert payments(autopay.resume_autopay, billing, ws, resolved, now=later) is None  # nothing to charge
    assert charges(stripe) == 10_000  # charged once
