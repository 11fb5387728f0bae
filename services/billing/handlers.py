"""Billing use cases (the walking-skeleton subset). Each takes a unit of work; returns plain data."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

from chassis.errors import Conflict, Invalid, NotFound
from chassis.money import Money
from services.billing import domain
from services.billing.tables import clients, contacts, invoice_lines, invoices, payments, workspaces


def _id() -> str:
    return str(uuid.uuid4())


def create_workspace(uow, now: datetime, *, name: str, email: str, currency: str = "USD", locale: str = "en_US",
                     timezone: str = "UTC", phone: str = "", address: str = "") -> str:
    Money(0, currency)  # validates the code
    ws_id = _id()
    uow.execute(workspaces.insert().values(id=ws_id, name=name, email=email, phone=phone, address=address,
                                           currency=currency, locale=locale, timezone=timezone, created_at=now))
    uow.publish("workspace.created", ws_id, {"id": ws_id, "name": name})
    return ws_id


def create_client(uow, now: datetime, workspace_id: str, *, name: str, currency: str | None = None,
                  locale: str | None = None, timezone: str | None = None, address: str = "", phone: str = "") -> str:
    ws = uow.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id)).first()
    if ws is None:
        raise NotFound("No such workspace.")
    client_id = _id()
    uow.execute(clients.insert().values(
        id=client_id, workspace_id=workspace_id, name=name, address=address, phone=phone,
        currency=currency or ws.currency, locale=locale or ws.locale, timezone=timezone or ws.timezone, created_at=now))
    uow.publish("client.created", workspace_id, {"id": client_id, "name": name})
    return client_id


def _contact_event_data(row) -> dict:
    return {"id": row.id, "workspace_id": row.workspace_id, "client_id": row.client_id, "email": row.email,
            "name": row.name, "portal_access": row.portal_access, "is_primary": row.is_primary, "version": row.version}


def add_contact(uow, now: datetime, workspace_id: str, client_id: str, *, email: str, name: str = "",
                phone: str = "", is_primary: bool = False, portal_access: bool = False) -> str:
    _client(uow, workspace_id, client_id)
    email = email.strip().lower()
    taken = uow.execute(sa.select(contacts.c.id).where(contacts.c.workspace_id == workspace_id,
                                                       contacts.c.email == email)).first()
    if taken:
        raise Conflict("A contact with this email already exists in this workspace.", email="taken")
    contact_id = _id()
    uow.execute(contacts.insert().values(id=contact_id, workspace_id=workspace_id, client_id=client_id, email=email,
                                         name=name, phone=phone, is_primary=is_primary, portal_access=portal_access,
                                         version=1, created_at=now))
    row = uow.execute(sa.select(contacts).where(contacts.c.id == contact_id)).one()
    uow.publish("contact.created", workspace_id, _contact_event_data(row))
    return contact_id


def set_portal_access(uow, workspace_id: str, contact_id: str, enabled: bool) -> None:
    updated = uow.execute(contacts.update()
                          .where(contacts.c.id == contact_id, contacts.c.workspace_id == workspace_id)
                          .values(portal_access=enabled, version=contacts.c.version + 1)).rowcount
    if updated != 1:
        raise NotFound("No such contact.")
    row = uow.execute(sa.select(contacts).where(contacts.c.id == contact_id)).one()
    uow.publish("contact.updated", workspace_id, _contact_event_data(row))


def republish_contacts(uow, workspace_id: str | None = None) -> int:
    """Re-announce every contact (e.g. for a newly added auth replica database); consumers ignore
    versions they already have."""
    query = sa.select(contacts)
    if workspace_id:
        query = query.where(contacts.c.workspace_id == workspace_id)
    rows = uow.execute(query).all()
    for row in rows:
        uow.publish("contact.updated", row.workspace_id, _contact_event_data(row))
    return len(rows)


def _client(uow, workspace_id: str, client_id: str):
    row = uow.execute(sa.select(clients).where(clients.c.id == client_id,
                                               clients.c.workspace_id == workspace_id)).first()
    if row is None:
        raise NotFound("No such client.")
    return row


def _next_number(uow, workspace_id: str, issue_date: date) -> str:
    count = uow.execute(sa.select(sa.func.count()).select_from(invoices)
                        .where(invoices.c.workspace_id == workspace_id)).scalar_one()
    return f"INV-{issue_date.year}-{count + 1:05d}"


def create_invoice(uow, now: datetime, workspace_id: str, client_id: str, *, issue_date: date, due_date: date,
                   lines: list[dict], send: bool = True) -> str:
    client = _client(uow, workspace_id, client_id)
    try:
        invoice = domain.Invoice(client.currency, issue_date, due_date, [
            domain.Line(str(line["description"]), Decimal(str(line["quantity"])), int(line["unit_price"]))
            for line in lines
        ])
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise Invalid("Each line needs a description, a quantity and an integer unit price.", lines=str(exc)) from None
    invoice_id = _id()
    number = _next_number(uow, workspace_id, issue_date)
    status = "sent" if send else "draft"
    uow.execute(invoices.insert().values(id=invoice_id, workspace_id=workspace_id, client_id=client_id, number=number,
                                         status=status, currency=invoice.currency, issue_date=issue_date,
                                         due_date=due_date, total=invoice.total, amount_paid=0, created_at=now))
    uow.execute(invoice_lines.insert(), [
        {"invoice_id": invoice_id, "position": i, "description": line.description, "quantity": line.quantity,
         "unit_price": line.unit_price, "line_total": line.total}
        for i, line in enumerate(invoice.lines, start=1)
    ])
    data = {"id": invoice_id, "client_id": client_id, "number": number, "total": invoice.total,
            "currency": invoice.currency}
    uow.publish("invoice.created", workspace_id, data)
    if send:
        uow.publish("invoice.sent", workspace_id, data)
    return invoice_id


def record_payment(uow, now: datetime, workspace_id: str, invoice_id: str, amount: int, method: str,
                   payment_id: str | None = None) -> str:
    """Apply a payment to an invoice. Idempotent by payment id; the row lock (PostgreSQL) or the
    database write lock (SQLite) stops two payments over-applying one invoice."""
    payment_id = payment_id or _id()
    if uow.execute(sa.select(payments.c.id).where(payments.c.id == payment_id)).first():
        return payment_id
    query = sa.select(invoices).where(invoices.c.id == invoice_id, invoices.c.workspace_id == workspace_id)
    row = uow.execute(query.with_for_update()).first()
    if row is None:
        raise NotFound("No such invoice.")
    invoice = _domain_invoice(uow, row)
    invoice.apply_payment(amount)
    uow.execute(invoices.update().where(invoices.c.id == invoice_id)
                .values(amount_paid=invoice.amount_paid, status=invoice.status))
    uow.execute(payments.insert().values(id=payment_id, workspace_id=workspace_id, client_id=row.client_id,
                                         invoice_id=invoice_id, amount=amount, currency=row.currency, method=method,
                                         received_at=now))
    data = {"payment_id": payment_id, "invoice_id": invoice_id, "client_id": row.client_id, "amount": amount,
            "currency": row.currency, "status": invoice.status}
    uow.publish("invoice.payment_applied", workspace_id, data)
    if invoice.status == "paid":
        uow.publish("invoice.paid", workspace_id, data)
    return payment_id


def _domain_invoice(uow, row) -> domain.Invoice:
    lines = uow.execute(sa.select(invoice_lines).where(invoice_lines.c.invoice_id == row.id)
                        .order_by(invoice_lines.c.position)).all()
    return domain.Invoice(row.currency, row.issue_date, row.due_date,
                          [domain.Line(l.description, Decimal(l.quantity), l.unit_price) for l in lines],
                          status=row.status, amount_paid=row.amount_paid)


def client_dashboard(uow, workspace_id: str, client_id: str, today: date) -> dict:
    """What the portal's dashboard shows, scoped to one client of one workspace."""
    client = _client(uow, workspace_id, client_id)
    ws = uow.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id)).one()
    rows = uow.execute(sa.select(invoices).where(invoices.c.client_id == client_id,
                                                 invoices.c.workspace_id == workspace_id,
                                                 invoices.c.status != "draft")
                       .order_by(invoices.c.issue_date.desc(), invoices.c.number.desc())).all()
    open_balances = [Money(max(r.total - r.amount_paid, 0), r.currency) for r in rows if r.status in domain.OPEN_STATUSES]
    overdue = [r for r in rows if domain.is_overdue(r.status, r.due_date, r.total - r.amount_paid, today)]
    last = uow.execute(sa.select(payments).where(payments.c.client_id == client_id,
                                                 payments.c.workspace_id == workspace_id)
                       .order_by(payments.c.received_at.desc()).limit(1)).first()
    return {
        "client": {"id": client.id, "name": client.name, "address": client.address, "phone": client.phone,
                   "currency": client.currency, "locale": client.locale, "timezone": client.timezone},
        "business": {"name": ws.name, "email": ws.email, "phone": ws.phone, "address": ws.address},
        "outstanding": domain.outstanding(open_balances, client.currency).as_dict(),
        "overdue": {"count": len(overdue), **domain.outstanding(
            [Money(r.total - r.amount_paid, r.currency) for r in overdue], client.currency).as_dict()},
        "last_payment": None if last is None else {"amount": last.amount, "currency": last.currency,
                                                   "received_at": last.received_at.isoformat()},
        "recent_invoices": [
            {"id": r.id, "number": r.number, "issue_date": r.issue_date.isoformat(), "due_date": r.due_date.isoformat(),
             "total": r.total, "balance": max(r.total - r.amount_paid, 0), "currency": r.currency,
             "status": domain.display_status(r.status, r.due_date, r.total - r.amount_paid, today)}
            for r in rows[:5]
        ],
    }
