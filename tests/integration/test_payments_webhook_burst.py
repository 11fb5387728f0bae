"""A burst of Stripe's webhooks for one workspace, on real PostgreSQL with its row-level security: the
deliveries that arrive while one is in its transaction are handled and stored together, in one
transaction, each once; a batch with an event that fails is handled delivery by delivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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
from services.payments.handlers import webhook_events
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


def paid_attempts(engine, stripe: FakeStripe, tag: str, count: int) -> tuple[list[dict], list[dict]]:
    """`count` attempts paid at Stripe, and the payment_intent.succeeded event of each."""

    def run(handler, *args):
        with UnitOfWork(engine) as uow:
            result = handler(uow, utcnow(), *args)
            uow.commit()
            return result

    with acting_for(Scope(WS)):
        made = [paid_attempt(run, stripe, FakeBilling(), key=f"{tag}-{i}") for i in range(count)]
    paid = list(stripe.intents.values())[-count:]
    return made, [intent_event(f"evt_{tag}_{i}", "payment_intent.succeeded", pi) for i, pi in enumerate(paid)]


@contextmanager
def burst_while_the_first_is_stored(engine) -> Iterator[list]:
    """The first delivery's insert of its event is slowed, so that the rest arrive while its
    transaction runs; the commits made meanwhile are collected."""
    commits, slowed = [], []

    def slow_first_insert(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO stripe_events") and not slowed:
            slowed.append(statement)
            eventlet.sleep(0.2)

    def committed(conn):
        commits.append(conn)

    sa.event.listen(engine, "before_cursor_execute", slow_first_insert)
    sa.event.listen(engine, "commit", committed)
    try:
        yield commits
    finally:
        sa.event.remove(engine, "before_cursor_execute", slow_first_insert)
        sa.event.remove(engine, "commit", committed)


def deliver_all(engine, stripe: FakeStripe, deliveries: list[tuple[dict, str]]) -> list[bool]:
    """Each (event, request id) delivered as the gateway does, by payments' workers at once: one
    service instance each, with the dependencies this path uses."""

    def deliver(event: dict, request_id: str) -> bool:
        payments = PaymentsService()
        payments.db, payments.clock, payments.stripe = DatabaseHandle(engine), utcnow, stripe
        payments.scope = ScopeHandle(SimpleNamespace(data={}))
        payments.background = lambda *work: None
        with request_context(request_id):
            return payments.receive_stripe_event(event)

    workers = [eventlet.spawn(deliver, event, request_id) for event, request_id in deliveries]
    return [worker.wait() for worker in workers]


def stored(engine, events: list[dict]) -> list[tuple]:
    query = sa.select(stripe_events.c.id, stripe_events.c.request_id, stripe_events.c.processed_at.is_not(None))
    with engine.connect() as conn:
        return sorted(conn.execute(query.where(stripe_events.c.id.in_([e["id"] for e in events]))))


def announced(engine) -> dict[str, str]:
    """payment.succeeded in the outbox: the request id of each payment's."""
    with acting_for(Scope(WS)), UnitOfWork(engine) as uow:
        rows = uow.execute(
            sa.select(OUTBOX.c.body, OUTBOX.c.request_id).where(OUTBOX.c.event_type == "payment.succeeded")
        )
        return {json.loads(body)["data"]["payment_id"]: request_id for body, request_id in rows}


def test_a_burst_of_one_workspaces_webhooks_commits_together_each_event_once(engine):
    """Six payments' webhooks reach payments while the first is still in its transaction: the first
    commits alone, the five that came meanwhile commit together, each event stored once under its
    own request's id and each payment announced once, under the same id. Two delivered again are
    told apart as redeliveries and change nothing."""
    stripe = FakeStripe()
    made, burst = paid_attempts(engine, stripe, "burst", 6)
    with burst_while_the_first_is_stored(engine) as commits:
        answers = deliver_all(engine, stripe, [(event, f"req-{i}") for i, event in enumerate(burst)])
        committed = len(commits)
        answers += deliver_all(engine, stripe, [(event, "req-again") for event in burst[:2]])  # Stripe again
    assert answers == [True] * 6 + [False, False]
    assert committed == 2  # the first alone, the five together
    assert stored(engine, burst) == [(f"evt_burst_{i}", f"req-{i}", True) for i in range(6)]
    payments = announced(engine)
    assert [payments[attempt["id"]] for attempt in made] == [f"req-{i}" for i in range(6)]


def test_a_batch_with_an_event_that_fails_is_handled_delivery_by_delivery(engine, monkeypatch, caplog):
    """One event of the five handled together fails: their transaction is rolled back, each is then
    handled alone, and only the failing one is left stored, unprocessed, for the timer's retries.
    Stripe gets a 2xx for all six: a failed handling is the timer's to retry."""
    stripe = FakeStripe()
    made, burst = paid_attempts(engine, stripe, "fails", 6)
    handle_event = webhook_events.handle_event

    def fails_for_the_fourth(uow, now, stripe, event):
        if event["id"] == "evt_fails_3":
            raise RuntimeError("a bug in handling this event")
        return handle_event(uow, now, stripe, event)

    monkeypatch.setattr(webhook_events, "handle_event", fails_for_the_fourth)
    with burst_while_the_first_is_stored(engine) as commits:
        answers = deliver_all(engine, stripe, [(event, f"req-{i}") for i, event in enumerate(burst)])
    assert answers == [True] * 6
    [batch_failed] = [r for r in caplog.records if r.getMessage() == "events handled alone after their batch failed"]
    assert batch_failed.events == 5
    assert len(commits) >= 1 + 5  # the first; then, the batch undone, each of the five alone
    assert stored(engine, burst) == [(f"evt_fails_{i}", f"req-{i}", i != 3) for i in range(6)]
    payments = announced(engine)
    assert [payments.get(attempt["id"]) for attempt in made] == [f"req-{i}" if i != 3 else None for i in range(6)]
