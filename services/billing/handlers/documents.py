"""Invoices, quotes, credit notes and the comment threads on them."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from chassis.errors import Conflict, Forbidden, Invalid, NotFound
from chassis.fields import REFUSE, flag, text
from chassis.prepared import Prepared
from chassis.scope import require_role
from chassis.sql import json_rows, rows_from_json
from clients import verification
from clients.billing import DOCUMENT_NUMBERS_MAX
from services.billing import domain, revisions
from services.billing.disputes import dispute_view
from services.billing.handlers.common import (
    CLIENT_AS_PRINTED,
    PRIMARY_FIRST,
    allocate_number,
    check_fields,
    check_reverse_charge,
    client_row,
    client_snapshot,
    get_scoped,
    iso,
    lines_and_taxes,
    lines_of,
    load_lines,
    new_id,
    page_bounds,
    parse_date,
    parse_lines,
    portal_recipients,
    record_activity,
    save_lines,
    settings_of,
    snapshot_of,
    today_in,
    workspace_row,
    workspace_today,
)
from services.billing.handlers.credit_notes import LINES_KIND, credit_note_view
from services.billing.handlers.engagement import record_signal
from services.billing.handlers.processing import processing_column
from services.billing.handlers.summaries import money_moved
from services.billing.handlers.verification import code_column, code_of, codes_of, grouped, issue_code
from services.billing.lifecycle import Invoice, Quote
from services.billing.settings_model import parse_settings
from services.billing.tables import (
    clients,
    comments,
    contacts,
    credit_applications,
    credit_notes,
    invoice_disputes,
    invoice_number_suffixes,
    invoices,
    line_items,
    payment_allocations,
    payments,
    quote_versions,
    quotes,
    refund_reversals,
    workspaces,
)

__all__ = [
    "create_invoice",
    "update_invoice",
    "send_invoice",
    "void_invoice",
    "archive_invoice",
    "mark_invoice_viewed",
    "invoices_changed",
    "view_invoice",
    "get_invoice",
    "invoice_view",
    "document_numbers",
    "create_quote",
    "update_quote",
    "send_quote",
    "accept_quote",
    "reject_quote",
    "convert_quote",
    "get_quote",
    "view_quote",
    "list_quotes",
    "request_quote_changes",
    "revise_quote",
    "list_quote_versions",
    "issue_credit_note",
    "list_credit_notes",
    "add_comment",
    "list_comments",
]

LEGAL_FIELDS = ("supply_date", "service_period_start", "service_period_end", "tax_exemption_reason")
REVERSE_CHARGE = "Reverse charge"  # the exemption reason of category AE (the documents print it translated)
INVOICE_FIELDS = {
    "client_id",
    "kind",
    "issue_date",
    "due_date",
    "payment_terms_days",
    "lines",
    "notes",
    "terms",
    "send",
    *LEGAL_FIELDS,
}
QUOTE_FIELDS = {"client_id", "issue_date", "expiry_date", "lines", "notes", "terms", "send"}
REVISION_FIELDS = {"expiry_date", "lines", "notes", "terms"}
CREDIT_FIELDS = {"client_id", "issue_date", "lines", "amount", "reason", "invoice_id"}


def _text(data: dict, key: str, limit: int = 5000, null: str | None = None) -> str:
    """The text sent for `key` ('' when left out); null only where `null` says what it means."""
    return _given_text(data.get(key, ""), key, limit, null=null)


def _given_text(value, name: str, limit: int, *, required: bool = False, null: str | None = None) -> str:
    """chassis.fields.text where the answer is always text: null is refused, or stands for `null`."""
    return text(value, name, limit, required=required, null=REFUSE if null is None else null) or ""


def _dates(data: dict, today, terms_default: int):
    issue = parse_date(data.get("issue_date"), "issue_date") or today
    terms = data.get("payment_terms_days")
    if terms is not None and (not isinstance(terms, int) or isinstance(terms, bool) or not 0 <= terms <= 365):
        raise Invalid("payment_terms_days is 0 to 365.", payment_terms_days="out of range")
    due = parse_date(data.get("due_date"), "due_date") or issue + timedelta(
        days=terms if terms is not None else terms_default
    )
    if due < issue:
        raise Invalid("The due date cannot be before the issue date.", due_date="before issue date")
    return issue, due, terms


def _content_changes(uow, kind: str, row, data: dict) -> dict:
    """New lines (saved, with recomputed totals) and texts for an invoice or quote being edited."""
    values: dict[str, object] = {}
    if "lines" in data:
        ws = workspace_row(uow, row.workspace_id)
        lines = check_reverse_charge(ws, client_row(uow, row.workspace_id, row.client_id), parse_lines(data["lines"]))
        totals = domain.Totals.of(lines)
        values.update(
            subtotal=totals.subtotal, discount_total=totals.discount, tax_total=totals.tax, total=totals.total
        )
        save_lines(uow, kind, row.id, lines)
    for key in ("notes", "terms"):
        if key in data:
            values[key] = _text(data, key, null="")  # null clears them
    return values


def _legal_changes(data: dict, current=None) -> dict:
    """The date of supply, service period and exemption reason sent (null clears one), checked against
    what the invoice keeps of the others."""
    dates = {
        key: parse_date(data[key], key)
        for key in ("supply_date", "service_period_start", "service_period_end")
        if key in data
    }
    values: dict[str, object] = dict(dates)
    if "tax_exemption_reason" in data:
        values["tax_exemption_reason"] = _text(data, "tax_exemption_reason", 500, null="")
    sent = [key for key in ("service_period_start", "service_period_end") if key in data]
    start = dates.get("service_period_start", getattr(current, "service_period_start", None))
    end = dates.get("service_period_end", getattr(current, "service_period_end", None))
    if sent and (start is None) != (end is None):
        raise Invalid("A service period has a start and an end: send both.", fields={sent[0]: "needs the other end"})
    if sent and start and end and end < start:
        problem = {sent[-1]: "the period ends before it starts"}
        if len(sent) == 2:
            raise Invalid("A service period ends on or after its start.", fields=problem)
        raise Conflict("The service period would end before it starts.", fields=problem)  # with the stored other end
    return values


def with_exemption_reasons(breakdown: list[dict], exemption_reason: str) -> list[dict]:
    """E rows carry the invoice's reason (the documents print "Exempt from VAT" with or without one, the
    note §14 UStG asks for); AE rows say reverse charge."""
    reasons = {"E": exemption_reason, "AE": REVERSE_CHARGE}
    return [{**band, "exemption_reason": reasons.get(band["category"], "")} for band in breakdown]


def _save(uow, table: sa.Table, aggregate: Invoice | Quote, **more) -> None:
    """Write the columns the aggregate's commands set, and `more` (what only the handler knows)."""
    values = {**aggregate.changes(), **more}
    if values:
        uow.execute(table.update().where(table.c.id == aggregate.id).values(**values))


# ---------------------------------------------------------------- invoices


# What a list of invoices shows of each (invoice_listing_view): a listing asked with fields=listing
# answers only these fields, not the whole invoice; a portal page's prepared statement reads only
# these columns.
INVOICE_LISTING_COLUMNS = tuple(
    invoices.c[name]
    for name in (
        "id",
        "number",
        "kind",
        "client_id",
        "status",
        "currency",
        "issue_date",
        "due_date",
        "total",
        "amount_paid",
        "amount_credited",
    )
)


def invoice_listing_view(row, today) -> dict:
    """An invoice as a list shows it: what it is, its dates, its status as of the business's `today`,
    its total and what is still owed."""
    owed = 0 if row.status == "void" else domain.balance(row.total, row.amount_paid, row.amount_credited)
    return {
        "id": row.id,
        "number": row.number,
        "kind": row.kind,
        "client_id": row.client_id,
        "status": row.status,
        "display_status": domain.display_status(row.status, row.due_date, owed, today),
        "currency": row.currency,
        "issue_date": iso(row.issue_date),
        "due_date": iso(row.due_date),
        "total": row.total,
        "amount_paid": row.amount_paid,
        "amount_credited": row.amount_credited,
        "balance": owed,
    }


def invoice_view(row, today, client: dict | None = None) -> dict:
    return {
        **invoice_listing_view(row, today),
        "payment_terms_days": row.payment_terms_days,
        "subtotal": row.subtotal,
        "discount_total": row.discount_total,
        "tax_total": row.tax_total,
        "notes": row.notes,
        "terms": row.terms,
        "supply_date": iso(row.supply_date),
        "service_period_start": iso(row.service_period_start),
        "service_period_end": iso(row.service_period_end),
        "tax_exemption_reason": row.tax_exemption_reason,
        "buyer_reference": (row.client_snapshot or client or {}).get("buyer_reference", ""),  # BT-10
        "client": row.client_snapshot or client,
        "quote_id": row.quote_id,
        "recurring_id": row.recurring_id,
        "sent_at": iso(row.sent_at),
        "viewed_at": iso(row.viewed_at),
        "voided_at": iso(row.voided_at),
        "archived": row.archived_at is not None,
        "created_at": iso(row.created_at),
    }


def invoice_view_with_code(row, today) -> dict:
    """An invoice whole, with the verification code its PDF prints (`row` read it with code_column)."""
    return {**invoice_view(row, today), "verification_code": grouped(row.verification_code)}


def _invoice_event(row) -> dict:
    return {
        "id": row.id,
        "number": row.number,
        "kind": row.kind,
        "client_id": row.client_id,
        "status": row.status,
        "total": row.total,
        "balance": domain.balance(row.total, row.amount_paid, row.amount_credited),
        "currency": row.currency,
        "due_date": iso(row.due_date),
    }


def invoices_changed(uow, workspace_id: str, invoice_ids) -> None:
    """invoice.updated for invoices that changed without an edit: a bank debit of them is with the bank
    now, or failed (they show as processing, then open again). Subscribers, and documents' record of
    the client's current PDFs, learn of it."""
    for invoice_id in dict.fromkeys(invoice_ids):
        row = uow.execute(
            sa.select(invoices).where(invoices.c.id == invoice_id, invoices.c.workspace_id == workspace_id)
        ).first()
        if row is not None:
            uow.publish("invoice.updated", workspace_id, _invoice_event(row))


def create_invoice(uow, now: datetime, workspace_id: str, data: dict, recurring: dict | None = None) -> dict:
    check_fields(data, INVOICE_FIELDS)
    ws = workspace_row(uow, workspace_id)
    settings = settings_of(ws)
    client = client_row(uow, workspace_id, data.get("client_id", ""))
    kind = data.get("kind", "standard")
    if kind not in ("standard", "retainer"):
        raise Invalid("kind is standard or retainer.", kind="unknown")
    issue, due, terms = _dates(data, workspace_today(ws, now), settings.default_payment_terms_days)
    lines = parse_lines(data.get("lines"))
    totals = domain.Totals.of(lines)
    check_reverse_charge(ws, client, lines)
    legal = _legal_changes(data)
    pattern = settings.retainer_number_pattern if kind == "retainer" else settings.invoice_number_pattern
    invoice_id = new_id()
    number = allocate_number(uow, workspace_id, kind if kind == "retainer" else "invoice", pattern, issue)
    uow.execute(
        invoices.insert().values(
            id=invoice_id,
            workspace_id=workspace_id,
            client_id=client.id,
            number=number,
            kind=kind,
            status="draft",
            currency=client.currency,
            issue_date=issue,
            due_date=due,
            payment_terms_days=terms,
            subtotal=totals.subtotal,
            discount_total=totals.discount,
            tax_total=totals.tax,
            total=totals.total,
            amount_paid=0,
            amount_credited=0,
            notes=_text(data, "notes"),
            terms=_text(data, "terms"),
            **legal,
            recurring_id=(recurring or {}).get("id"),
            recurring_period=(recurring or {}).get("period"),
            created_at=now,
        )
    )
    save_lines(uow, "invoice", invoice_id, lines)
    issue_code(uow, now, workspace_id, client.id, "invoice", invoice_id)
    uow.execute(
        invoice_number_suffixes.insert(),
        [
            {"invoice_id": invoice_id, "suffix": ending, "workspace_id": workspace_id, "client_id": client.id}
            for ending in number_suffixes(number)
        ],
    )
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")
    uow.publish("invoice.created", workspace_id, _invoice_event(row))
    if flag(data.get("send", False), "send"):
        return send_invoice(uow, now, workspace_id, invoice_id, autopay=bool((recurring or {}).get("autopay")))
    return get_invoice(uow, now, workspace_id, invoice_id)


def update_invoice(uow, now: datetime, workspace_id: str, invoice_id: str, data: dict) -> dict:
    check_fields(data, INVOICE_FIELDS - {"client_id", "kind", "send"})
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    if row.status != "draft":
        if set(data) - {"notes", "terms"}:
            raise Conflict(
                "Only a draft can change its lines or dates; void it and issue a new one.", status=row.status
            )
    ws = workspace_row(uow, workspace_id)
    values: dict[str, object] = {}
    if {"issue_date", "due_date", "payment_terms_days"} & set(data):
        merged = {
            "issue_date": row.issue_date,
            "due_date": data.get("due_date"),
            "payment_terms_days": row.payment_terms_days,
            **data,
        }
        if "due_date" not in data and "payment_terms_days" not in data:
            merged["due_date"] = row.due_date
        try:
            issue, due, terms = _dates(merged, workspace_today(ws, now), settings_of(ws).default_payment_terms_days)
        except Invalid as exc:  # a date before the stored other one is a conflict with the invoice
            if "due_date" in exc.fields and not {"issue_date", "due_date"} <= set(data):
                raise Conflict(exc.detail, exc.fields) from None
            raise
        values.update(issue_date=issue, due_date=due, payment_terms_days=terms)
    values.update(_content_changes(uow, "invoice", row, data))
    values.update(_legal_changes(data, row))
    if values:
        uow.execute(invoices.update().where(invoices.c.id == invoice_id).values(**values))
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")
    uow.publish("invoice.updated", workspace_id, _invoice_event(row))
    return get_invoice(uow, now, workspace_id, invoice_id)


def _invoice_code(uow, invoice_id: str) -> str:
    """An invoice's verification code, issued with the invoice when it was created."""
    code = code_of(uow, "invoice", invoice_id)
    if code is None:  # a broken invariant, not the caller's error
        raise LookupError(f"Invoice {invoice_id} has no verification code.")
    return code


def send_invoice(uow, now: datetime, workspace_id: str, invoice_id: str, autopay: bool = False) -> dict:
    """Issue (or re-send) an invoice: its client details are frozen the first time."""
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    invoice = Invoice.from_row(row)
    (event,) = invoice.send(now)
    if event.issued:
        client = client_row(uow, workspace_id, row.client_id)
        _save(uow, invoices, invoice, client_snapshot=client_snapshot(uow, client))
        money_moved(uow, now, workspace_id, row.client_id)
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")
    sent = {**_invoice_event(row), "autopay": autopay, "recipients": portal_recipients(uow, row.client_id)}
    sent["links"] = {"verify": verification.path(_invoice_code(uow, invoice_id))}  # on the portal
    if settings_of(workspace_row(uow, workspace_id)).legal.vat_id:
        sent["links"]["einvoice_xml"] = f"/api/admin/v1/invoices/{invoice_id}/xml"
    uow.publish("invoice.sent", workspace_id, sent)
    record_activity(
        uow, now, workspace_id, row.client_id, "invoice.sent", f"Invoice {row.number} sent", {"invoice_id": invoice_id}
    )
    return get_invoice(uow, now, workspace_id, invoice_id)


def void_invoice(uow, now: datetime, workspace_id: str, invoice_id: str) -> dict:
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    invoice = Invoice.from_row(row)
    if not invoice.void(now):  # already void
        return get_invoice(uow, now, workspace_id, invoice_id)
    _save(uow, invoices, invoice)
    money_moved(uow, now, workspace_id, row.client_id)
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")
    uow.publish("invoice.voided", workspace_id, _invoice_event(row))
    record_activity(
        uow,
        now,
        workspace_id,
        row.client_id,
        "invoice.voided",
        f"Invoice {row.number} voided",
        {"invoice_id": invoice_id},
    )
    return get_invoice(uow, now, workspace_id, invoice_id)


def archive_invoice(uow, now: datetime, workspace_id: str, invoice_id: str, archived: bool = True) -> dict:
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    invoice = Invoice.from_row(row)
    if archived:
        invoice.archive(now)
    else:
        invoice.unarchive()
    _save(uow, invoices, invoice)
    money_moved(uow, now, workspace_id, row.client_id)
    # the row as loaded: archiving changes nothing the event carries
    uow.publish("invoice.archived" if archived else "invoice.unarchived", workspace_id, _invoice_event(row))
    return get_invoice(uow, now, workspace_id, invoice_id)


def mark_invoice_viewed(uow, now: datetime, workspace_id: str, client_id: str, invoice_id: str) -> dict:
    """A client opened the invoice in the portal: a collection signal for the business."""
    if not client_id:  # a client's view: without one, nothing is there (not the whole workspace)
        raise NotFound("No such invoice.")
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True, client_id=client_id)
    _visible_to_client(row, client_id, "invoice")
    invoice = Invoice.from_row(row)
    if invoice.view(now):  # only the first view changes the invoice
        _save(uow, invoices, invoice)
        uow.publish(
            "invoice.viewed",
            workspace_id,
            _invoice_event(get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")),
        )
    record_activity(
        uow, now, workspace_id, client_id, "invoice.viewed", f"Invoice {row.number} viewed", {"invoice_id": invoice_id}
    )
    record_signal(uow, now, workspace_id, client_id, "view")  # every view, not only the first (the event's)
    return get_invoice(uow, now, workspace_id, invoice_id, client_id=client_id)


def view_invoice(uow, now: datetime, workspace_id: str, client_id: str, invoice_id: str) -> dict:
    """What the portal's invoice page shows as the client opens it, in one transaction: the invoice,
    its view recorded as mark_invoice_viewed records it, its comments, and the credit notes issued for
    it (oldest first: number, date and amount, each to open on its own page)."""
    invoice = mark_invoice_viewed(uow, now, workspace_id, client_id, invoice_id)
    crediting = uow.execute(
        sa.select(
            credit_notes.c.id,
            credit_notes.c.number,
            credit_notes.c.issue_date,
            credit_notes.c.total,
            credit_notes.c.currency,
        )
        .where(credit_notes.c.invoice_id == invoice["id"], credit_notes.c.client_id == client_id)
        .order_by(credit_notes.c.issue_date, credit_notes.c.number)
    ).all()
    return {
        "invoice": invoice,
        "comments": _comments_on(uow, "invoice", invoice["id"]),
        "credit_notes": [
            {"id": r.id, "number": r.number, "issue_date": iso(r.issue_date), "total": r.total, "currency": r.currency}
            for r in crediting
        ],
    }


_of_invoice: sa.BindParameter[str] = sa.bindparam("of_invoice", type_=sa.String)
_of_workspace: sa.BindParameter[str] = sa.bindparam("of_workspace", type_=sa.String)
_of_client: sa.BindParameter[str] = sa.bindparam("of_client", type_=sa.String)

# What an invoice's view shows from other tables, each read back from JSON by rows_from_json.
_INVOICE_LINES = sa.select(line_items).where(
    line_items.c.document_kind == "invoice", line_items.c.document_id == _of_invoice
)
_INVOICE_PAYMENTS = (
    sa.select(
        payments.c.id,
        payments.c.currency,
        payments.c.method,
        payments.c.reference,
        payments.c.received_at,
        payment_allocations.c.amount.label("allocated"),
    )
    .join(payment_allocations, payment_allocations.c.payment_id == payments.c.id)
    .where(payment_allocations.c.invoice_id == _of_invoice)
)
_INVOICE_CREDITS = sa.select(credit_applications).where(credit_applications.c.invoice_id == _of_invoice)
_INVOICE_REFUNDS = (
    sa.select(
        refund_reversals.c.refund_id,
        refund_reversals.c.amount,
        refund_reversals.c.created_at,
        payments.c.id,
        payments.c.currency,
        payments.c.method,
        payments.c.reference,
        payments.c.received_at,
    )
    .join(payments, payments.c.id == refund_reversals.c.payment_id)
    .where(refund_reversals.c.invoice_id == _of_invoice)
)
_INVOICE_DISPUTES = sa.select(invoice_disputes).where(invoice_disputes.c.invoice_id == _of_invoice)
_INVOICE_CONTACTS = sa.select(contacts.c.name, contacts.c.email).where(
    contacts.c.client_id == sa.select(invoices.c.client_id).where(invoices.c.id == _of_invoice).scalar_subquery()
)


@functools.cache
def _invoice_statement(within_client: bool) -> Prepared:
    """The invoice (within the client, when one is given) and everything its view shows, in one
    statement: its business's name, settings and time zone, its client (as printed, for an invoice that
    kept no snapshot, and its locale and time zone), its verification code, what is still processing,
    its lines, payments and credits, its latest dispute. No row outside the scope."""
    matching = [invoices.c.id == _of_invoice, invoices.c.workspace_id == _of_workspace]
    if within_client:
        matching.append(invoices.c.client_id == _of_client)
    statement = (
        sa.select(
            invoices,
            workspaces.c.name.label("business_name"),
            workspaces.c.settings.label("business_settings"),
            workspaces.c.timezone.label("business_timezone"),
            clients.c.locale.label("client_locale"),
            clients.c.timezone.label("client_timezone"),
            *(clients.c[name].label(f"client_{name}") for name in CLIENT_AS_PRINTED),
            code_column("invoice", invoices.c.id),
            processing_column(invoices.c.id),
            json_rows(_INVOICE_LINES, (line_items.c.position,)).label("line_rows"),
            json_rows(_INVOICE_PAYMENTS, (payments.c.received_at, payments.c.id)).label("payment_rows"),
            json_rows(_INVOICE_CREDITS, (credit_applications.c.created_at, credit_applications.c.id)).label(
                "credit_rows"
            ),
            json_rows(_INVOICE_REFUNDS, (refund_reversals.c.created_at, refund_reversals.c.id)).label("refund_rows"),
            json_rows(_INVOICE_DISPUTES, (invoice_disputes.c.raised_at.desc(), invoice_disputes.c.id), 1).label(
                "latest_dispute"
            ),
            json_rows(_INVOICE_CONTACTS, PRIMARY_FIRST, 1).label("primary_contact"),
        )
        .join(workspaces, workspaces.c.id == invoices.c.workspace_id)
        .join(clients, clients.c.id == invoices.c.client_id)
        .where(*matching)
    )
    return Prepared(f"billing_invoice{'_of_client' if within_client else ''}", statement)


def _visible_to_client(row, client_id: str | None, what: str) -> None:
    """Given a client scope (the portal), drafts and archived documents do not exist."""
    if client_id is not None and (row.status == "draft" or row.archived_at is not None):
        raise NotFound(f"No such {what}.")


def get_invoice(uow, now: datetime, workspace_id: str, invoice_id: str, client_id: str | None = None) -> dict:
    params = {"of_invoice": str(invoice_id), "of_workspace": workspace_id}
    if client_id is not None:
        params["of_client"] = client_id
    row = uow.read_row(_invoice_statement(client_id is not None), params)
    if row is None:
        raise NotFound("No such invoice.")
    _visible_to_client(row, client_id, "invoice")
    snapshot = None
    if not row.client_snapshot:
        client = SimpleNamespace(**{name: getattr(row, f"client_{name}") for name in CLIENT_AS_PRINTED})
        snapshot = snapshot_of(client, next(iter(rows_from_json(_INVOICE_CONTACTS, row.primary_contact)), None))
    view = invoice_view(row, today_in(row.business_timezone, now), snapshot)
    view.update(locale=row.client_locale, timezone=row.client_timezone, business_name=row.business_name)
    lines = lines_of(rows_from_json(_INVOICE_LINES, row.line_rows))
    view.update(lines=lines, tax_breakdown=domain.stored_tax_breakdown(lines, row.tax_total))
    view["tax_breakdown"] = with_exemption_reasons(view["tax_breakdown"], row.tax_exemption_reason)
    # documents writes XML for a seller with a VAT id
    view["einvoice"] = bool(parse_settings(row.business_settings or {}).legal.vat_id)
    view["verification_code"] = grouped(row.verification_code)
    # each payment with what it still pays here (`amount`) and what refunds took back of it (`refunded`:
    # it paid amount + refunded); one refunded in full pays nothing here any more, and is still listed
    paid = {
        p.id: {
            "payment_id": p.id,
            "amount": p.allocated,
            "refunded": 0,
            "currency": p.currency,
            "method": p.method,
            "reference": p.reference,
            "received_at": iso(p.received_at),
        }
        for p in rows_from_json(_INVOICE_PAYMENTS, row.payment_rows)
    }
    view["refunds"] = []
    for r in rows_from_json(_INVOICE_REFUNDS, row.refund_rows):
        entry = paid.setdefault(
            r.id,
            {
                "payment_id": r.id,
                "amount": 0,
                "refunded": 0,
                "currency": r.currency,
                "method": r.method,
                "reference": r.reference,
                "received_at": iso(r.received_at),
            },
        )
        entry["refunded"] += r.amount
        view["refunds"].append(
            {
                "refund_id": r.refund_id,
                "payment_id": r.id,
                "amount": r.amount,
                "currency": r.currency,
                "refunded_at": iso(r.created_at),
            }
        )
    view["payments"] = sorted(paid.values(), key=lambda p: (p["received_at"], p["payment_id"]))
    view["credits"] = [
        {"id": c.id, "source": c.source, "amount": c.amount, "currency": c.currency, "applied_at": iso(c.created_at)}
        for c in rows_from_json(_INVOICE_CREDITS, row.credit_rows)
    ]
    # the latest invoice dispute (open, or how the last one was resolved), for the page's dispute form
    latest = next(iter(rows_from_json(_INVOICE_DISPUTES, row.latest_dispute)), None)
    view["dispute"] = dispute_view(latest, row.number) if latest is not None else None
    # a bank debit still with the bank: shown as processing, apart from what is owed
    view["processing"] = int(row.processing)
    if view["processing"] and view["balance"] > 0:
        view["display_status"] = "processing"
    return view


def portal_visible(table: sa.Table) -> tuple:
    """What a client may see of a document table in the portal: issued, not archived."""
    return table.c.status != "draft", table.c.archived_at.is_(None)


PORTAL_QUOTES = portal_visible(quotes)


def _document_ids(ids, name: str) -> list[str]:
    if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= 36 for i in ids):
        raise Invalid(f"{name} is a list of document ids.", fields={name: "not a list of ids"})
    if len(ids) > DOCUMENT_NUMBERS_MAX:
        raise Invalid(f"At most {DOCUMENT_NUMBERS_MAX} {name} at once.", fields={name: "too many"})
    return list(dict.fromkeys(ids))


def document_numbers(
    uow, now: datetime, workspace_id: str, client_id: str, invoice_ids: list[str], quote_ids: list[str]
) -> dict:
    """The number of each of the client's invoices and quotes asked for, and whether the portal still
    shows it (issued and not archived): {"invoices": {id: {"number", "available"}}, "quotes": {...}}.
    One call for a page that names many documents (the links emailed to a contact). An id that is not
    one of the client's documents is left out; without a client, nothing is."""
    asked = {"invoices": _document_ids(invoice_ids, "invoice_ids"), "quotes": _document_ids(quote_ids, "quote_ids")}
    found: dict[str, dict] = {"invoices": {}, "quotes": {}}
    if not client_id:
        return found
    for key, table in (("invoices", invoices), ("quotes", quotes)):
        if not asked[key]:
            continue
        rows = uow.execute(
            sa.select(table.c.id, table.c.number, table.c.status, table.c.archived_at).where(
                table.c.workspace_id == workspace_id, table.c.client_id == client_id, table.c.id.in_(asked[key])
            )
        ).all()
        found[key] = {
            row.id: {"number": row.number, "available": row.status != "draft" and row.archived_at is None}
            for row in rows
        }
    return found


def _listing_query(table: sa.Table, workspace_id: str, filters: dict):
    """The start of a document listing: one workspace, optionally one client, and in the portal only
    what a client may see."""
    query = sa.select(table).where(table.c.workspace_id == workspace_id)
    if filters.get("client_id"):
        query = query.where(table.c.client_id == filters["client_id"])
    if filters.get("portal"):
        query = query.where(*portal_visible(table))
    return query


def _listing(uow, now: datetime, table: sa.Table, workspace_id: str, filters: dict):
    """_listing_query, and the workspace's today (for overdue and expired)."""
    return _listing_query(table, workspace_id, filters), workspace_today(workspace_row(uow, workspace_id), now)


def number_suffixes(number: str) -> set[str]:
    """What invoice_number_suffixes holds for a number: each of its endings, lower-cased."""
    number = number.lower()
    return {number[i:] for i in range(len(number))}


# ---------------------------------------------------------------- quotes


def quote_view(row, today) -> dict:
    return {
        "id": row.id,
        "number": row.number,
        "client_id": row.client_id,
        "status": row.status,
        "display_status": domain.quote_display_status(row.status, row.expiry_date, today),
        "currency": row.currency,
        "issue_date": iso(row.issue_date),
        "expiry_date": iso(row.expiry_date),
        "subtotal": row.subtotal,
        "discount_total": row.discount_total,
        "tax_total": row.tax_total,
        "total": row.total,
        "notes": row.notes,
        "terms": row.terms,
        "client": row.client_snapshot,
        "accepted_at": iso(row.accepted_at),
        "accepted_by": row.accepted_by,
        "accepted_ip": row.accepted_ip,
        "signature_name": row.signature_name,
        "rejected_at": iso(row.rejected_at),
        "rejected_by": row.rejected_by,
        "rejection_reason": row.rejection_reason,
        "invoice_id": row.invoice_id,
        "sent_at": iso(row.sent_at),
        "archived": row.archived_at is not None,
        "created_at": iso(row.created_at),
        "version": row.version,
        "changes_requested": row.changes_requested_at is not None,
        "changes_requested_at": iso(row.changes_requested_at),
        "accepted_version": row.accepted_version,
        "rejected_version": row.rejected_version,
    }


def _quote_event(row) -> dict:
    return {
        "id": row.id,
        "number": row.number,
        "client_id": row.client_id,
        "status": row.status,
        "total": row.total,
        "currency": row.currency,
        "version": row.version,
    }


def create_quote(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    check_fields(data, QUOTE_FIELDS)
    ws = workspace_row(uow, workspace_id)
    client = client_row(uow, workspace_id, data.get("client_id", ""))
    issue = parse_date(data.get("issue_date"), "issue_date") or workspace_today(ws, now)
    expiry = parse_date(data.get("expiry_date"), "expiry_date") or issue + timedelta(days=30)
    if expiry < issue:
        raise Invalid("The expiry date cannot be before the issue date.", expiry_date="before issue date")
    lines = check_reverse_charge(ws, client, parse_lines(data.get("lines")))
    totals = domain.Totals.of(lines)
    quote_id = new_id()
    number = allocate_number(uow, workspace_id, "quote", settings_of(ws).quote_number_pattern, issue)
    uow.execute(
        quotes.insert().values(
            id=quote_id,
            workspace_id=workspace_id,
            client_id=client.id,
            number=number,
            status="draft",
            currency=client.currency,
            issue_date=issue,
            expiry_date=expiry,
            subtotal=totals.subtotal,
            discount_total=totals.discount,
            tax_total=totals.tax,
            total=totals.total,
            notes=_text(data, "notes"),
            terms=_text(data, "terms"),
            created_at=now,
        )
    )
    save_lines(uow, "quote", quote_id, lines)
    issue_code(uow, now, workspace_id, client.id, "quote", quote_id)
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote")
    uow.publish("quote.created", workspace_id, _quote_event(row))
    if flag(data.get("send", False), "send"):
        return send_quote(uow, now, workspace_id, quote_id)
    return get_quote(uow, now, workspace_id, quote_id)


def update_quote(uow, now: datetime, workspace_id: str, quote_id: str, data: dict) -> dict:
    check_fields(data, QUOTE_FIELDS - {"client_id", "send"})
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", lock=True)
    if row.status != "draft":
        raise Conflict("Only a draft quote can be changed.", status=row.status)
    values: dict[str, object] = {}
    issue = parse_date(data.get("issue_date"), "issue_date") or row.issue_date
    expiry = parse_date(data.get("expiry_date"), "expiry_date") or row.expiry_date
    if expiry < issue:  # both sent: invalid input; one of them stored: a conflict with the quote
        error = Invalid if {"issue_date", "expiry_date"} <= set(data) else Conflict
        raise error("The expiry date cannot be before the issue date.", expiry_date="before issue date")
    values.update(issue_date=issue, expiry_date=expiry)
    values.update(_content_changes(uow, "quote", row, data))
    uow.execute(quotes.update().where(quotes.c.id == quote_id).values(**values))
    uow.publish("quote.updated", workspace_id, _quote_event(get_scoped(uow, quotes, workspace_id, quote_id, "quote")))
    return get_quote(uow, now, workspace_id, quote_id)


def send_quote(uow, now: datetime, workspace_id: str, quote_id: str) -> dict:
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", lock=True)
    quote = Quote.from_row(row)
    (event,) = quote.send(now)
    if event.issued:
        client = client_row(uow, workspace_id, row.client_id)
        _save(uow, quotes, quote, client_snapshot=client_snapshot(uow, client))
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote")
    uow.publish("quote.sent", workspace_id, {**_quote_event(row), "recipients": portal_recipients(uow, row.client_id)})
    record_activity(
        uow, now, workspace_id, row.client_id, "quote.sent", f"Quote {row.number} sent", {"quote_id": quote_id}
    )
    return get_quote(uow, now, workspace_id, quote_id)


def _decidable_quote(uow, now: datetime, workspace_id: str, quote_id: str, client_id: str | None, seen: int | None):
    """The quote a client decides on, its workspace and the workspace's today; checked before the decision's
    input is read, so a quote that cannot be decided on answers 409 whatever the input."""
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", lock=True, client_id=client_id)
    ws = workspace_row(uow, workspace_id)
    today = workspace_today(ws, now)
    quote = Quote.from_row(row)
    quote.check_decidable(today, seen)
    return quote, ws, today


def accept_quote(
    uow,
    now: datetime,
    workspace_id: str,
    quote_id: str,
    by: str,
    ip: str = "",
    signature_name: str = "",
    client_id: str | None = None,
    version: int | None = None,
) -> dict:
    """`version`: the one the client saw (the portal always sends it); a revision since is a 409."""
    require_role(revisions.DECIDING_ROLES, revisions.DECIDING_DETAIL)
    seen = revisions.seen_version(version)
    quote, ws, today = _decidable_quote(uow, now, workspace_id, quote_id, client_id, seen)
    signature = _given_text(signature_name, "signature_name", 200, null="")
    if signature and not signature.strip():
        raise Invalid("Sign with your name.", signature_name="required")
    by = _given_text(by, "by", 254)
    quote.accept(now, today, seen, by, (ip or "")[:64], signature or None)  # no signature: NULL
    _save(uow, quotes, quote)
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote")
    uow.publish("quote.accepted", workspace_id, {**_quote_event(row), "accepted_by": row.accepted_by})
    record_activity(
        uow,
        now,
        workspace_id,
        row.client_id,
        "quote.accepted",
        f"Quote {row.number} (version {row.version}) accepted by {row.accepted_by}",
        {"quote_id": quote_id, "version": row.version},
    )
    if settings_of(ws).auto_convert_accepted_quotes:
        convert_quote(uow, now, workspace_id, quote_id)
    return get_quote(uow, now, workspace_id, quote_id)


def reject_quote(
    uow,
    now: datetime,
    workspace_id: str,
    quote_id: str,
    by: str,
    reason: str = "",
    client_id: str | None = None,
    version: int | None = None,
) -> dict:
    """`version` as for accept_quote: declining a version a revision replaced is a 409."""
    require_role(revisions.DECIDING_ROLES, revisions.DECIDING_DETAIL)
    seen = revisions.seen_version(version)
    quote, _, today = _decidable_quote(uow, now, workspace_id, quote_id, client_id, seen)
    reason = _given_text(reason, "reason", 2000)
    quote.reject(now, today, seen, _given_text(by, "by", 254), reason)
    _save(uow, quotes, quote)
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote")
    uow.publish("quote.rejected", workspace_id, {**_quote_event(row), "reason": reason})
    record_activity(
        uow,
        now,
        workspace_id,
        row.client_id,
        "quote.rejected",
        f"Quote {row.number} (version {row.version}) rejected",
        {"quote_id": quote_id, "reason": reason, "version": row.version},
    )
    return get_quote(uow, now, workspace_id, quote_id)


def convert_quote(uow, now: datetime, workspace_id: str, quote_id: str) -> dict:
    """An accepted quote becomes a draft-free, sent invoice with the same lines; once only."""
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", lock=True)
    if row.status != "accepted":
        raise Conflict("Only an accepted quote can become an invoice.", status=row.status)
    if row.invoice_id:
        return get_invoice(uow, now, workspace_id, row.invoice_id)
    invoice = create_invoice(
        uow,
        now,
        workspace_id,
        {
            "client_id": row.client_id,
            "lines": load_lines(uow, "quote", quote_id),
            "notes": row.notes,
            "terms": row.terms,
            "send": True,
        },
    )
    uow.execute(invoices.update().where(invoices.c.id == invoice["id"]).values(quote_id=quote_id))
    uow.execute(quotes.update().where(quotes.c.id == quote_id).values(invoice_id=invoice["id"]))
    uow.publish("quote.converted", workspace_id, {"id": quote_id, "invoice_id": invoice["id"]})
    return get_invoice(uow, now, workspace_id, invoice["id"])


def get_quote(uow, now: datetime, workspace_id: str, quote_id: str, client_id: str | None = None) -> dict:
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", client_id=client_id)
    _visible_to_client(row, client_id, "quote")
    ws = workspace_row(uow, workspace_id)
    client = client_row(uow, workspace_id, row.client_id)
    view = quote_view(row, workspace_today(ws, now))
    view.update(
        client=row.client_snapshot or client_snapshot(uow, client),
        locale=client.locale,
        timezone=client.timezone,
        business_name=ws.name,
        verification_code=code_of(uow, "quote", quote_id),
    )
    view.update(lines_and_taxes(uow, "quote", quote_id, row.tax_total))
    versions = [*_earlier_versions(uow, quote_id), _version_view(view, row)] if row.version > 1 else []
    view["versions"] = [
        {k: v for k, v in version.items() if k not in ("lines", "tax_breakdown")} for version in versions
    ]
    view["changes"] = revisions.history(versions)
    return view


def view_quote(uow, now: datetime, workspace_id: str, client_id: str, quote_id: str) -> dict:
    """What the portal's quote page shows, in one transaction: the quote within the client, and its
    comments."""
    if not client_id:  # a page of one client's: without one, nothing is there (not the whole workspace)
        raise NotFound("No such quote.")
    quote = get_quote(uow, now, workspace_id, quote_id, client_id)
    return {"quote": quote, "comments": _comments_on(uow, "quote", quote["id"])}


def list_quotes(uow, now: datetime, workspace_id: str, filters: dict | None = None) -> dict:
    filters = filters or {}
    query, today = _listing(uow, now, quotes, workspace_id, filters)
    status = filters.get("status") or "all"
    not_expired = sa.or_(quotes.c.expiry_date.is_(None), quotes.c.expiry_date >= today)
    conditions = {
        "all": None,
        "draft": quotes.c.status == "draft",
        "pending": (quotes.c.status == "sent") & not_expired,
        "sent": (quotes.c.status == "sent") & not_expired,
        "accepted": quotes.c.status == "accepted",
        "rejected": quotes.c.status == "rejected",
        "expired": (quotes.c.status == "expired") | ((quotes.c.status == "sent") & ~not_expired),
    }
    if status not in conditions:
        raise Invalid("Unknown status filter.", status=f"one of {', '.join(conditions)}")
    if conditions[status] is not None:
        query = query.where(conditions[status])
    limit, _ = page_bounds(filters.get("limit", 50), 0, 100)
    rows = uow.execute(query.order_by(*QUOTE_ORDER).limit(limit)).all()
    return {"items": _with_codes(uow, "quote", [quote_view(r, today) for r in rows])}


QUOTE_ORDER = (quotes.c.issue_date.desc(), quotes.c.number.desc())


# ---------------------------------------------------------------- quote revisions


def _version_view(view: dict, row) -> dict:
    """The newest version (the quote itself) in the shape quote_versions keeps the earlier ones."""
    return {
        "version": row.version,
        "number": row.number,
        "current": True,
        "currency": row.currency,
        "issue_date": iso(row.issue_date),
        "expiry_date": iso(row.expiry_date),
        **{key: getattr(row, key) for key in revisions.TOTAL_FIELDS},
        "notes": row.notes,
        "terms": row.terms,
        "lines": view["lines"],
        "tax_breakdown": view["tax_breakdown"],
        "issued_at": iso(row.sent_at),
        "changes_requested_at": iso(row.changes_requested_at),
        "superseded_at": None,
    }


def _earlier_versions(uow, quote_id: str) -> list[dict]:
    rows = uow.execute(
        sa.select(quote_versions).where(quote_versions.c.quote_id == quote_id).order_by(quote_versions.c.version)
    ).all()
    return [
        {
            "version": r.version,
            "number": r.number,
            "current": False,
            "currency": r.currency,
            "issue_date": iso(r.issue_date),
            "expiry_date": iso(r.expiry_date),
            **{key: getattr(r, key) for key in revisions.TOTAL_FIELDS},
            "notes": r.notes,
            "terms": r.terms,
            "lines": r.lines,
            "tax_breakdown": r.tax_breakdown,
            "issued_at": iso(r.issued_at),
            "changes_requested_at": iso(r.changes_requested_at),
            "superseded_at": iso(r.superseded_at),
        }
        for r in rows
    ]


def request_quote_changes(
    uow,
    now: datetime,
    workspace_id: str,
    client_id: str,
    contact_id: str,
    quote_id: str,
    message: str,
    version: int | None = None,
) -> dict:
    """A contact asks for changes to a quote it can still decide on: the message goes into the quote's
    comment thread, and the quote shows that changes were asked for until a revision answers."""
    require_role(revisions.DECIDING_ROLES, revisions.DECIDING_DETAIL)
    seen = revisions.seen_version(version)
    message = _given_text(message, "message", 5000, required=True).strip()  # the comment rule: 1 to 5000, trimmed
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", lock=True, client_id=client_id)
    _visible_to_client(row, client_id, "quote")
    contact = get_scoped(uow, contacts, workspace_id, contact_id, "contact", client_id=client_id)
    if not contact.portal_access:
        raise NotFound("No such quote.")  # fail closed: as if the quote were not there
    if not revisions.may_request_changes(contact):  # its role now, which may be newer than its session's
        raise Forbidden(revisions.DECIDING_DETAIL, role="not allowed")
    quote = Quote.from_row(row)
    quote.request_changes(now, workspace_today(workspace_row(uow, workspace_id), now), seen)
    author = contact.name or contact.email
    comment = add_comment(uow, now, workspace_id, "quote", quote_id, "client", author, message, client_id)
    _save(uow, quotes, quote)
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote")
    uow.publish(
        "quote.changes_requested",
        workspace_id,
        {
            **_quote_event(row),
            "contact_id": contact.id,
            "requested_by": contact.email,
            "comment_id": comment["id"],
            "message": message,
        },
    )
    record_activity(
        uow,
        now,
        workspace_id,
        row.client_id,
        "quote.changes_requested",
        f"Changes to quote {row.number} requested by {author}",
        {"quote_id": quote_id, "version": row.version, "comment_id": comment["id"]},
    )
    return get_quote(uow, now, workspace_id, quote_id, client_id=client_id)


def revise_quote(uow, now: datetime, workspace_id: str, quote_id: str, data: dict) -> dict:
    """Issue the next version of a sent quote (new lines, texts, expiry): the version it replaces is kept
    read-only, the quote takes the same number with the version as a suffix, and it is sent again."""
    check_fields(data, REVISION_FIELDS)
    if "lines" not in data:
        raise Invalid("A revision needs its lines.", lines="required")
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", lock=True)
    quote = Quote.from_row(row)
    quote.check_revisable()  # before the lines are read: a quote that cannot be revised answers 409 whatever they are
    ws = workspace_row(uow, workspace_id)
    client = client_row(uow, workspace_id, row.client_id)
    lines = check_reverse_charge(ws, client, parse_lines(data["lines"]))
    totals = domain.Totals.of(lines)
    issue = workspace_today(ws, now)
    expiry = parse_date(data.get("expiry_date"), "expiry_date") or issue + timedelta(days=30)
    first = row.number if row.version == 1 else _earlier_versions(uow, quote_id)[0]["number"]

    def is_number_taken(number: str) -> bool:
        query = sa.select(quotes.c.id).where(quotes.c.workspace_id == workspace_id, quotes.c.number == number)
        return uow.execute(query).first() is not None

    revised, _ = quote.revise(now, issue, expiry, totals, first, is_number_taken)
    texts = {key: _text(data, key, null="") for key in ("notes", "terms") if key in data}  # null clears them
    current = lines_and_taxes(uow, "quote", quote_id, row.tax_total)
    uow.execute(
        quote_versions.insert().values(
            quote_id=quote_id,
            version=row.version,
            workspace_id=workspace_id,
            client_id=row.client_id,
            number=row.number,
            currency=row.currency,
            issue_date=row.issue_date,
            expiry_date=row.expiry_date,
            subtotal=row.subtotal,
            discount_total=row.discount_total,
            tax_total=row.tax_total,
            total=row.total,
            notes=row.notes,
            terms=row.terms,
            lines=current["lines"],
            tax_breakdown=current["tax_breakdown"],
            issued_at=row.sent_at,
            changes_requested_at=row.changes_requested_at,
            superseded_at=now,
        )
    )
    save_lines(uow, "quote", quote_id, lines)
    # a new issue freezes today's client details
    _save(uow, quotes, quote, client_snapshot=client_snapshot(uow, client), **texts)
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote")
    uow.publish(
        "quote.revised",
        workspace_id,
        {
            **_quote_event(row),
            "previous_version": revised.previous_version,
            "previous_number": revised.previous_number,
            "previous_total": revised.previous_total,
        },
    )
    # the usual quote email, for the new version
    uow.publish("quote.sent", workspace_id, {**_quote_event(row), "recipients": portal_recipients(uow, row.client_id)})
    record_activity(
        uow,
        now,
        workspace_id,
        row.client_id,
        "quote.revised",
        f"Quote {revised.previous_number} revised: version {revised.version} is {row.number}",
        {"quote_id": quote_id, "version": revised.version},
    )
    return get_quote(uow, now, workspace_id, quote_id)


def list_quote_versions(uow, now: datetime, workspace_id: str, quote_id: str, client_id: str | None = None) -> dict:
    """Every version of a quote, oldest first, each with its lines and totals, and what changed from one
    to the next."""
    quote = get_quote(uow, now, workspace_id, quote_id, client_id=client_id)
    row = get_scoped(uow, quotes, workspace_id, quote_id, "quote", client_id=client_id)
    versions = [*_earlier_versions(uow, quote_id), _version_view(quote, row)]
    return {
        "quote_id": quote_id,
        "number": row.number,
        "version": row.version,
        "versions": versions,
        "changes": revisions.history(versions),
    }


# ---------------------------------------------------------------- credit notes


def issue_credit_note(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    """A credit note adds to the client's available credit; apply it to invoices separately."""
    check_fields(data, CREDIT_FIELDS)
    ws = workspace_row(uow, workspace_id)
    client = client_row(uow, workspace_id, data.get("client_id", ""))
    raw_lines = data.get("lines")
    if "lines" in data and "amount" in data:
        raise Invalid("Send lines or an amount, not both.", amount="lines are sent too")
    if raw_lines is None and "amount" in data:
        raw_lines = [{"description": data.get("reason") or "Credit", "quantity": 1, "unit_price": data["amount"]}]
    lines = check_reverse_charge(ws, client, parse_lines(raw_lines))
    totals = domain.Totals.of(lines)
    if totals.total <= 0:
        raise Invalid("A credit note must be for a positive amount.", amount="must be positive")
    if data.get("invoice_id"):  # one of this client's invoices, or not found
        get_scoped(uow, invoices, workspace_id, data["invoice_id"], "invoice", client_id=client.id)
    issue = parse_date(data.get("issue_date"), "issue_date") or workspace_today(ws, now)
    credit_id = new_id()
    number = allocate_number(uow, workspace_id, "credit", settings_of(ws).credit_number_pattern, issue)
    uow.execute(
        credit_notes.insert().values(
            id=credit_id,
            workspace_id=workspace_id,
            client_id=client.id,
            number=number,
            currency=client.currency,
            issue_date=issue,
            subtotal=totals.subtotal,
            tax_total=totals.tax,
            total=totals.total,
            reason=_text(data, "reason", 2000),
            invoice_id=data.get("invoice_id"),
            created_at=now,
        )
    )
    save_lines(uow, LINES_KIND, credit_id, lines)
    code = issue_code(uow, now, workspace_id, client.id, "credit_note", credit_id)
    money_moved(uow, now, workspace_id, client.id)
    uow.publish(
        "credit.issued",
        workspace_id,
        {"id": credit_id, "number": number, "client_id": client.id, "total": totals.total, "currency": client.currency},
    )
    record_activity(
        uow,
        now,
        workspace_id,
        client.id,
        "credit.issued",
        f"Credit note {number} issued",
        {"credit_note_id": credit_id},
    )
    # what a credit note document shows: the client, and the invoice it credits (BT-25)
    return credit_note_view(uow, get_scoped(uow, credit_notes, workspace_id, credit_id, "credit note"), client, code)


def list_credit_notes(uow, now: datetime, workspace_id: str, client_id: str | None = None) -> list[dict]:
    query = sa.select(credit_notes).where(credit_notes.c.workspace_id == workspace_id)
    if client_id:
        query = query.where(credit_notes.c.client_id == client_id)
    notes = [
        {
            "id": r.id,
            "number": r.number,
            "client_id": r.client_id,
            "currency": r.currency,
            "issue_date": iso(r.issue_date),
            "total": r.total,
            "reason": r.reason,
        }
        for r in uow.execute(query.order_by(credit_notes.c.issue_date.desc())).all()
    ]
    return _with_codes(uow, "credit_note", notes)


def _with_codes(uow, kind: str, items: list[dict]) -> list[dict]:
    """Each listed document with its verification code, looked up for the whole list at once."""
    codes = codes_of(uow, kind, [item["id"] for item in items])
    for item in items:
        item["verification_code"] = codes.get(item["id"])
    return items


# ---------------------------------------------------------------- comments

DOCUMENT_TABLES = {"invoice": invoices, "quote": quotes}


def add_comment(
    uow,
    now: datetime,
    workspace_id: str,
    document_kind: str,
    document_id: str,
    author_kind: str,
    author_name: str,
    body: str,
    client_id: str | None = None,
) -> dict:
    require_role(domain.ACTING_ROLES, domain.ACTING_DETAIL)
    if document_kind not in DOCUMENT_TABLES:
        raise Invalid("Comments go on invoices or quotes.", document_kind="unknown")
    if author_kind not in ("client", "business"):
        raise Invalid("The author is the client or the business.", author_kind="unknown")
    body = _given_text(body, "body", 5000, required=True).strip()  # surrounding blank space trimmed
    author_name = _given_text(author_name, "author_name", 200)
    document = get_scoped(
        uow, DOCUMENT_TABLES[document_kind], workspace_id, document_id, document_kind, client_id=client_id
    )
    _visible_to_client(document, client_id, document_kind)
    if author_kind == "business" and not author_name:
        author_name = workspace_row(uow, workspace_id).name  # a reply signed by no one is the business's
    comment_id = new_id()
    uow.execute(
        comments.insert().values(
            id=comment_id,
            workspace_id=workspace_id,
            client_id=document.client_id,
            document_kind=document_kind,
            document_id=document_id,
            author_kind=author_kind,
            author_name=author_name,
            body=body,
            created_at=now,
        )
    )
    payload = {
        "id": comment_id,
        "document_kind": document_kind,
        "document_id": document_id,
        "client_id": document.client_id,
        "author_kind": author_kind,
    }
    if author_kind == "business":  # a reply the client's contacts are emailed (unless they turned it off)
        payload.update(
            document_number=document.number,
            body=body,
            author_name=author_name,
            recipients=portal_recipients(uow, document.client_id),
        )
    uow.publish("comment.added", workspace_id, payload)
    record_activity(
        uow,
        now,
        workspace_id,
        document.client_id,
        "comment.added",
        f"Comment on {document_kind} {document.number} by {author_name}",
        {"document_kind": document_kind, "document_id": document_id},
    )
    return {
        "id": comment_id,
        "author_kind": author_kind,
        "author_name": author_name,
        "body": body,
        "created_at": iso(now),
    }


def list_comments(
    uow, now: datetime, workspace_id: str, document_kind: str, document_id: str, client_id: str | None = None
) -> list[dict]:
    if document_kind not in DOCUMENT_TABLES:
        raise Invalid("Comments go on invoices or quotes.", document_kind="unknown")
    document = get_scoped(
        uow, DOCUMENT_TABLES[document_kind], workspace_id, document_id, document_kind, client_id=client_id
    )
    _visible_to_client(document, client_id, document_kind)
    return _comments_on(uow, document_kind, document_id)


def _comments_on(uow, document_kind: str, document_id: str) -> list[dict]:
    """The thread of a document the caller has found in its scope, oldest first."""
    rows = uow.execute(
        sa.select(comments)
        .where(comments.c.document_kind == document_kind, comments.c.document_id == document_id)
        .order_by(comments.c.created_at, comments.c.id)
    ).all()
    return [
        {
            "id": r.id,
            "author_kind": r.author_kind,
            "author_name": r.author_name,
            "body": r.body,
            "notice": r.notice,
            "created_at": iso(r.created_at),
        }
        for r in rows
    ]
