"""Invoice disputes: a client disputes an owed invoice (or some of its lines) from the portal, and the
business adjusts it with a credit note or rejects it with a message. While a dispute is open the
invoice gets no reminders (schedules.run_reminders) and no automatic card payment (payment_plans
refuses autopay plans for it; payments cancels a queued autopay charge on `invoice.disputed`).

Each step is written into the invoice's comment thread and the client's activity timeline, and
published (`invoice.disputed`, `invoice.dispute_resolved`) through the outbox."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis.errors import Conflict, Invalid
from chassis.fields import text
from chassis.money import Money
from chassis.scope import require_role
from services.billing import domain
from services.billing.disputes import (
    check_adjustment,
    check_disputable,
    check_outcome,
    dispute_view,
    disputed_lines,
)
from services.billing.handlers.balances import apply_credit
from services.billing.handlers.common import (
    check_fields,
    get_scoped,
    new_id,
    page_bounds,
    portal_recipients,
    record_activity,
    workspace_row,
)
from services.billing.handlers.documents import _visible_to_client, issue_credit_note
from services.billing.tables import comments, invoice_disputes, invoices, line_items, recurring_invoices

__all__ = [
    "raise_invoice_dispute",
    "resolve_invoice_dispute",
    "get_invoice_dispute",
    "list_invoice_disputes",
    "open_dispute_of",
]

RESOLVE_FIELDS = {"amount", "message"}


def open_dispute_of(uow, invoice_id: str):
    return uow.execute(
        sa.select(invoice_disputes).where(
            invoice_disputes.c.invoice_id == invoice_id, invoice_disputes.c.status == "open"
        )
    ).first()


def _thread(uow, now, invoice, author_kind: str, author_name: str, body: str, notice: dict) -> None:
    """A step of the dispute in the invoice's comment thread, where client and business already talk:
    `body` in English, `notice` the same as data (its kind and figures) for a page to word."""
    uow.execute(
        comments.insert().values(
            id=new_id(),
            workspace_id=invoice.workspace_id,
            client_id=invoice.client_id,
            document_kind="invoice",
            document_id=invoice.id,
            author_kind=author_kind,
            author_name=author_name[:200],
            body=body[:5000],
            notice=notice,
            created_at=now,
        )
    )


def _autopay(uow, invoice) -> bool:
    """Whether the invoice is one a schedule charges automatically (so payments knows to resume it)."""
    if not invoice.recurring_id:
        return False
    return bool(
        uow.execute(
            sa.select(recurring_invoices.c.autopay).where(recurring_invoices.c.id == invoice.recurring_id)
        ).scalar()
    )


def _event(uow, dispute, invoice) -> dict:
    return {
        "dispute_id": dispute.id,
        "invoice_id": invoice.id,
        "number": invoice.number,
        "client_id": invoice.client_id,
        "reason": dispute.reason,
        "lines": list(dispute.lines or []),
        "balance": domain.balance(invoice.total, invoice.amount_paid, invoice.amount_credited),
        "currency": invoice.currency,
        "autopay": _autopay(uow, invoice),
    }


def _lines_label(lines: list[int]) -> str:
    return "the whole invoice" if not lines else "line" + ("s " if len(lines) > 1 else " ") + ", ".join(map(str, lines))


def raise_invoice_dispute(
    uow,
    now: datetime,
    workspace_id: str,
    client_id: str,
    contact_id: str,
    author_name: str,
    invoice_id: str,
    reason: str,
    lines: list | None = None,
) -> dict:
    """A client's contact disputes an invoice it owes on, as a whole or some of its lines, saying why."""
    require_role(domain.ACTING_ROLES, domain.ACTING_DETAIL)
    reason = text(reason, "reason", 2000, required=True).strip()
    author_name = text(author_name, "author_name", 200)
    invoice = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True, client_id=client_id)
    _visible_to_client(invoice, client_id, "invoice")
    owed = domain.balance(invoice.total, invoice.amount_paid, invoice.amount_credited)
    check_disputable(invoice.status, owed, invoice.archived_at is not None, invoice.kind)
    count = uow.execute(
        sa.select(sa.func.count())
        .select_from(line_items)
        .where(line_items.c.document_kind == "invoice", line_items.c.document_id == invoice_id)
    ).scalar_one()
    positions = disputed_lines(lines, count)
    if open_dispute_of(uow, invoice_id) is not None:
        raise Conflict(_ALREADY_OPEN, dispute="already open")
    dispute_id = new_id()
    try:
        with uow.conn.begin_nested():  # two at once: the partial unique index lets one in
            uow.execute(
                invoice_disputes.insert().values(
                    id=dispute_id,
                    workspace_id=workspace_id,
                    client_id=invoice.client_id,
                    invoice_id=invoice_id,
                    status="open",
                    reason=reason,
                    lines=positions,
                    contact_id=contact_id,
                    raised_by=author_name,
                    raised_at=now,
                )
            )
    except IntegrityError:
        raise Conflict(_ALREADY_OPEN, dispute="already open") from None
    dispute = _dispute(uow, workspace_id, dispute_id)
    _thread(
        uow,
        now,
        invoice,
        "client",
        author_name,
        f"Disputed {_lines_label(positions)}: {reason}",
        {"kind": "disputed", "lines": positions, "reason": reason},
    )
    record_activity(
        uow,
        now,
        workspace_id,
        invoice.client_id,
        "invoice.disputed",
        f"Invoice {invoice.number} disputed by {author_name}",
        {"invoice_id": invoice_id, "dispute_id": dispute_id},
    )
    uow.publish("invoice.disputed", workspace_id, {**_event(uow, dispute, invoice), "raised_by": author_name})
    return dispute_view(dispute, invoice.number)


_ALREADY_OPEN = "This invoice already has an open dispute; the business answers it before another can be raised."


def _dispute(uow, workspace_id: str, dispute_id: str, lock: bool = False, client_id: str | None = None):
    return get_scoped(
        uow, invoice_disputes, workspace_id, dispute_id, "invoice dispute", lock=lock, client_id=client_id
    )


def resolve_invoice_dispute(uow, now: datetime, workspace_id: str, dispute_id: str, outcome: str, data: dict) -> dict:
    """The business answers an open dispute: `adjust` issues a credit note for `amount` linked to the
    invoice and applies it to what the invoice owes (any rest is the client's credit); `reject` keeps
    the invoice as it is, with a `message` saying why. Either way reminders and autopay resume."""
    check_fields(data, RESOLVE_FIELDS)
    status = check_outcome(outcome)
    dispute = _dispute(uow, workspace_id, dispute_id, lock=True)
    if dispute.status != "open":
        raise Conflict(f"This dispute was {dispute.status} already.", status=dispute.status)
    invoice = get_scoped(uow, invoices, workspace_id, dispute.invoice_id, "invoice", lock=True)
    message = text(data.get("message", ""), "message", 2000, required=status == "rejected", null="").strip()
    credit = None
    if status == "adjusted":
        amount = check_adjustment(data.get("amount"), invoice.total)
        credit = issue_credit_note(
            uow,
            now,
            workspace_id,
            {
                "client_id": invoice.client_id,
                "invoice_id": invoice.id,
                "amount": amount,
                "reason": message or f"Adjustment of disputed invoice {invoice.number}",
            },
        )
        owed = domain.balance(invoice.total, invoice.amount_paid, invoice.amount_credited)
        if invoice.status in domain.OPEN_STATUSES and owed > 0 and credit["currency"] == invoice.currency:
            apply_credit(uow, now, workspace_id, invoice.id, min(amount, owed))
    uow.execute(
        invoice_disputes.update()
        .where(invoice_disputes.c.id == dispute_id)
        .values(
            status=status,
            resolution_message=message,
            credit_note_id=credit["id"] if credit else None,
            credit_amount=credit["total"] if credit else None,
            resolved_at=now,
        )
    )
    dispute = _dispute(uow, workspace_id, dispute_id)
    invoice = get_scoped(uow, invoices, workspace_id, dispute.invoice_id, "invoice")
    business = workspace_row(uow, workspace_id).name
    if credit:
        credited = Money(credit["total"], credit["currency"]).format()
        body = f"Dispute resolved: adjusted by credit note {credit['number']} for {credited}"
        summary = f"Dispute of invoice {invoice.number} adjusted by credit note {credit['number']}"
        notice = {
            "kind": "dispute_adjusted",
            "credit_note": credit["number"],
            "amount": credit["total"],
            "currency": credit["currency"],
            "message": message,
        }
    else:
        body, summary = "Dispute rejected", f"Dispute of invoice {invoice.number} rejected"
        notice = {"kind": "dispute_rejected", "message": message}
    _thread(uow, now, invoice, "business", business, body + (f": {message}" if message else ""), notice)
    record_activity(
        uow,
        now,
        workspace_id,
        invoice.client_id,
        "invoice.dispute_resolved",
        summary,
        {"invoice_id": invoice.id, "dispute_id": dispute_id, "outcome": status},
    )
    uow.publish(
        "invoice.dispute_resolved",
        workspace_id,
        {
            **_event(uow, dispute, invoice),
            "outcome": status,
            "message": message,
            "credit_note_id": dispute.credit_note_id,
            "credit_amount": dispute.credit_amount,
            "credit_note_number": credit["number"] if credit else None,
            "credit_currency": credit["currency"] if credit else None,
            "recipients": portal_recipients(uow, invoice.client_id),  # documents emails them the outcome
        },
    )
    return dispute_view(dispute, invoice.number)


def get_invoice_dispute(uow, now: datetime, workspace_id: str, dispute_id: str, client_id: str | None = None) -> dict:
    dispute = _dispute(uow, workspace_id, dispute_id, client_id=client_id)
    number = uow.execute(sa.select(invoices.c.number).where(invoices.c.id == dispute.invoice_id)).scalar()
    return dispute_view(dispute, number)


STATUSES = ("all", "open", "adjusted", "rejected")


def list_invoice_disputes(uow, now: datetime, workspace_id: str, filters: dict | None = None) -> dict:
    """The workspace's invoice disputes, newest first; by status (open ones to answer) and client."""
    filters = filters or {}
    status = filters.get("status") or "all"
    if status not in STATUSES:
        raise Invalid("Unknown status filter.", status=f"one of {', '.join(STATUSES)}")
    limit, offset = page_bounds(filters.get("limit", 50), filters.get("offset", 0), 200)
    query = (
        sa.select(invoice_disputes, invoices.c.number)
        .join(invoices, invoices.c.id == invoice_disputes.c.invoice_id)
        .where(invoice_disputes.c.workspace_id == workspace_id)
    )
    if status != "all":
        query = query.where(invoice_disputes.c.status == status)
    if filters.get("client_id"):
        query = query.where(invoice_disputes.c.client_id == str(filters["client_id"]))
    if filters.get("invoice_id"):
        query = query.where(invoice_disputes.c.invoice_id == str(filters["invoice_id"]))
    rows = uow.execute(
        query.order_by(invoice_disputes.c.raised_at.desc(), invoice_disputes.c.id).limit(limit).offset(offset)
    ).all()
    return {"items": [dispute_view(r, r.number) for r in rows], "limit": limit, "offset": offset}
