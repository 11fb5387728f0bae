"""Charging an attempt: `confirm_attempt` takes the card the client just set up or a saved one, and
`charge` (the autopay timer's way in too) claims the attempt row so that one confirmation runs at a
time, then creates and confirms its PaymentIntent with the attempt and its try number as Stripe's
idempotency key. Stripe's answer moves the attempt along (`_apply_intent`); a failed try opens it
for another (`_fail`, which publishes payment.failed). Money is recorded only when the signed
payment_intent.succeeded event is handled (event_handling)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from chassis.errors import Conflict, Invalid
from chassis.scope import require_role
from services.payments.handlers.cards import _saved_card, _setup_card
from services.payments.handlers.common import PAYING_DETAIL, PAYING_ROLES, portal_url
from services.payments.handlers.payment_attempts import _attempt, _event, attempt_view, get_attempt
from services.payments.handlers.stripe_customers import _customer
from services.payments.stripe_api import CardDeclined, StripeUnavailable
from services.payments.tables import attempts, payment_methods

CLAIM_TIMEOUT = timedelta(seconds=60)  # a confirmation that crashed mid-way may be taken over after this


def confirm_attempt(
    uow,
    now,
    stripe,
    workspace_id: str,
    client_id: str,
    attempt_id: str,
    setup_intent_id: str | None = None,
    payment_method_id: str | None = None,
    save: bool = False,
) -> dict:
    """Charge the attempt with a card the client just set up (setup_intent_id) or a saved one."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    row = _attempt(uow, workspace_id, attempt_id, client_id)
    if row.off_session:
        raise Conflict("This automatic payment is charged by the system.")
    if row.status not in ("open", "failed", "confirming"):
        return attempt_view(row)  # already charged, charging, or waiting for the bank: nothing to do twice
    if setup_intent_id:
        card_id = _setup_card(uow, now, stripe, workspace_id, client_id, setup_intent_id, saved=bool(save))
    elif payment_method_id:
        card_id = _saved_card(uow, workspace_id, client_id, payment_method_id).id
    else:
        raise Invalid("Enter a card or choose a saved one.", card="required")
    uow.commit()
    return charge(uow, now, stripe, row.id, card_id)


def charge(uow, now, stripe, attempt_id: str, card_id: str) -> dict:
    """Claim the attempt, then create and confirm its PaymentIntent. Only one caller wins the claim;
    the others get the attempt as it stands. The idempotency key is the attempt and its try number,
    so a retry after a lost answer returns the same PaymentIntent rather than charging again."""
    claimed = uow.execute(
        attempts.update()
        .where(
            attempts.c.id == attempt_id,
            sa.or_(
                attempts.c.status.in_(["open", "failed"]),
                sa.and_(attempts.c.status == "confirming", attempts.c.updated_at < now - CLAIM_TIMEOUT),
            ),
        )
        .values(status="confirming", payment_method_id=card_id, updated_at=now)
    ).rowcount
    row = uow.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).one()
    if claimed != 1:
        return attempt_view(row)
    method = uow.execute(sa.select(payment_methods).where(payment_methods.c.id == card_id)).first()
    mandate = method.mandate_id if method is not None and method.type == "sepa_debit" else None
    if method is not None and method.type == "sepa_debit" and row.currency != "EUR":
        _fail(uow, now, row, "A bank account can pay invoices in EUR only.", "currency_not_supported")
        uow.commit()
        return attempt_view(uow.execute(sa.select(attempts).where(attempts.c.id == row.id)).one())
    uow.publish("payment.attempted", row.workspace_id, _event(row, off_session=row.off_session))
    uow.commit()
    customer = _customer(uow, row.workspace_id, row.client_id)
    try:
        intent = stripe.create_payment_intent(
            amount=row.amount,
            currency=row.currency,
            customer=customer.stripe_customer_id,
            payment_method=card_id,
            off_session=row.off_session,
            key=f"attempt:{row.id}:{row.tries}",
            account=row.stripe_account,
            **({"mandate": mandate} if mandate else {}),  # a debit: collected under its mandate
            metadata={
                "attempt_id": row.id,
                "try": str(row.tries),
                "workspace_id": row.workspace_id,
                "client_id": row.client_id,
            },
        )
    except CardDeclined as exc:
        _fail(uow, now, row, exc.message, exc.code)
    except StripeUnavailable:
        # Unknown outcome: open it again with the same try number, so the retry reuses the key.
        uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status == "confirming")
            .values(status="open", updated_at=now)
        )
        uow.commit()
        raise
    else:
        _apply_intent(uow, now, row, intent, debit=mandate is not None)
    uow.commit()
    return attempt_view(uow.execute(sa.select(attempts).where(attempts.c.id == row.id)).one())


def _apply_intent(uow, now, row, intent: dict, debit: bool = False) -> None:
    """Move the attempt along with what Stripe answered; success itself waits for the signed event. A
    debit stays processing for days: billing is told (payment.processing) so the invoice shows it."""
    status = intent["status"]
    if status in ("succeeded", "processing"):
        new = {"status": "processing"}
    elif status == "requires_action" and not row.off_session:
        new = {"status": "requires_action", "client_secret": intent["client_secret"]}
    elif status == "requires_action":  # autopay, but the bank wants the client there
        return _fail(
            uow,
            now,
            row,
            "Your bank asks you to confirm this payment yourself.",
            "authentication_required",
            intent["id"],
        )
    else:
        return _fail(uow, now, row, intent["error"] or "The payment did not go through.", status, intent["id"])
    moved = uow.execute(
        attempts.update()
        .where(attempts.c.id == row.id, attempts.c.status == "confirming")
        .values(payment_intent_id=intent["id"], updated_at=now, **new)
    ).rowcount
    if moved == 1 and debit and new["status"] == "processing":
        _publish_processing(uow, now, row, intent["id"])


def _publish_processing(uow, now, row, payment_intent_id: str) -> None:
    uow.publish(
        "payment.processing",
        row.workspace_id,
        _event(
            row,
            off_session=row.off_session,
            method="sepa_debit",
            reference=payment_intent_id,
            since=now.isoformat(),
            **{"try": row.tries},
        ),
    )


def _fail(uow, now, row, message: str, code: str, payment_intent_id: str | None = None) -> None:
    """The try failed: the attempt can be tried again with another card (try number + 1). A failure
    after the payment was processing (a debit the bank returned days later) is `late`: the client
    has left the page, so it is emailed, like a failed automatic payment."""
    late = row.status == "processing"
    failed = uow.execute(
        attempts.update()
        .where(attempts.c.id == row.id, attempts.c.status.in_(["confirming", "requires_action", "processing", "open"]))
        .values(
            status="failed",
            tries=row.tries + 1,
            failure_message=message[:500],
            payment_intent_id=None,
            client_secret=None,
            updated_at=now,
        )
    ).rowcount
    if failed != 1:
        return
    pay_url = portal_url("/pay?" + "&".join(f"invoice={a['invoice_id']}" for a in row.allocations))
    uow.publish(
        "payment.failed",
        row.workspace_id,
        {
            **_event(row, off_session=row.off_session),
            "reason": message,
            "code": code,
            "pay_url": pay_url,
            "payment_intent_id": payment_intent_id,
            "late": late,
            "try": row.tries,
        },
    )


def refresh_attempt(uow, now, stripe, workspace_id: str, client_id: str, attempt_id: str) -> dict:
    """After the browser's authentication step: a failure there sends no event, so ask Stripe."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    row = _attempt(uow, workspace_id, attempt_id, client_id)
    if row.status != "requires_action" or not row.payment_intent_id:
        return attempt_view(row)
    intent = stripe.payment_intent(row.payment_intent_id, row.stripe_account)
    if intent["status"] in ("requires_payment_method", "canceled"):
        _fail(
            uow,
            now,
            row,
            intent["error"] or "The payment was not authenticated.",
            "authentication_failed",
            intent["id"],
        )
    elif intent["status"] == "processing" or intent["status"] == "succeeded":
        uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status == "requires_action")
            .values(status="processing", updated_at=now)
        )
    uow.commit()
    return get_attempt(uow, now, workspace_id, attempt_id, client_id)
