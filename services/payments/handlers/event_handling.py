"""What each Stripe event does when it is processed: a PaymentIntent's outcome moves its attempt (a
success always counts and publishes payment.succeeded once, whatever the order or number of
deliveries; a failure or processing only for the current try), a refunded charge goes to
payment_refunds and a dispute to card_disputes, a SetupIntent that succeeded keeps its card, and a
detached payment method is forgotten. An event naming nothing of ours is ignored."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from chassis.prepared import Prepared, bound
from services.payments.handlers.card_disputes import _on_dispute
from services.payments.handlers.cards import _forget_card, _register_card
from services.payments.handlers.charging import _fail, _publish_processing
from services.payments.handlers.payment_attempts import _event
from services.payments.handlers.payment_refunds import _on_charge_refunded
from services.payments.handlers.stripe_customers import _customer
from services.payments.stripe_api import payment_intent_view
from services.payments.tables import attempts, card_setups, payment_methods

log = logging.getLogger(__name__)


def _attempt_for_intent(uow, intent: dict):
    """The attempt the intent is for, with what is known of the payment method it was paid with (the
    intent's, else the attempt's): `method_type`, `method_brand`, `method_last4` and `method_country`,
    None when the method is not one of ours. One statement."""
    attempt_id = intent["metadata"].get("attempt_id")
    statement = _FOR_ATTEMPT if attempt_id else _FOR_INTENT
    return uow.execute(
        statement, {"key": attempt_id or intent["id"], "intent_method": intent["payment_method"]}
    ).first()


def _attempt_with_method(key: sa.ColumnElement) -> sa.Select:
    paid_with = sa.func.coalesce(sa.bindparam("intent_method", type_=sa.String), attempts.c.payment_method_id)
    return (
        sa.select(
            attempts,
            payment_methods.c.type.label("method_type"),
            payment_methods.c.brand.label("method_brand"),
            payment_methods.c.last4.label("method_last4"),
            payment_methods.c.country.label("method_country"),
        )
        .select_from(attempts.outerjoin(payment_methods, payment_methods.c.id == paid_with))
        .where(key == sa.bindparam("key", type_=sa.String))
    )


# Built once and prepared (chassis/prepared.py), as is the success below: every payment's event sends them.
_FOR_ATTEMPT = Prepared("payments_attempt_by_id", _attempt_with_method(attempts.c.id))
_FOR_INTENT = Prepared("payments_attempt_by_intent", _attempt_with_method(attempts.c.payment_intent_id))
_SUCCEEDED = Prepared(
    "payments_attempt_succeeded",
    attempts.update()
    .where(attempts.c.id == sa.bindparam("of_attempt", type_=sa.String), attempts.c.status != "succeeded")
    .values(
        status="succeeded",
        client_secret=None,
        failure_message="",
        **bound(attempts, "payment_intent_id", "succeeded_at", "updated_at"),
    ),
)


def handle_event(uow, now, stripe, event: dict) -> str:
    obj, kind = event["data"]["object"], event["type"]
    if kind.startswith("payment_intent."):
        return _on_payment_intent(uow, now, kind, payment_intent_view(obj))
    if kind == "charge.refunded":
        return _on_charge_refunded(uow, now, obj)
    if kind.startswith("charge.dispute."):
        return _on_dispute(uow, now, obj)
    if kind == "setup_intent.succeeded":
        setup = uow.execute(sa.select(card_setups).where(card_setups.c.setup_intent_id == obj["id"])).first()
        if setup is None or setup.attempt_id:  # cards entered to pay are kept by the payment itself
            return "ignored: not a card being saved"
        if "sepa_debit" in (obj.get("payment_method_types") or []):  # kept, with its mandate, when set up
            return "ignored: a bank account"
        customer = _customer(uow, setup.workspace_id, setup.client_id)
        payment_method = obj.get("payment_method")
        payment_method = payment_method if isinstance(payment_method, str) else (payment_method or {}).get("id")
        if not payment_method:  # Stripe names the card of every SetupIntent that succeeded
            return "ignored: no card"
        _register_card(uow, now, stripe, customer, payment_method, saved=True)
        return "card saved"
    if kind == "payment_method.detached":
        _forget_card(uow, now, stripe, obj["id"])
        return "card removed"
    return "ignored"


def _on_payment_intent(uow, now, kind: str, intent: dict) -> str:
    row = _attempt_for_intent(uow, intent)
    if row is None:
        return "ignored: no such attempt"
    current_try = intent["metadata"].get("try") in (None, str(row.tries))
    if kind == "payment_intent.succeeded":
        if row.status == "succeeded":
            return "duplicate: already paid"
        if intent["amount"] != row.amount or intent["currency"] != row.currency:
            log.error(
                "payment intent does not match its attempt",
                extra={"attempt_id": row.id, "payment_intent": intent["id"]},
            )
            return "rejected: amount or currency differs from the attempt"
        # A success always counts, even of a try we thought failed: the money was taken.
        changes = {"payment_intent_id": intent["id"], "succeeded_at": now, "updated_at": now}
        paid = uow.execute(_SUCCEEDED, {"of_attempt": row.id, **changes}).rowcount
        if paid == 1:
            debit = row.method_type == "sepa_debit"
            uow.publish(
                "payment.succeeded",
                row.workspace_id,
                _event(
                    row,
                    reference=intent["id"],
                    received_at=now.isoformat(),
                    method="sepa_debit" if debit else "card",
                    off_session=row.off_session,
                    card={"brand": row.method_brand, "last4": row.method_last4} if row.method_type == "card" else None,
                    bank={"last4": row.method_last4, "country": row.method_country} if debit else None,
                ),
            )
        return "paid"
    if not current_try or row.status in ("succeeded", "failed", "canceled"):
        return f"ignored: attempt is {row.status}"
    if kind == "payment_intent.payment_failed":
        _fail(uow, now, row, intent["error"] or "The payment did not go through.", "payment_failed", intent["id"])
        return "failed"
    if kind == "payment_intent.processing":
        # Only from before processing: a success (or failure) that came first is never undone by it.
        moved = uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status.in_(["confirming", "requires_action"]))
            .values(status="processing", payment_intent_id=intent["id"], updated_at=now)
        ).rowcount
        if moved == 1 and row.method_type == "sepa_debit":
            _publish_processing(uow, now, row, intent["id"])
        return "processing"
    return "ignored"
