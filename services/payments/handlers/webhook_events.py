"""Stripe's webhook events as payments keeps them: each verified event is stored once (a redelivery is
known by its id), then processed once, in one transaction with marking it processed, whichever
replica or path gets to it first. A failing event is retried with a growing delay, parked in
dead_letters when out of tries, and processed afresh when replayed from there. Whose event it is
(`event_workspace`) is found from payments' own rows, so it is processed in that workspace's scope.
What each event does is in event_handling."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis.errors import Invalid
from chassis.events import add_dead_letter
from chassis.logs import current_request_id
from services.payments.handlers.event_handling import _attempt_for_intent, handle_event
from services.payments.stripe_api import payment_intent_view
from services.payments.tables import attempts, card_setups, payment_methods, stripe_events


def receive_event(uow, now, event: dict) -> bool:
    """Keep a verified Stripe event; processing happens later, once. False for a redelivery."""
    if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_") or "type" not in event:
        raise Invalid("Not a Stripe event.")
    try:
        with uow.conn.begin_nested():
            uow.execute(
                stripe_events.insert().values(
                    id=event["id"],
                    type=str(event["type"])[:100],
                    body=json.dumps(event),
                    received_at=now,
                    outcome="",
                    request_id=current_request_id(),
                )
            )
    except IntegrityError:
        return False
    return True


def pending_events(uow, now, limit: int = 20) -> list[tuple[str, str | None]]:
    """Stored events due for processing: (event id, id of the request that delivered it)."""
    due = sa.or_(stripe_events.c.next_attempt_at.is_(None), stripe_events.c.next_attempt_at <= now)
    return [
        (r.id, r.request_id)
        for r in uow.execute(
            sa.select(stripe_events.c.id, stripe_events.c.request_id)
            .where(stripe_events.c.processed_at.is_(None), due)
            .order_by(stripe_events.c.received_at, stripe_events.c.id)
            .limit(limit)
        ).all()
    ]


STRIPE_EVENT_CONSUMER = "payments.stripe_event"


def event_failed(uow, now, event_id: str, error: str, max_attempts: int, base_delay: float) -> bool:
    """Count a failed try of a stored event: retry it later with a growing delay, or, out of tries,
    park it in dead_letters (marked processed so the timer stops). True when it was parked."""
    row = uow.execute(
        sa.select(stripe_events).where(stripe_events.c.id == event_id, stripe_events.c.processed_at.is_(None))
    ).first()
    if row is None:
        return False
    tries = row.attempts + 1
    if tries >= max_attempts:
        add_dead_letter(uow.conn, STRIPE_EVENT_CONSUMER, json.loads(row.body), error)
        uow.execute(
            stripe_events.update()
            .where(stripe_events.c.id == event_id)
            .values(attempts=tries, processed_at=now, outcome=f"dead-lettered: {error}"[:200])
        )
        return True
    uow.execute(
        stripe_events.update()
        .where(stripe_events.c.id == event_id)
        .values(attempts=tries, next_attempt_at=now + timedelta(seconds=base_delay * 2 ** (tries - 1)))
    )
    return False


def requeue_event(uow, event_id: str) -> bool:
    """A replay from the dead-letter table: the timer processes the stored event again, afresh."""
    return (
        uow.execute(
            stripe_events.update()
            .where(stripe_events.c.id == event_id)
            .values(processed_at=None, attempts=0, next_attempt_at=None, outcome="")
        ).rowcount
        == 1
    )


def event_workspace(uow, event_id: str) -> str | None:
    """Which workspace a stored Stripe event belongs to, from our own rows for the object it names: the
    processing timer's lookup across workspaces. None when it names nothing of ours."""
    stored = uow.execute(sa.select(stripe_events.c.body).where(stripe_events.c.id == event_id)).first()
    if stored is None:
        return None
    event = json.loads(stored.body)
    obj, kind = event["data"]["object"], event["type"]
    if kind.startswith("payment_intent."):
        found = _attempt_for_intent(uow, payment_intent_view(obj))
    elif kind == "charge.refunded" or kind.startswith("charge.dispute."):
        intent_id = obj.get("payment_intent")
        intent_id = intent_id if isinstance(intent_id, str) else (intent_id or {}).get("id")
        found = (
            uow.execute(sa.select(attempts.c.workspace_id).where(attempts.c.payment_intent_id == intent_id)).first()
            if intent_id
            else None
        )
    elif kind == "setup_intent.succeeded":
        found = uow.execute(
            sa.select(card_setups.c.workspace_id).where(card_setups.c.setup_intent_id == obj["id"])
        ).first()
    elif kind == "payment_method.detached":
        found = uow.execute(sa.select(payment_methods.c.workspace_id).where(payment_methods.c.id == obj["id"])).first()
    else:
        found = None
    return found.workspace_id if found is not None else None


def process_event(uow, now, stripe, event_id: str) -> str | None:
    """Handle one stored event in one transaction with marking it processed; a replica that got to it
    first makes this a no-op (row lock on PostgreSQL, the processed_at check everywhere)."""
    query = sa.select(stripe_events).where(stripe_events.c.id == event_id, stripe_events.c.processed_at.is_(None))
    if uow.conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = uow.execute(query).first()
    if row is None:
        return None
    outcome = handle_event(uow, now, stripe, json.loads(row.body))
    uow.execute(
        stripe_events.update().where(stripe_events.c.id == event_id).values(processed_at=now, outcome=outcome[:200])
    )
    return outcome
