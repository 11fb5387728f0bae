"""Card disputes (chargebacks) as Stripe reports them: each charge.dispute.* event records the dispute
or its new status, marks its payment and publishes payment.disputed, once per status; the business
lists its workspace's disputes. The disputes a client raises against an invoice are billing's."""

from __future__ import annotations

import sqlalchemy as sa

from services.payments.handlers.common import iso
from services.payments.tables import attempts, disputes


def _on_dispute(uow, now, dispute: dict) -> str:
    intent_id = dispute.get("payment_intent")
    row = (
        uow.execute(sa.select(attempts).where(attempts.c.payment_intent_id == intent_id)).first() if intent_id else None
    )
    if row is None:
        return "ignored: no such payment"
    known = uow.execute(sa.select(disputes).where(disputes.c.id == dispute["id"])).first()
    status = str(dispute.get("status", "needs_response"))[:40]
    if known is not None and known.status == status:
        return "duplicate: dispute unchanged"
    values = {"status": status, "updated_at": now}
    if known is None:
        uow.execute(
            disputes.insert().values(
                id=dispute["id"],
                attempt_id=row.id,
                workspace_id=row.workspace_id,
                amount=dispute["amount"],
                currency=row.currency,
                reason=str(dispute.get("reason") or "")[:100],
                created_at=now,
                **values,
            )
        )
    else:
        uow.execute(disputes.update().where(disputes.c.id == dispute["id"]).values(**values))
    uow.execute(attempts.update().where(attempts.c.id == row.id).values(dispute_status=status))
    uow.publish(
        "payment.disputed",
        row.workspace_id,
        {
            "dispute_id": dispute["id"],
            "payment_id": row.id,
            "client_id": row.client_id,
            "amount": dispute["amount"],
            "currency": row.currency,
            "reason": str(dispute.get("reason") or ""),
            "status": status,
        },
    )
    return f"dispute {status}"


def list_disputes(uow, now, workspace_id: str) -> list[dict]:
    rows = uow.execute(
        sa.select(disputes, attempts.c.client_id)
        .join(attempts, attempts.c.id == disputes.c.attempt_id)
        .where(disputes.c.workspace_id == workspace_id)
        .order_by(disputes.c.created_at.desc())
    ).all()
    return [
        {
            "id": r.id,
            "payment_id": r.attempt_id,
            "client_id": r.client_id,
            "amount": r.amount,
            "currency": r.currency,
            "reason": r.reason,
            "status": r.status,
            "created_at": iso(r.created_at),
            "updated_at": iso(r.updated_at),
        }
        for r in rows
    ]
