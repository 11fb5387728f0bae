"""Card refunds, as payments' events report them: a refund takes back a payment's unapplied money
first, then what it paid on invoices, newest invoice first, each reversed by the workspace's refund
policy (settlement.py: owed again, or kept settled by a credit). Idempotent by refund id. Also the
lookup of the card payment that a refund or a card dispute (card_disputes.py) is about."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from chassis.errors import Invalid, NotFound, Unavailable
from chassis.fields import text
from chassis.money import Money
from services.billing import domain
from services.billing.handlers.common import (
    check_fields,
    get_scoped,
    iso,
    portal_recipients,
    record_activity,
    settings_of,
    workspace_row,
)
from services.billing.handlers.payments import _refunded
from services.billing.handlers.settlement import _amount, _reverse
from services.billing.handlers.summaries import money_moved
from services.billing.tables import invoices, payment_allocations, payments, refund_reversals, refunds

__all__ = ["record_refund", "list_refunds"]

REFUND_FIELDS = {"refund_id", "payment_id", "amount", "currency", "client_id", "reason"}


def _text_field(data: dict, key: str, limit: int, required: bool = False) -> str:
    return text(data.get(key), key, limit, required=required, null="") or ""  # null="": never None


def _card_payment(uow, workspace_id: str, data: dict):
    """The payment a refund or dispute is about, locked, checked against the event's client and currency.

    Unknown yet is not a refusal: payment.succeeded and payment.refunded arrive on different queues,
    so a refund made right after the payment can overtake it. Unavailable has the consumer retry
    with backoff, and park it as a dead letter (replayable) only if the payment never arrives."""
    try:
        payment = get_scoped(uow, payments, workspace_id, str(data.get("payment_id") or ""), "payment", lock=True)
    except NotFound:
        raise Unavailable("The payment is not recorded here yet.") from None
    if data.get("client_id") and data["client_id"] != payment.client_id:
        raise Invalid("The payment belongs to another client.", client_id="mismatch")
    if data.get("currency") and data["currency"] != payment.currency:
        raise Invalid("The currency differs from the payment's.", currency="mismatch")
    return payment


def _refund_view(row) -> dict:
    return {
        "id": row.id,
        "payment_id": row.payment_id,
        "client_id": row.client_id,
        "amount": row.amount,
        "currency": row.currency,
        "policy": row.policy,
        "reason": row.reason,
        "created_at": iso(row.created_at),
    }


def record_refund(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    """A card refund of all or part of a payment; idempotent by refund id. It takes back the payment's
    unapplied money first, then what the payment paid on invoices, newest invoice first, by the
    workspace's refund_policy (see _reverse)."""
    check_fields(data, REFUND_FIELDS)
    refund_id = _text_field(data, "refund_id", 64, required=True)
    existing = uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).first()
    if existing is not None:
        if existing.workspace_id != workspace_id:
            raise Invalid("This refund id is already used.", refund_id="taken")
        return _refund_view(existing)
    amount = _amount(data.get("amount"))
    reason = _text_field(data, "reason", 2000)
    payment = _card_payment(uow, workspace_id, data)
    refundable = payment.amount - _refunded(uow, payment.id)
    if amount > refundable:
        raise Invalid(
            f"Only {Money(refundable, payment.currency).format()} of this payment can be refunded.",
            amount="more than refundable",
        )
    policy = settings_of(workspace_row(uow, workspace_id)).refund_policy
    # Unapplied money first: it paid no invoice. If the client already spent it as credit, their
    # available credit goes below zero, which is what they owe back.
    from_unapplied = min(amount, payment.unapplied)
    if from_unapplied:
        uow.execute(
            payments.update().where(payments.c.id == payment.id).values(unapplied=payments.c.unapplied - from_unapplied)
        )
    left, reversals = amount - from_unapplied, []
    allocated = uow.execute(
        sa.select(payment_allocations.c.id, payment_allocations.c.invoice_id, payment_allocations.c.amount)
        .join(invoices, invoices.c.id == payment_allocations.c.invoice_id)
        .where(payment_allocations.c.payment_id == payment.id)
        .order_by(invoices.c.due_date.desc(), invoices.c.issue_date.desc(), invoices.c.number.desc())
    ).all()
    # allocations + unapplied + earlier refunds make up the payment's amount, so this covers `left`
    for allocation in allocated:
        if not left:
            break
        take = min(left, allocation.amount)
        if take == allocation.amount:  # the payment no longer pays this invoice at all
            uow.execute(payment_allocations.delete().where(payment_allocations.c.id == allocation.id))
        else:
            uow.execute(
                payment_allocations.update()
                .where(payment_allocations.c.id == allocation.id)
                .values(amount=allocation.amount - take)
            )
        row = _reverse(uow, now, workspace_id, allocation.invoice_id, take, policy, refund_id)
        reversals.append(
            {
                "invoice_id": row.id,
                "number": row.number,
                "amount": take,
                "status": row.status,
                "balance": domain.balance(row.total, row.amount_paid, row.amount_credited),
            }
        )
        left -= take
    uow.execute(
        refunds.insert().values(
            id=refund_id,
            workspace_id=workspace_id,
            payment_id=payment.id,
            client_id=payment.client_id,
            amount=amount,
            currency=payment.currency,
            policy=policy,
            reason=reason,
            created_at=now,
        )
    )
    if reversals:  # what it took back from each invoice, for the invoice's page
        uow.execute(
            refund_reversals.insert(),
            [
                {
                    "workspace_id": workspace_id,
                    "client_id": payment.client_id,
                    "refund_id": refund_id,
                    "payment_id": payment.id,
                    "invoice_id": r["invoice_id"],
                    "amount": r["amount"],
                    "created_at": now,
                }
                for r in reversals
            ],
        )
    money_moved(uow, now, workspace_id, payment.client_id)
    view = _refund_view(uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).one())
    uow.publish(
        "refund.recorded",
        workspace_id,
        {
            **view,
            "from_unapplied": from_unapplied,
            "reversals": reversals,
            "recipients": portal_recipients(uow, payment.client_id),
        },
    )
    record_activity(
        uow,
        now,
        workspace_id,
        payment.client_id,
        "refund.recorded",
        f"Refund of {Money(amount, payment.currency).format()} recorded",
        {"refund_id": refund_id, "payment_id": payment.id},
    )
    return view


def list_refunds(
    uow, now: datetime, workspace_id: str, payment_id: str | None = None, client_id: str | None = None
) -> list[dict]:
    query = sa.select(refunds).where(refunds.c.workspace_id == workspace_id)
    if payment_id:
        query = query.where(refunds.c.payment_id == payment_id)
    if client_id:
        query = query.where(refunds.c.client_id == client_id)
    return [_refund_view(r) for r in uow.execute(query.order_by(refunds.c.created_at.desc(), refunds.c.id)).all()]
