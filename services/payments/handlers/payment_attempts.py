"""Payment attempts: one per "Proceed to payment", keyed by the form so a double submit finds the same
attempt. `start_payment` asks billing to plan the payment (which invoices, how much, credit applied
first, all checked there) and keeps the plan as an attempt. The view and the scoped lookup here are
shared by charging, autopay and refunds, and `_event` is the attempt as every payment.* event carries
it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis.errors import Invalid, NotFound
from chassis.fields import text
from chassis.scope import require_role
from services.payments.handlers.common import PAYING_DETAIL, PAYING_ROLES, iso
from services.payments.tables import attempts, payment_methods


def attempt_view(row) -> dict:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "status": row.status,
        "amount": row.amount,
        "currency": row.currency,
        "allocations": row.allocations,
        "applied": row.applied,
        "failure_message": row.failure_message,
        "off_session": row.off_session,
        "client_secret": row.client_secret if row.status == "requires_action" else None,
        "payment_intent_id": row.payment_intent_id,
        "payment_method_id": row.payment_method_id,
        "refunded": row.refunded,
        "dispute_status": row.dispute_status,
        "created_at": iso(row.created_at),
        "succeeded_at": iso(row.succeeded_at),
    }


def _attempt(uow, workspace_id: str, attempt_id: str, client_id: str | None = None, lock: bool = False):
    """One attempt of the workspace (and of the client, for the portal): another's looks missing."""
    query = sa.select(attempts).where(attempts.c.id == str(attempt_id), attempts.c.workspace_id == workspace_id)
    if client_id is not None:
        query = query.where(attempts.c.client_id == client_id)
    if lock and uow.conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = uow.execute(query).first()
    if row is None:
        raise NotFound("No such payment.")
    return row


def get_attempt(uow, now, workspace_id: str, attempt_id: str, client_id: str | None = None) -> dict:
    """The attempt, and `method`: how it is paid ("card", "sepa_debit"), once a method is chosen (else
    None), so a page can say what only a bank debit does (days with the bank before it arrives)."""
    row = _attempt(uow, workspace_id, attempt_id, client_id)
    method = None
    if row.payment_method_id:
        method = uow.execute(
            sa.select(payment_methods.c.type).where(
                payment_methods.c.id == row.payment_method_id, payment_methods.c.workspace_id == workspace_id
            )
        ).scalar()
    return {**attempt_view(row), "method": method}


def _event(row, **extra) -> dict:
    return {
        "payment_id": row.id,
        "client_id": row.client_id,
        "amount": row.amount,
        "currency": row.currency,
        "allocations": [{"invoice_id": a["invoice_id"], "amount": a["amount"]} for a in row.allocations],
        **extra,
    }


def start_payment(
    uow, now, billing, workspace_id: str, client_id: str, request: dict, request_key: str, off_session: bool = False
) -> dict:
    """Turn the reviewed selection into an attempt. Billing checks everything (the invoices are the
    client's and open, the amount, the minimum, the currency) and applies credit first, once per key."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    if not isinstance(request_key, str) or not request_key.strip():
        raise Invalid("The payment form is missing its key; reload the page.", key="required")
    text(request_key, "key", 100)  # refuses an overlong key or a NUL; a good one is kept as given
    existing = uow.execute(
        sa.select(attempts).where(
            attempts.c.workspace_id == workspace_id,
            attempts.c.client_id == client_id,
            attempts.c.request_key == request_key,
        )
    ).first()
    if existing is not None:  # a double submit, or a retried call
        return attempt_view(existing)
    if not isinstance(request, dict):
        raise Invalid("Say what to pay.", request="not an object")
    plan = billing.plan_payment(
        workspace_id, client_id, {**request, "key": f"payment:{client_id}:{request_key}"}, commit=True
    )
    attempt_id = str(uuid.uuid4())
    try:
        with uow.conn.begin_nested():
            uow.execute(
                attempts.insert().values(
                    id=attempt_id,
                    workspace_id=workspace_id,
                    client_id=client_id,
                    request_key=request_key,
                    currency=plan["currency"],
                    amount=plan["amount"],
                    allocations=[
                        {"invoice_id": a["invoice_id"], "number": a.get("number", ""), "amount": a["amount"]}
                        for a in plan["allocations"]
                    ],
                    # what balance went where, shown on the card page: it was applied already
                    applied={**(plan.get("applied") or {}), "invoices": plan.get("applied_to") or []},
                    status="succeeded" if plan["amount"] == 0 else "open",
                    tries=0,
                    off_session=off_session,
                    stripe_account=plan.get("stripe_account"),
                    failure_message="",
                    refunded=0,
                    created_at=now,
                    updated_at=now,
                    succeeded_at=now if plan["amount"] == 0 else None,
                )
            )
    except IntegrityError:  # the same key submitted concurrently: the other one won
        pass
    row = uow.execute(
        sa.select(attempts).where(
            attempts.c.workspace_id == workspace_id,
            attempts.c.client_id == client_id,
            attempts.c.request_key == request_key,
        )
    ).one()
    return attempt_view(row)
