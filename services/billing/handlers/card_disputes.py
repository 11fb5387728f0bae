"""Card disputes (chargebacks a cardholder raises with their bank), as payments' events report them:
only the dispute's status is kept on the payment, with an activity entry and an event when it
changes. No money moves here: a lost dispute comes back as a refund (refunds.py). Invoice disputes,
which a client raises in the portal, are disputes.py."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from services.billing.handlers.common import check_fields, record_activity
from services.billing.handlers.payments import _payment_view
from services.billing.handlers.refunds import _card_payment, _text_field
from services.billing.tables import payments

__all__ = ["record_dispute"]

DISPUTE_FIELDS = {"dispute_id", "payment_id", "amount", "currency", "client_id", "reason", "status"}


def record_dispute(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    """A card payment disputed (chargeback), or its dispute's status changed. Only the status is kept;
    money moves if the dispute is lost and the payment is refunded."""
    check_fields(data, DISPUTE_FIELDS)
    status = _text_field(data, "status", 30, required=True)
    reason = _text_field(data, "reason", 200)
    payment = _card_payment(uow, workspace_id, data)
    if payment.dispute_status != status:  # the same status again is a replay: nothing to do
        uow.execute(payments.update().where(payments.c.id == payment.id).values(dispute_status=status))
        summary = (
            f"Payment disputed: {reason}"
            if payment.dispute_status is None
            else f"Payment dispute {status.replace('_', ' ')}: {reason}"
        )
        record_activity(
            uow,
            now,
            workspace_id,
            payment.client_id,
            "payment.disputed",
            summary,
            {"payment_id": payment.id, "dispute_id": data.get("dispute_id"), "status": status},
        )
        uow.publish(
            "payment.dispute_recorded",
            workspace_id,
            {
                "payment_id": payment.id,
                "dispute_id": data.get("dispute_id"),
                "client_id": payment.client_id,
                "amount": data.get("amount"),
                "currency": payment.currency,
                "reason": reason,
                "status": status,
                "previous_status": payment.dispute_status,
            },
        )
    return _payment_view(uow, uow.execute(sa.select(payments).where(payments.c.id == payment.id)).one())
