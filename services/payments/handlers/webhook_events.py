"""Stripe's webhook events as payments keeps them: each verified event is stored once (a redelivery is
known by its id) and processed once, whichever replica or path gets to it first. Most events are
processed in the transaction that stores them (`process_as_received`; a burst of one workspace's
together, `process_together`); one whose handling calls Stripe back is stored first and processed
after the answer (`receive_event`, then `process_event`). A failing event is retried with a growing
delay, parked in dead_letters when out of tries, and processed afresh when replayed from there.
Whose event it is (`workspace_of`) is found from payments' own rows, so it is processed in that
workspace's scope. What each event does is in event_handling."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from chassis.errors import Invalid
from chassis.events import add_dead_letter
from chassis.logs import current_request_id, request_context
from chassis.prepared import Prepared, bound
from chassis.sql import insert_once
from services.payments.handlers.event_handling import handle_event
from services.payments.stripe_api import payment_intent_view
from services.payments.tables import attempts, card_setups, payment_methods, stripe_events

# Not a savepoint around a plain insert: one statement instead of three on the path Stripe waits on,
# and its row count tells a redelivery.
_STORE_ONCE = insert_once(
    stripe_events, ("id", "type", "body", "received_at", "next_attempt_at", "outcome", "request_id"), "id"
)
_STORE_PROCESSED = insert_once(
    stripe_events, ("id", "type", "body", "received_at", "processed_at", "outcome", "request_id"), "id"
)
# Events whose handling asks Stripe for more (a card's details): never inside the request Stripe waits on.
CALL_STRIPE_BACK = frozenset({"setup_intent.succeeded", "payment_method.detached"})
# How long the timer leaves a new event to the processing that starts as it is stored. Taken at once,
# the timer would mostly meet events that processing holds, and spend a transaction on each to find
# that out; it is the safety net for a replica that stopped before it processed what it stored.
LEFT_TO_STORING_REPLICA = timedelta(seconds=5)


def receive_event(uow, now, event: dict) -> bool:
    """Keep a verified Stripe event, committed when this returns; processing happens later, once (the
    timer's after LEFT_TO_STORING_REPLICA). False for a redelivery. The insert is written alone (one
    round trip on PostgreSQL): stripe_events is the service's own, under no workspace's scope. Should
    the connection go between the insert and its answer, the insert sent again counts no row, and
    the event is left to the timer like a redelivery: stored once, processed once, a little later."""
    check_event(event)
    stored = uow.write_alone(_STORE_ONCE, _row(event, now, next_attempt_at=now + LEFT_TO_STORING_REPLICA, outcome=""))
    return stored == 1  # nothing inserted: a redelivery


def _row(event: dict, now, **state) -> dict:
    """The event's row as received now, under the request that delivered it, with its `state`."""
    received = {"id": event["id"], "type": str(event["type"])[:100], "body": json.dumps(event), "received_at": now}
    return {**received, "request_id": current_request_id(), **state}


def check_event(event: object) -> None:
    if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_") or "type" not in event:
        raise Invalid("Not a Stripe event.")


def processed_as_received(event: dict) -> bool:
    """Whether the event is processed in the transaction that stores it (`process_as_received`)."""
    return str(event["type"]) not in CALL_STRIPE_BACK


class Redelivered(Exception):
    """The event is stored already: the handling of this delivery is rolled back."""


def process_as_received(uow, now, stripe, event: dict) -> str:
    """Handle a verified event and store it as processed, in one transaction: the answer to Stripe
    then means the payment is recorded (its payment.succeeded in the outbox), at one commit. The
    event is stored last, so a redelivery (stored already, by this path or `receive_event`) raises
    Redelivered, and the caller's rollback undoes what handling it again did. Two deliveries at once
    wait on the same rows, so only one of them commits: a payment's outcome on its attempt's row,
    then the event's id; a refund or a dispute on its own key, which refuses the second (the caller
    then finds the event stored, and answers as for a redelivery)."""
    check_event(event)
    outcome = handle_event(uow, now, stripe, event)
    stored = uow.execute(_STORE_PROCESSED, _row(event, now, processed_at=now, outcome=outcome[:200])).rowcount
    if stored != 1:
        raise Redelivered(event["id"])
    return outcome


def process_together(uow, now, stripe, received: list[tuple[dict, str | None]]) -> list[str | bool]:
    """Several deliveries of one workspace, each `(event, id of the request that delivered it)`, handled
    and stored as processed in one transaction, as `process_as_received` handles one: each event's
    outcome, or False for one stored already (by an earlier delivery, or earlier in this batch). They
    are handled in the order Stripe made them (`created`, then id): a dispute's "closed" is not undone
    by its "created" handled after it, and batches of the same events on two replicas lock their rows
    in the same order. Should a twin delivery commit while this runs, the insert counts fewer rows
    than it was given and Redelivered undoes the whole batch: the caller then handles each event
    alone, where its twin is told apart."""
    for event, _ in received:
        check_event(event)
    ids = [event["id"] for event, _ in received]
    done = set(uow.execute(sa.select(stripe_events.c.id).where(stripe_events.c.id.in_(ids))).scalars())
    outcomes: dict[str, str] = {}
    rows = []
    for event, request_id in sorted(received, key=lambda each: (_created(each[0]), each[0]["id"])):
        if event["id"] in done or event["id"] in outcomes:
            continue
        with request_context(request_id):  # its records (the outbox's events) carry its own request's id
            outcomes[event["id"]] = handle_event(uow, now, stripe, event)
            rows.append(_row(event, now, processed_at=now, outcome=outcomes[event["id"]][:200]))
    if rows and uow.execute(_STORE_PROCESSED, rows).rowcount != len(rows):
        raise Redelivered(", ".join(row["id"] for row in rows))
    # the first delivery of an id in the batch carries its outcome; a second one is a redelivery
    return [outcomes.pop(event_id, False) for event_id in ids]


def _created(event: dict) -> int:
    """When Stripe made the event (seconds), 0 when it does not say."""
    created = event.get("created")
    return created if isinstance(created, int) else 0


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
    """Which workspace a stored Stripe event belongs to (see `workspace_of`); None when it is not stored."""
    stored = uow.execute(sa.select(stripe_events.c.body).where(stripe_events.c.id == event_id)).first()
    return None if stored is None else workspace_of(uow, json.loads(stored.body))


def _workspace_by(name: str, key: sa.Column[str]) -> Prepared:
    """The workspace of the one row whose `key` is the lookup's value, as a statement prepared once."""
    table = key.table
    return Prepared(name, sa.select(table.c.workspace_id).where(key == sa.bindparam("key", type_=sa.String)))


_BY_ATTEMPT = _workspace_by("stripe_event_attempt_workspace", attempts.c.id)
_BY_INTENT = _workspace_by("stripe_event_intent_workspace", attempts.c.payment_intent_id)
_BY_SETUP = _workspace_by("stripe_event_setup_workspace", card_setups.c.setup_intent_id)
_BY_PAYMENT_METHOD = _workspace_by("stripe_event_payment_method_workspace", payment_methods.c.id)


def workspace_of(uow, event: dict) -> str | None:
    """Which workspace a Stripe event belongs to, from our own rows for the object it names (never from
    what the event says), looked up across workspaces. None when it names nothing of ours. As the
    unit of work's first statement it is one round trip (`read_row`): the scope and the lookup."""
    obj, kind = event["data"]["object"], event["type"]
    if kind.startswith("payment_intent."):
        intent = payment_intent_view(obj)
        attempt_id = intent["metadata"].get("attempt_id")  # the attempt's own id, when we made the intent
        lookup, key = (_BY_ATTEMPT, attempt_id) if attempt_id else (_BY_INTENT, intent["id"])
    elif kind == "charge.refunded" or kind.startswith("charge.dispute."):
        intent_id = obj.get("payment_intent")
        lookup, key = _BY_INTENT, intent_id if isinstance(intent_id, str) else (intent_id or {}).get("id")
    elif kind == "setup_intent.succeeded":
        lookup, key = _BY_SETUP, obj["id"]
    elif kind == "payment_method.detached":
        lookup, key = _BY_PAYMENT_METHOD, obj["id"]
    else:
        return None
    found = uow.read_row(lookup, {"key": key}) if key else None
    return found.workspace_id if found is not None else None


def process_event(uow, now, stripe, event_id: str) -> str | None:
    """Handle one stored event in one transaction with marking it processed; a replica that got to it
    first makes this a no-op (row lock on PostgreSQL, the processed_at check everywhere)."""
    row = uow.execute(_UNPROCESSED_LOCKED, {"of_event": event_id}).first()
    if row is None:
        return None
    outcome = handle_event(uow, now, stripe, json.loads(row.body))
    uow.execute(_PROCESSED, {"of_event": event_id, "processed_at": now, "outcome": outcome[:200]})
    return outcome


# Both built once and prepared (chassis/prepared.py): every Stripe event sends them. The lock skips an
# event another replica holds (SQLite has no row locks: the processed_at check is what it has).
_of_event = sa.bindparam("of_event", type_=sa.String)
_UNPROCESSED_LOCKED = Prepared(
    "payments_stripe_event_unprocessed",
    sa.select(stripe_events)
    .where(stripe_events.c.id == _of_event, stripe_events.c.processed_at.is_(None))
    .with_for_update(skip_locked=True),
)
_PROCESSED = Prepared(
    "payments_stripe_event_processed",
    stripe_events.update()
    .where(stripe_events.c.id == _of_event)
    .values(bound(stripe_events, "processed_at", "outcome")),
)
