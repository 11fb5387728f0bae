"""A client's credit and retainer money: what is available in one currency, applying it to a standard
invoice (`apply_credit`, `apply_retainer`, and payment plans through `_use_balance`), refunding
retainer money not yet used, and the client's balances (outstanding, credit and retainer available)
as the admin API shows them. The figures are the SQL of summaries.py; the invoice is settled through
settlement.py, under a lock on the client so that two uses of one balance cannot both spend it."""

from __future__ import annotations

from datetime import datetime

from chassis.errors import Conflict
from chassis.fields import text
from chassis.money import Money
from services.billing import domain
from services.billing.handlers.common import (
    client_row,
    get_scoped,
    new_id,
    record_activity,
    workspace_row,
    workspace_today,
)
from services.billing.handlers.documents import invoice_view
from services.billing.handlers.settlement import _amount, _settle
from services.billing.handlers.summaries import AVAILABLE, BALANCES, money_moved, params
from services.billing.tables import credit_applications, invoices

__all__ = ["apply_credit", "apply_retainer", "refund_retainer", "client_balances"]


def _available(uow, client_id: str, currency: str) -> dict:
    """Credit and retainer money not yet used, in one currency."""
    row = uow.execute(AVAILABLE, params(None, client_id, currency)).one()
    return {"credit": int(row.credit), "retainer": int(row.retainer)}


def _use_balance(uow, now, workspace_id: str, invoice_id: str, amount, source: str, reference: str = "") -> dict:
    """Apply credit or retainer money to a standard invoice; `reference` tags the application (the
    key of a payment plan, see payment_plans.py)."""
    amount = _amount(amount)
    target = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")
    if target.kind == "retainer":
        raise Conflict("Credits are applied to standard invoices, not retainer invoices.", invoice_id="retainer")
    client_row(uow, workspace_id, target.client_id, lock=True)  # serialise balance use per client
    available = _available(uow, target.client_id, target.currency)[source]
    if amount > available:
        raise Conflict(
            f"Only {Money(available, target.currency).format()} of {source} is available.", amount="more than available"
        )
    row = _settle(uow, workspace_id, invoice_id, credited=amount)
    uow.execute(
        credit_applications.insert().values(
            id=new_id(),
            workspace_id=workspace_id,
            client_id=row.client_id,
            source=source,
            invoice_id=invoice_id,
            amount=amount,
            currency=row.currency,
            kind="applied",
            reference=reference[:200],
            created_at=now,
        )
    )
    money_moved(uow, now, workspace_id, row.client_id)
    event = {
        "invoice_id": invoice_id,
        "number": row.number,
        "client_id": row.client_id,
        "amount": amount,
        "currency": row.currency,
        "status": row.status,
        "balance": domain.balance(row.total, row.amount_paid, row.amount_credited),
    }
    uow.publish(f"{source}.applied", workspace_id, event)
    if row.status == "paid":
        uow.publish("invoice.paid", workspace_id, event)
    record_activity(
        uow,
        now,
        workspace_id,
        row.client_id,
        f"{source}.applied",
        f"{Money(amount, row.currency).format()} of {source} applied to {row.number}",
        {"invoice_id": invoice_id},
    )
    return invoice_view(row, workspace_today(workspace_row(uow, workspace_id), now))


def apply_credit(uow, now: datetime, workspace_id: str, invoice_id: str, amount: int) -> dict:
    return _use_balance(uow, now, workspace_id, invoice_id, amount, "credit")


def apply_retainer(uow, now: datetime, workspace_id: str, invoice_id: str, amount: int) -> dict:
    return _use_balance(uow, now, workspace_id, invoice_id, amount, "retainer")


def refund_retainer(uow, now: datetime, workspace_id: str, client_id: str, amount: int, reference: str = "") -> dict:
    amount = _amount(amount)
    client = client_row(uow, workspace_id, client_id, lock=True)
    available = _available(uow, client_id, client.currency)["retainer"]
    if amount > available:
        raise Conflict(
            f"Only {Money(available, client.currency).format()} of retainer is available.", amount="more than available"
        )
    refund_id = new_id()
    uow.execute(
        credit_applications.insert().values(
            id=refund_id,
            workspace_id=workspace_id,
            client_id=client_id,
            source="retainer",
            invoice_id=None,
            amount=amount,
            currency=client.currency,
            kind="refunded",
            reference=text(reference, "reference", 200),
            created_at=now,
        )
    )
    money_moved(uow, now, workspace_id, client_id)
    uow.publish(
        "retainer.refunded",
        workspace_id,
        {"id": refund_id, "client_id": client_id, "amount": amount, "currency": client.currency},
    )
    record_activity(
        uow,
        now,
        workspace_id,
        client_id,
        "retainer.refunded",
        f"{Money(amount, client.currency).format()} of retainer refunded",
    )
    return {"id": refund_id, "amount": amount, "currency": client.currency, "retainer_available": available - amount}


def client_balances(uow, now: datetime, workspace_id: str, client_id: str) -> dict:
    client = client_row(uow, workspace_id, client_id)
    row = uow.execute(BALANCES, params(workspace_id, client_id, client.currency)).one()
    return {
        "currency": client.currency,
        "outstanding": int(row.outstanding),
        "credit_available": int(row.credit),
        "retainer_available": int(row.retainer),
    }
