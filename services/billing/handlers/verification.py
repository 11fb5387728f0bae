"""Verification codes: each invoice, quote, credit note and receipt gets one when it is created, its
PDF prints it, and `verify_document` answers what the paper must match (clients/verification.py).

The lookup by code spans every workspace (whoever holds the paper is nobody the portal knows), so it
runs in the system scope; it answers only what proves the document (the business, the kind, number,
date, amounts and status, and the bank account to pay), never the client's name or the lines. The
document's and its client's ids come with it for the gateway alone, which shows them to nobody: a
reader signed in as that client gets a link to the document in its portal."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from chassis.errors import NotFound
from chassis.prepared import Prepared, bound
from clients import verification
from services.billing import domain
from services.billing.handlers.common import iso, settings_of, workspace_row, workspace_today
from services.billing.tables import clients, credit_notes, invoices, payments, quotes, refunds, verification_codes

__all__ = ["issue_code", "code_of", "codes_of", "code_column", "grouped", "verify_document"]

KINDS = ("invoice", "quote", "credit_note", "receipt")
UNKNOWN = "No document has this verification code."


# Built once and prepared (chassis/prepared.py): every invoice, quote and payment sends it.
_NEW_CODE = Prepared(
    "billing_verification_code_new",
    verification_codes.insert().values(
        bound(verification_codes, "code", "workspace_id", "client_id", "document_kind", "document_id", "created_at")
    ),
)


def issue_code(
    uow, now: datetime, workspace_id: str, client_id: str, kind: str, document_id: str, at_commit: bool = False
) -> str:
    """A new document's code, in the document's own transaction (grouped, as printed). `at_commit`: for
    a document whose code nothing reads back in that transaction (a receipt), it is written as the
    transaction commits, with the other codes it issues so."""
    code = verification.new_code()
    row = {
        "code": code,
        "workspace_id": workspace_id,
        "client_id": client_id,
        "document_kind": kind,
        "document_id": document_id,
        "created_at": now,
    }
    if at_commit:
        uow.insert_at_commit(verification_codes, row, _NEW_CODE)
    else:
        uow.execute(_NEW_CODE, row)
    return verification.grouped(code)


def code_column(kind: str, document_id: sa.ColumnElement) -> sa.Label:
    """A listed document's code as a column of the listing's own statement (no query of its own)."""
    found = verification_codes.c.document_kind == kind, verification_codes.c.document_id == document_id
    return sa.select(verification_codes.c.code).where(*found).scalar_subquery().label("verification_code")


def grouped(code: str | None) -> str | None:
    """A code as printed, or None for a document the code was never issued for."""
    return None if code is None else verification.grouped(code)


def code_of(uow, kind: str, document_id: str) -> str | None:
    """A document's code, grouped as printed (None only for a document the code was never issued for)."""
    return codes_of(uow, kind, [document_id]).get(document_id)


def codes_of(uow, kind: str, document_ids: list[str]) -> dict[str, str]:
    """The codes of many documents of one kind in one query (a listing's page)."""
    if not document_ids:
        return {}
    rows = uow.execute(
        sa.select(verification_codes.c.document_id, verification_codes.c.code).where(
            verification_codes.c.document_kind == kind, verification_codes.c.document_id.in_(document_ids)
        )
    ).all()
    return {row.document_id: verification.grouped(row.code) for row in rows}


def verify_document(uow, now: datetime, text: str) -> dict:
    """What the document with this code says, for comparing with a paper copy: 404 for a code that is
    malformed (answered before any query) or unknown. Costs one probe of the code's primary key, then
    the document's row, its workspace and its client's locale and time zone."""
    code = verification.parse(text)
    found = (
        uow.execute(sa.select(verification_codes).where(verification_codes.c.code == code)).first() if code else None
    )
    if found is None:
        raise NotFound(UNKNOWN)
    ws = workspace_row(uow, found.workspace_id)
    legal = settings_of(ws).legal
    reader = uow.execute(
        sa.select(clients.c.locale, clients.c.timezone).where(clients.c.id == found.client_id)
    ).one()  # how the page formats, as the paper did: the client's language and time zone, not its name
    facts = _FACTS[found.document_kind](uow, found.document_id, workspace_today(ws, now))
    return {
        "code": verification.grouped(found.code),
        "kind": found.document_kind,
        "workspace_id": found.workspace_id,  # the page wears the business's brand
        # whose document it is, never printed: the page links a signed-in client to its own document
        "client_id": found.client_id,
        "document_id": found.document_id,
        "business_name": ws.name,
        "iban": legal.iban,
        "bic": legal.bic,
        "locale": reader.locale,
        "timezone": reader.timezone,
        **facts,
    }


def _invoice(uow, document_id: str, today) -> dict:
    row = uow.execute(sa.select(invoices).where(invoices.c.id == document_id)).one()
    owed = 0 if row.status == "void" else domain.balance(row.total, row.amount_paid, row.amount_credited)
    return {
        "number": row.number,
        "date": iso(row.issue_date),
        "due_date": iso(row.due_date),
        "currency": row.currency,
        "total": row.total,
        "balance": owed,
        "status": _plain(domain.display_status(row.status, row.due_date, owed, today)),
    }


def _plain(status: str) -> str:
    """What the holder asks of an invoice is whether it is paid: sent or viewed, it is unpaid."""
    return "unpaid" if status in ("sent", "viewed") else status


def _quote(uow, document_id: str, today) -> dict:
    row = uow.execute(sa.select(quotes).where(quotes.c.id == document_id)).one()
    status = domain.quote_display_status(row.status, row.expiry_date, today)
    return {
        "number": row.number,
        "date": iso(row.issue_date),
        "expiry_date": iso(row.expiry_date),
        "currency": row.currency,
        "total": row.total,
        "status": "awaiting_answer" if status == "sent" else status,
    }


def _credit_note(uow, document_id: str, today) -> dict:
    row = uow.execute(sa.select(credit_notes).where(credit_notes.c.id == document_id)).one()
    return {
        "number": row.number,
        "date": iso(row.issue_date),
        "currency": row.currency,
        "total": row.total,
        "status": "issued",  # a credit note is never withdrawn: it stands once issued
    }


def _receipt(uow, document_id: str, today) -> dict:
    row = uow.execute(sa.select(payments).where(payments.c.id == document_id)).one()
    refunded = uow.execute(
        sa.select(sa.func.coalesce(sa.func.sum(refunds.c.amount), 0)).where(refunds.c.payment_id == row.id)
    ).scalar_one()
    return {
        "number": row.id[:8].upper(),  # as the receipt prints it
        "date": iso(row.received_at),  # a moment: shown in the client's time zone
        "currency": row.currency,
        "total": row.amount,
        "refunded": int(refunded),
        "status": "refunded" if refunded >= row.amount else "partially_refunded" if refunded else "received",
    }


_FACTS = {"invoice": _invoice, "quote": _quote, "credit_note": _credit_note, "receipt": _receipt}
