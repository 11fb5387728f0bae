"""Refunds of card payments, in full or in part: the refund row is claimed before Stripe is called and
its id is Stripe's idempotency key, so a retried request never refunds twice, nor more than is left.
A refund made at Stripe directly (the dashboard) is recorded from its charge.refunded event, and
payment.refunded is published once per refund, whichever path reports it first."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis.errors import Conflict, Invalid
from chassis.fields import text
from services.payments.handlers.common import iso
from services.payments.handlers.payment_attempts import _attempt
from services.payments.tables import attempts, refunds


def refund_view(row) -> dict:
    return {
        "id": row.id,
        "payment_id": row.attempt_id,
        "stripe_refund_id": row.stripe_refund_id,
        "amount": row.amount,
        "currency": row.currency,
        "reason": row.reason,
        "status": row.status,
        "created_at": iso(row.created_at),
    }


def refund_payment(
    uow, now, stripe, workspace_id: str, payment_id: str, amount, reason: str = "", request_key: str = ""
) -> dict:
    """Refund all or part of a card payment. The refund row is claimed before Stripe is called, and
    its id is the idempotency key, so retrying with the same request key never refunds twice."""
    row = _attempt(uow, workspace_id, payment_id)
    if not isinstance(request_key, str) or not request_key.strip():
        raise Invalid("Send an idempotency key with a refund.", idempotency_key="required")
    text(request_key, "idempotency_key", 100)  # refuses an overlong key or a NUL; a good one is kept as given
    reason = text(reason, "reason", 500, null="") or ""  # no reason (null) is kept as ""
    existing = uow.execute(
        sa.select(refunds).where(refunds.c.attempt_id == row.id, refunds.c.request_key == request_key)
    ).first()
    if existing is None:
        if row.status != "succeeded" or not row.payment_intent_id:
            raise Conflict("Only a completed card payment can be refunded.")
        if amount is None:  # the rest; once everything is refunded there is no rest (a state, not bad input)
            amount = row.amount - row.refunded
            if amount <= 0:
                raise Conflict("This payment has been refunded in full.", amount="nothing left to refund")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise Invalid("The amount is a positive integer in minor units.", amount="not a positive integer")
        committed = uow.execute(
            sa.select(sa.func.coalesce(sa.func.sum(refunds.c.amount), 0)).where(
                refunds.c.attempt_id == row.id, refunds.c.status != "failed"
            )
        ).scalar_one()
        if amount > row.amount - committed:
            raise Conflict("That is more than is left to refund on this payment.", amount="above the refundable")
        try:
            with uow.conn.begin_nested():
                uow.execute(
                    refunds.insert().values(
                        id=str(uuid.uuid4()),
                        attempt_id=row.id,
                        request_key=request_key,
                        amount=amount,
                        currency=row.currency,
                        reason=reason,
                        status="pending",
                        created_at=now,
                    )
                )
        except IntegrityError:
            pass
        uow.commit()
        existing = uow.execute(
            sa.select(refunds).where(refunds.c.attempt_id == row.id, refunds.c.request_key == request_key)
        ).one()
    if existing.status != "pending":
        return refund_view(existing)
    try:
        result = stripe.create_refund(
            payment_intent=row.payment_intent_id,
            amount=existing.amount,
            metadata={"refund_id": existing.id, "payment_id": row.id},
            key=f"refund:{existing.id}",
            account=row.stripe_account,
        )
    except Invalid:
        uow.execute(refunds.update().where(refunds.c.id == existing.id).values(status="failed"))
        uow.commit()
        raise
    uow.execute(refunds.update().where(refunds.c.id == existing.id).values(stripe_refund_id=result["id"]))
    if result["status"] == "succeeded":
        _refund_succeeded(uow, row, existing.id)
    uow.commit()
    return refund_view(uow.execute(sa.select(refunds).where(refunds.c.id == existing.id)).one())


def _refund_succeeded(uow, attempt, refund_id: str) -> None:
    """Publish payment.refunded once per refund, however many paths report it."""
    done = uow.execute(
        refunds.update().where(refunds.c.id == refund_id, refunds.c.status == "pending").values(status="succeeded")
    ).rowcount
    if done != 1:
        return
    refund = uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).one()
    uow.execute(
        attempts.update().where(attempts.c.id == attempt.id).values(refunded=attempts.c.refunded + refund.amount)
    )
    uow.publish(
        "payment.refunded",
        attempt.workspace_id,
        {
            "refund_id": refund.stripe_refund_id or refund.id,
            "payment_id": attempt.id,
            "client_id": attempt.client_id,
            "amount": refund.amount,
            "currency": refund.currency,
            "reason": refund.reason,
        },
    )


def _on_charge_refunded(uow, now, charge: dict) -> str:
    intent_id = charge.get("payment_intent")
    intent_id = intent_id if isinstance(intent_id, str) else (intent_id or {}).get("id")
    row = uow.execute(sa.select(attempts).where(attempts.c.payment_intent_id == intent_id)).first()
    if row is None:
        return "ignored: no such payment"
    count = 0
    for refund in (charge.get("refunds") or {}).get("data") or []:
        if refund.get("status") != "succeeded":
            continue
        known = uow.execute(sa.select(refunds).where(refunds.c.stripe_refund_id == refund["id"])).first()
        if known is None:  # made at Stripe directly (the dashboard): record it here too
            refund_id = str(uuid.uuid4())
            uow.execute(
                refunds.insert().values(
                    id=refund_id,
                    attempt_id=row.id,
                    request_key=f"stripe:{refund['id']}",
                    stripe_refund_id=refund["id"],
                    amount=refund["amount"],
                    currency=row.currency,
                    reason=str(refund.get("reason") or ""),
                    status="pending",
                    created_at=now,
                )
            )
            known = uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).one()
        _refund_succeeded(uow, uow.execute(sa.select(attempts).where(attempts.c.id == row.id)).one(), known.id)
        count += 1
    return f"refunds: {count}"


def list_refunds(uow, now, workspace_id: str, payment_id: str) -> list[dict]:
    row = _attempt(uow, workspace_id, payment_id)
    return [
        refund_view(r)
        for r in uow.execute(
            sa.select(refunds).where(refunds.c.attempt_id == row.id).order_by(refunds.c.created_at)
        ).all()
    ]
