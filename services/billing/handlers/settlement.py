"""Settling invoices: the only code that changes an invoice's paid and credited amounts and, from
them, its status. Credits add money with `_settle` (under a row lock, refusing more than the invoice
owes); a payment settles its invoices with `settled` and writes them with its own insert (payments.py),
or with `write_settled` where that is not one statement (SQLite); card refunds take money back with
`_reverse`, by the workspace's refund policy. `_amount` checks a money amount given in minor units."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from chassis.errors import Invalid
from chassis.prepared import Prepared, bound
from services.billing.handlers.common import get_scoped, new_id
from services.billing.lifecycle import Invoice
from services.billing.tables import credit_applications, invoices

__all__ = ["_amount", "_settle", "settled", "write_settled", "_reverse"]


def _amount(value, name: str = "amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} is an integer in minor units (cents).", fields={name: "not an integer"})
    if value <= 0:
        raise Invalid(f"{name} must be positive.", fields={name: "must be positive"})
    return value


# Built once and prepared (chassis/prepared.py): every payment and credit sends it. Settling sets
# these three columns (Invoice.settle).
_SETTLED = Prepared(
    "billing_invoice_settled",
    invoices.update()
    .where(invoices.c.id == sa.bindparam("of_invoice", type_=sa.String))
    .values(bound(invoices, "amount_paid", "amount_credited", "status"))
    .returning(*invoices.c),
)


def _settle(uow, workspace_id: str, invoice_id: str, *, paid: int = 0, credited: int = 0):
    """Add money to an invoice under a row lock and recompute its status (Invoice.settle); returns the
    new row."""
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    return write_settled(uow, settled(row, paid=paid, credited=credited))


def settled(row: Any, *, paid: int = 0, credited: int = 0) -> SimpleNamespace:
    """The invoice's row (locked by the caller in this transaction) with money settled on it by the
    domain (Invoice.settle), and so its new status; not written yet."""
    invoice = Invoice.from_row(row)
    invoice.settle(paid=paid, credited=credited)
    values = vars(row) if isinstance(row, SimpleNamespace) else row._asdict()  # settled once already, or read
    return SimpleNamespace(**{**values, **invoice.changes()})


def write_settled(uow, row: SimpleNamespace) -> Any:
    """Write what `settled` changed; the row as written."""
    changes = {"status": row.status, "amount_paid": row.amount_paid, "amount_credited": row.amount_credited}
    return uow.execute(_SETTLED, {**changes, "of_invoice": row.id}).one()


def _reverse(uow, now, workspace_id: str, invoice_id: str, amount: int, policy: str, refund_id: str):
    """Take refunded money off an invoice: under "reopen" it is owed again; under "credit" a credit of
    the same amount keeps it settled. Returns the new row."""
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    invoice = Invoice.from_row(row)
    (refunded,) = invoice.reverse(amount, policy)
    if refunded.credited_back:
        uow.execute(
            credit_applications.insert().values(
                id=new_id(),
                workspace_id=workspace_id,
                client_id=row.client_id,
                source="refund",
                invoice_id=invoice_id,
                amount=amount,
                currency=row.currency,
                kind="applied",
                reference=refund_id,
                created_at=now,
            )
        )
    uow.execute(invoices.update().where(invoices.c.id == invoice_id).values(**invoice.changes()))
    return get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")
