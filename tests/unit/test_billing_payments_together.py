"""A burst of one client's card payments recorded together (on_payment_succeeded's batch, with what
its payments check and lock read ahead in one statement each) leaves the ledger exactly as recording
them one by one does: the same invoices settled, the same payments, allocations and credit, the same
events. Random bursts pay one or two of a client's invoices, in part, in full or beyond (credit), and
repeat a payment (payments announcing it again), so that several of a batch meet on one invoice."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chassis.db import UnitOfWork
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing.handlers import payments as payment_handlers
from services.billing.service import BillingService
from services.billing.tables import invoices, payment_allocations, payments

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
INVOICES = 3
ids = itertools.count()


@pytest.fixture
def engine(sqlite_engine):
    """One database for every example; each ledger is a workspace of its own."""
    return sqlite_engine("billing")


def in_one_transaction(engine, work):
    with UnitOfWork(engine, lambda: NOW) as uow:
        answer = work(uow)
        uow.commit()
        return answer


def new_ledger(engine) -> tuple[str, str, list[dict]]:
    """A workspace with one client and INVOICES sent invoices of 100.00, 250.00 and 400.00."""
    ws = in_one_transaction(engine, lambda uow: h.create_workspace(uow, NOW, {"name": "Co", "email": "c@example.com"}))
    client = in_one_transaction(engine, lambda uow: h.create_client(uow, NOW, ws["id"], {"name": "Client"}))
    made = [
        in_one_transaction(
            engine,
            lambda uow, price=price: h.create_invoice(
                uow,
                NOW,
                ws["id"],
                {
                    "client_id": client["id"],
                    "lines": [{"description": "Work", "quantity": 1, "unit_price": price}],
                    "send": True,
                },
            ),
        )
        for price in (10000, 25000, 40000)[:INVOICES]
    ]
    return ws["id"], client["id"], made


# a card payment: its number (a repeated one is the same payment again), its invoices (one or two of
# the client's, by position) with what each allocation asks for, and what it charges beyond them
PAYMENT = st.tuples(
    st.integers(0, 3),
    st.lists(st.tuples(st.integers(0, INVOICES - 1), st.integers(1, 45000)), min_size=1, max_size=2),
    st.sampled_from([0, 0, 500]),
)


def events_for(ws: str, client: str, made: list[dict], burst: list, run: int) -> list[dict]:
    events = []
    for number, allocations, extra in burst:
        payment_id = f"pi_{run}_{number}"
        asked = [{"invoice_id": made[pick]["id"], "amount": amount} for pick, amount in allocations]
        events.append(
            {
                "id": f"evt_{next(ids)}",
                "type": "payment.succeeded",
                "workspace_id": ws,
                "occurred_at": NOW.isoformat(),
                "data": {
                    "payment_id": payment_id,
                    "client_id": client,
                    "allocations": asked,
                    "amount": sum(a["amount"] for a in asked) + extra,
                    "currency": made[0]["currency"],
                    "method": "card",
                    "reference": payment_id,
                },
            }
        )
    # the same payment announced again says the same thing: its first announcement is the one kept
    first: dict[str, dict] = {}
    for event in events:
        event["data"] = first.setdefault(event["data"]["payment_id"], event["data"])
    return events


def ledger(engine, ws: str, run: int) -> dict:
    """What the ledger holds, with this run's ids taken out so that two ledgers compare."""
    with engine.connect() as conn:
        bills = conn.execute(
            sa.select(invoices.c.number, invoices.c.status, invoices.c.amount_paid)
            .where(invoices.c.workspace_id == ws)
            .order_by(invoices.c.number)
        ).all()
        paid = conn.execute(
            sa.select(payments.c.id, payments.c.amount, payments.c.unapplied, payments.c.kind)
            .where(payments.c.workspace_id == ws)
            .order_by(payments.c.id)
        ).all()
        allocated = conn.execute(
            sa.select(payment_allocations.c.payment_id, invoices.c.number, payment_allocations.c.amount)
            .join(invoices, invoices.c.id == payment_allocations.c.invoice_id)
            .where(invoices.c.workspace_id == ws)
            .order_by(payment_allocations.c.payment_id, invoices.c.number)
        ).all()
        announced = conn.execute(
            sa.select(OUTBOX.c.event_type, sa.func.count())
            .where(OUTBOX.c.body.contains(ws))
            .group_by(OUTBOX.c.event_type)
            .order_by(OUTBOX.c.event_type)
        ).all()
    mine = f"pi_{run}_"
    return {
        "invoices": [tuple(row) for row in bills],
        "payments": [(row.id.removeprefix(mine), row.amount, row.unapplied, row.kind) for row in paid],
        "allocations": [(row.payment_id.removeprefix(mine), row.number, row.amount) for row in allocated],
        "events": [tuple(row) for row in announced],
    }


def record(uow, event: dict) -> None:
    BillingService.on_payment_succeeded.__wrapped__(None, uow, NOW, event)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(burst=st.lists(PAYMENT, min_size=2, max_size=6))
def test_a_burst_recorded_together_leaves_the_ledger_as_recording_each_alone_does(engine, burst):
    run = next(ids)
    alone_ws, alone_client, alone_made = new_ledger(engine)
    for event in events_for(alone_ws, alone_client, alone_made, burst, run):
        in_one_transaction(engine, lambda uow, event=event: record(uow, event))

    together_run = next(ids)
    ws, client, made = new_ledger(engine)
    events = events_for(ws, client, made, burst, together_run)

    def together(uow):
        payment_handlers.read_stripe_payments_together(uow, events)
        for event in events:
            record(uow, event)

    in_one_transaction(engine, together)
    assert ledger(engine, ws, together_run) == ledger(engine, alone_ws, run)
    assert any(row[2] for row in ledger(engine, ws, together_run)["invoices"])  # the burst paid something
