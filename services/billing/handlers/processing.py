"""Bank debits in flight, as payments reports them: processing from payment.processing until
payment.succeeded or payment.failed. Every handler is idempotent and order-proof: a settled row is
kept, so a processing event that comes after (or again) never makes the invoice "Processing" again,
and a payment already in the ledger is never counted as processing."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis.errors import Conflict
from services.billing.handlers.common import iso
from services.billing.tables import invoices, payments, processing_payments

ACTIVE = processing_payments.c.settled_at.is_(None)


def _try(data: dict) -> int:
    value = data.get("try", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _rows(uow, workspace_id: str, data: dict, settled_at: datetime | None, now: datetime) -> int:
    added = 0
    for allocation in data.get("allocations") or []:
        invoice = uow.execute(
            sa.select(invoices.c.id).where(
                invoices.c.id == allocation["invoice_id"], invoices.c.workspace_id == workspace_id
            )
        ).first()
        if invoice is None or not data.get("client_id"):
            continue
        try:
            with uow.conn.begin_nested():
                uow.execute(
                    processing_payments.insert().values(
                        payment_id=data["payment_id"],
                        try_number=_try(data),
                        invoice_id=allocation["invoice_id"],
                        workspace_id=workspace_id,
                        client_id=data["client_id"],
                        amount=allocation["amount"],
                        currency=data["currency"],
                        method=data.get("method") or "sepa_debit",
                        started_at=now,
                        settled_at=settled_at,
                    )
                )
            added += 1
        except IntegrityError:
            pass  # a redelivery, or this try failed already
    return added


def payment_processing(uow, now: datetime, workspace_id: str, data: dict) -> int:
    """payment.processing: each invoice the debit pays shows the amount as processing."""
    if not data.get("payment_id"):
        return 0
    if uow.execute(sa.select(payments.c.id).where(payments.c.id == data["payment_id"])).first() is not None:
        return 0  # it succeeded already (its event came first): never back to processing
    return _rows(uow, workspace_id, data, None, now)


# Built once; the payment and the time go as parameters (every card payment runs it).
_SETTLE_PROCESSING = processing_payments.update().where(
    processing_payments.c.payment_id == sa.bindparam("of_payment"), ACTIVE
)


def payment_succeeded(uow, now: datetime, workspace_id: str, data: dict) -> None:
    """payment.succeeded: the money is in the ledger now (recorded in the same transaction). Only a
    bank debit is ever processing (payments reports no card payment so), so a card's needs no update."""
    if data.get("payment_id") and data.get("method") != "card":
        uow.execute(_SETTLE_PROCESSING, {"of_payment": data["payment_id"], "settled_at": now})


def payment_failed(uow, now: datetime, workspace_id: str, data: dict) -> None:
    """payment.failed: the invoice is open again. The failed try is marked settled even when its
    processing event has not come yet, so that event, arriving later, finds it and changes nothing."""
    if not data.get("payment_id"):
        return
    uow.execute(
        processing_payments.update()
        .where(
            processing_payments.c.payment_id == data["payment_id"],
            processing_payments.c.try_number == _try(data),
            ACTIVE,
        )
        .values(settled_at=now)
    )
    _rows(uow, workspace_id, data, now, now)


def processing_by_invoice(uow, invoice_ids) -> dict[str, int]:
    ids = list(invoice_ids)
    if not ids:
        return {}
    rows = uow.execute(
        sa.select(processing_payments.c.invoice_id, sa.func.sum(processing_payments.c.amount))
        .where(processing_payments.c.invoice_id.in_(ids), ACTIVE)
        .group_by(processing_payments.c.invoice_id)
    ).all()
    return {invoice_id: int(amount) for invoice_id, amount in rows}


def processing_column(invoice_id: sa.ColumnElement) -> sa.Label:
    """What of an invoice is still with the bank, as a column of the caller's own statement."""
    amount = sa.func.coalesce(sa.func.sum(processing_payments.c.amount), 0)
    in_flight = sa.select(amount).where(processing_payments.c.invoice_id == invoice_id, ACTIVE)
    return in_flight.scalar_subquery().label("processing")


def refuse_if_processing(uow, rows) -> None:
    """A second payment of an invoice whose debit is still with the bank would pay it twice."""
    busy = processing_by_invoice(uow, [r.id for r in rows])
    numbers = [r.number for r in rows if busy.get(r.id)]
    if numbers:
        raise Conflict(
            f"A payment of invoice {', '.join(numbers)} is still processing with the bank; "
            "it can be paid again only if that payment fails.",
            invoice_ids="payment processing",
        )


def list_processing(uow, now: datetime, workspace_id: str, client_id: str) -> list[dict]:
    """The client's debits in flight, one entry per payment, with the invoices they pay."""
    rows = uow.execute(
        sa.select(processing_payments, invoices.c.number)
        .join(invoices, invoices.c.id == processing_payments.c.invoice_id)
        .where(
            processing_payments.c.workspace_id == workspace_id,
            processing_payments.c.client_id == client_id,
            ACTIVE,
        )
        .order_by(processing_payments.c.started_at.desc(), processing_payments.c.payment_id)
    ).all()
    found: dict[str, dict] = {}
    for r in rows:
        entry = found.setdefault(
            r.payment_id,
            {
                "payment_id": r.payment_id,
                "amount": 0,
                "currency": r.currency,
                "method": r.method,
                "started_at": iso(r.started_at),
                "invoices": [],
            },
        )
        entry["amount"] += r.amount
        entry["invoices"].append({"invoice_id": r.invoice_id, "number": r.number, "amount": r.amount})
    return list(found.values())
