"""Credit notes as a document: what one says (its lines, its reason, the invoice it credits, its
verification code), for the business and for its client in the portal; and a client's own credit
notes, listed with the credit the client has not used yet.

Billing keeps a client's credit as one balance per currency: the client's credit notes and the card
money it paid beyond what it owed, less what was applied to invoices (summaries.py). Applying credit
draws on that balance, not on one credit note, so a credit note says what it gave and the listing
says what of the client's credit is still available (the dashboard's figure).

Given a client (the portal), a credit note of another client is not found, exactly as an unknown one;
and the invoice it credits is named by its number, with its id only while the client can open that
invoice (issued and not archived)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from chassis.errors import Invalid
from services.billing.handlers.common import (
    check_fields,
    client_row,
    client_snapshot,
    get_scoped,
    iso,
    lines_and_taxes,
    page_bounds,
    workspace_row,
)
from services.billing.handlers.summaries import AVAILABLE, params
from services.billing.handlers.verification import code_column, code_of, grouped
from services.billing.tables import credit_notes, invoices

__all__ = ["credit_note_view", "get_credit_note", "list_client_credit_notes"]

LINES_KIND = "credit"  # the credit notes' document_kind in line_items
LIST_FILTERS = {"invoice_id", "limit", "offset"}
ORDER = (credit_notes.c.issue_date.desc(), credit_notes.c.number.desc())


def _invoice_shown(status: str | None, archived_at, within_client: bool) -> bool:
    """Whether the credited invoice's id is given: always to the business; to the client only for an
    invoice it can open (a draft or an archived invoice does not exist for it)."""
    return status is not None and (not within_client or (status != "draft" and archived_at is None))


def credit_note_view(uow, row, client, code: str | None, within_client: bool = False) -> dict:
    """A credit note whole, as its PDF and its page show it: the client as printed now (a credit note
    keeps no copy of it), the invoice it credits (BT-25; its id only where `_invoice_shown`) and its
    lines."""
    invoice = (
        uow.execute(
            sa.select(invoices.c.number, invoices.c.status, invoices.c.archived_at).where(
                invoices.c.id == row.invoice_id, invoices.c.client_id == row.client_id
            )
        ).first()
        if row.invoice_id
        else None
    )
    shown = invoice is not None and _invoice_shown(invoice.status, invoice.archived_at, within_client)
    return {
        "id": row.id,
        "number": row.number,
        "client_id": row.client_id,
        "currency": row.currency,
        "issue_date": iso(row.issue_date),
        "total": row.total,
        "subtotal": row.subtotal,
        "tax_total": row.tax_total,
        "reason": row.reason,
        "client": client_snapshot(uow, client),
        "invoice_id": row.invoice_id if shown else None,
        "invoice_number": invoice.number if invoice is not None else None,
        "verification_code": code,
        "created_at": iso(row.created_at),
        **lines_and_taxes(uow, LINES_KIND, row.id, row.tax_total),
    }


def get_credit_note(uow, now: datetime, workspace_id: str, credit_note_id: str, client_id: str | None = None) -> dict:
    """One credit note of the workspace, or (the portal) of the client; its client's locale and time zone
    and its business's name come with it, for its page and its PDF."""
    row = get_scoped(uow, credit_notes, workspace_id, credit_note_id, "credit note", client_id=client_id)
    client = client_row(uow, workspace_id, row.client_id)
    view = credit_note_view(uow, row, client, code_of(uow, "credit_note", row.id), within_client=client_id is not None)
    view.update(locale=client.locale, timezone=client.timezone, business_name=workspace_row(uow, workspace_id).name)
    return view


def list_client_credit_notes(
    uow, now: datetime, workspace_id: str, client_id: str, filters: dict | None = None
) -> dict:
    """The client's credit notes, newest first (`invoice_id`: those crediting that invoice; `limit` 1 to
    100, default 50, and `offset`), how many there are, and the client's credit not yet applied, in its
    currency. Without a client of the workspace: NotFound, never the workspace's credit notes."""
    filters = filters if filters is not None else {}
    check_fields(filters, LIST_FILTERS)
    client = client_row(uow, workspace_id, client_id)
    limit, offset = page_bounds(filters.get("limit", 50), filters.get("offset", 0), 100)
    mine = [credit_notes.c.workspace_id == workspace_id, credit_notes.c.client_id == client.id]
    invoice_id = filters.get("invoice_id")
    if invoice_id is not None:
        if not isinstance(invoice_id, str) or not invoice_id:
            raise Invalid("invoice_id is an invoice's id.", invoice_id="not an id")
        mine.append(credit_notes.c.invoice_id == invoice_id)
    total = uow.execute(sa.select(sa.func.count()).select_from(credit_notes).where(*mine)).scalar_one()
    rows = uow.execute(
        sa.select(
            credit_notes,
            code_column("credit_note", credit_notes.c.id),
            invoices.c.number.label("invoice_number"),
            invoices.c.status.label("invoice_status"),
            invoices.c.archived_at.label("invoice_archived_at"),
        )
        .outerjoin(invoices, (invoices.c.id == credit_notes.c.invoice_id) & (invoices.c.client_id == client.id))
        .where(*mine)
        .order_by(*ORDER)
        .limit(limit)
        .offset(offset)
    ).all()
    available = uow.execute(AVAILABLE, params(None, client.id, client.currency)).one()
    return {
        "items": [_listed(r) for r in rows],
        "total": int(total),
        "limit": limit,
        "offset": offset,
        "credit_available": {"amount": int(available.credit), "currency": client.currency},
        # how the reader formats the page: one call renders it
        "client": {
            "name": client.name,
            "currency": client.currency,
            "locale": client.locale,
            "timezone": client.timezone,
        },
    }


def _listed(row) -> dict:
    """A credit note as a list shows it: no lines, no client."""
    shown = _invoice_shown(row.invoice_status, row.invoice_archived_at, within_client=True)
    return {
        "id": row.id,
        "number": row.number,
        "currency": row.currency,
        "issue_date": iso(row.issue_date),
        "subtotal": row.subtotal,
        "tax_total": row.tax_total,
        "total": row.total,
        "reason": row.reason,
        "invoice_id": row.invoice_id if shown else None,
        "invoice_number": row.invoice_number,
        "verification_code": grouped(row.verification_code),
        "created_at": iso(row.created_at),
    }
