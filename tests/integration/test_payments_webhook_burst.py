"""A burst of Stripe's webhooks for one workspace, on real PostgreSQL with its row-level security: the
deliveries that arrive while one is in its transaction are handled and stored together, in one
transaction, each once."""

from __future__ import annotations

import json
from types import SimpleNamespace

import eventlet
import pytest
import sqlalchemy as sa

from chassis.clock import utcnow
from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.events import OUTBOX
from chassis.logs import request_context
from chassis.nameko_ext import DatabaseHandle, ScopeHandle
from chassis.scope import Scope, acting_for
from services.payments.service import PaymentsService
from services.payments.tables import stripe_events
from tests.conftest import ROOT
from tests.unit.test_payments_handlers import WS, FakeBilling, FakeStripe, intent_event, paid_attempt

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(service_databases):
    url = service_databases["payments"]
    upgrade(url, ROOT / "services" / "payments" / "migrations")
    engine = make_engine(url, pool_size=10)
    yield engine
    engine.dispose()


def test_a_burst_of_one_workspaces_webhooks_commits_together_each_event_once(engine):
    """Six payments' webhooks reach payments while the first is still in its transaction (its event's
    insert is slowed): the first commits alone, the five that came meanwhile commit together, each
    event stored once under its own request's id and each payment announced once. Two delivered
    again are told apart as redeliveries and change nothing."""
    stripe = FakeStripe()

    def run(handler, *args):
        with UnitOfWork(engine) as uow:
            result = handler(uow, utcnow(), *args)
            uow.commit()
            return result

    with acting_for(Scope(WS)):
        made = [paid_attempt(run, stripe, FakeBilling(), key=f"burst-{i}") for i in range(6)]
    burst = [
        intent_event(f"evt_burst_{i}", "payment_intent.succeeded", pi) for i, pi in enumerate(stripe.intents.values())
    ]

    def deliver(event: dict, request_id: str) -> bool:
        payments = PaymentsService()  # one worker's instance, with the dependencies this path uses
        payments.db, payments.clock, payments.stripe = DatabaseHandle(engine), utcnow, stripe
        payments.scope = ScopeHandle(SimpleNamespace(data={}))
        payments.background = lambda *work: None
        with request_context(request_id):
            return payments.receive_stripe_event(event)

    commits, slowed = [], []

    def slow_first_insert(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO stripe_events") and not slowed:
            slowed.append(statement)
            eventlet.sleep(0.2)  # the rest of the burst arrives meanwhile

    sa.event.listen(engine, "before_cursor_execute", slow_first_insert)
    sa.event.listen(engine, "commit", lambda conn: commits.append(conn))
    try:
        workers = [eventlet.spawn(deliver, event, f"req-{i}") for i, event in enumerate(burst)]
        answers = [worker.wait() for worker in workers]
        committed = len(commits)
        workers = [eventlet.spawn(deliver, event, "req-again") for event in burst[:2]]  # Stripe delivers again
        answers += [worker.wait() for worker in workers]
    finally:
        sa.event.remove(engine, "before_cursor_execute", slow_first_insert)
    assert answers == [True] * 6 + [False, False]
    assert committed == 2  # the first alone, the five together
    ids = [event["id"] for event in burst]
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(stripe_events.c.id, stripe_events.c.request_id).where(stripe_events.c.id.in_(ids))
        )
        assert sorted(stored) == [(f"evt_burst_{i}", f"req-{i}") for i in range(6)]
    with acting_for(Scope(WS)), UnitOfWork(engine) as uow:
        announced = uow.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "payment.succeeded")).scalars()
        paid = [json.loads(body)["data"]["payment_id"] for body in announced]
    assert sorted(paid) == sorted(attempt["id"] for attempt in made)
