"""Money that moves: payments applied to invoices, credits and retainers, balances, statements,
the client dashboard and the activity timeline."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from types import SimpleNamespace

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta

from chassis.db import UtcDateTime
from chassis.errors import Conflict, Invalid, NotFound, Unavailable
from chassis.fields import text
from chassis.money import Money
from chassis.sql import json_array_agg, json_object, json_rows, local_date, rows_from_json
from clients import verification
from services.billing import domain
from services.billing.aging import aging
from services.billing.handlers.common import (
    check_fields,
    client_row,
    client_snapshot,
    get_scoped,
    iso,
    new_id,
    page_bounds,
    parse_date,
    portal_recipients,
    record_activity,
    settings_of,
    workspace_row,
    workspace_today,
)
from services.billing.handlers.documents import PORTAL_QUOTES, QUOTE_ORDER, invoice_view, quote_view
from services.billing.handlers.summaries import AVAILABLE, BALANCES, OPEN, OWED, money_moved, params
from services.billing.handlers.verification import code_of, issue_code
from services.billing.tables import (
    activities,
    client_summaries,
    clients,
    credit_applications,
    credit_notes,
    invoices,
    payment_allocations,
    payment_payers,
    payments,
    processing_payments,
    quotes,
    refunds,
    verification_codes,
    workspaces,
)

__all__ = [
    "get_payment",
    "record_payment",
    "apply_credit",
    "apply_retainer",
    "refund_retainer",
    "client_balances",
    "statement",
    "client_dashboard",
    "list_activity",
    "list_payments",
    "record_refund",
    "list_refunds",
    "record_dispute",
]

log = logging.getLogger(__name__)
METHODS = {"card", "sepa_debit", "bank_transfer", "cash", "cheque", "other"}  # sepa_debit: through Stripe


def _amount(value, name: str = "amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} is an integer in minor units (cents).", **{name: "not an integer"})
    if value <= 0:
        raise Invalid(f"{name} must be positive.", **{name: "must be positive"})
    return value


def _settle(uow, workspace_id: str, invoice_id: str, *, paid: int = 0, credited: int = 0):
    """Add money to an invoice under a row lock and recompute its status; returns the new row."""
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    owed = domain.balance(row.total, row.amount_paid, row.amount_credited)
    domain.check_settlement(row.status, paid + credited, owed, "payment" if paid else "credit")
    new_paid, new_credited = row.amount_paid + paid, row.amount_credited + credited
    status = domain.status_after_settlement(row.status, row.total, new_paid, new_credited)
    uow.execute(
        invoices.update()
        .where(invoices.c.id == invoice_id)
        .values(amount_paid=new_paid, amount_credited=new_credited, status=status)
    )
    return get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")


PAYMENT_FIELDS = {
    "payment_id",
    "client_id",
    "invoice_id",
    "allocations",
    "amount",
    "currency",
    "method",
    "reference",
    "received_at",
    "source",
}


def record_payment(uow, now: datetime, workspace_id: str, data: dict, *, allow_unapplied: bool = False) -> dict:
    """Apply a payment to one or more invoices (oldest first when several). Idempotent by payment id:
    the same payment arriving twice (a duplicate event, a retried call) is applied once.

    allow_unapplied is for card payments only (BillingService.on_payment_succeeded): money already
    charged cannot be refused, so each allocation is clipped to what its invoice still owes (nothing
    for a paid or void one) and the rest of data["amount"] stays on the payment as `unapplied`, which
    is the client's credit. Without it, an allocation the invoice cannot take is an error."""
    check_fields(data, PAYMENT_FIELDS)
    payment_id = text(data.get("payment_id"), "payment_id", 64, null="") or new_id()
    existing = uow.execute(sa.select(payments).where(payments.c.id == payment_id)).first()
    if existing is not None:
        if existing.workspace_id != workspace_id:
            raise Conflict("This payment id is already used.", payment_id="taken")
        return _payment_view(uow, existing)
    allocations, method, received_at = _payment_request(data, now)
    applied = _apply(uow, workspace_id, allocations, allow_unapplied)
    if data.get("client_id") and data["client_id"] != applied.client_id:
        raise Invalid("The invoices belong to another client.", client_id="mismatch")
    if data.get("currency") and data["currency"] != applied.currency:
        raise Invalid("The payment currency differs from the invoice currency.", currency="mismatch")
    total = sum(amount for _, amount in applied.settled)
    charged = _charged(data, applied.requested, total, allow_unapplied)
    client_id, currency = applied.client_id, applied.currency
    uow.execute(
        payments.insert().values(
            id=payment_id,
            workspace_id=workspace_id,
            client_id=client_id,
            kind="retainer" if applied.kinds == {"retainer"} else "invoice",
            amount=charged,
            unapplied=charged - total,
            currency=currency,
            method=method,
            reference=text(data.get("reference", ""), "reference", 200),
            source=text(data.get("source", "offline"), "source", 20),
            received_at=received_at,
        )
    )
    issue_code(uow, now, workspace_id, client_id, "receipt", payment_id)
    if applied.settled:
        uow.execute(
            payment_allocations.insert(),
            [{"payment_id": payment_id, "invoice_id": row.id, "amount": amount} for row, amount in applied.settled],
        )
    _announce_applied(uow, workspace_id, payment_id, client_id, currency, applied.settled)
    money_moved(uow, now, workspace_id, client_id)
    summary = f"Payment of {Money(charged, currency).format()} recorded"
    if charged > total:
        summary += f", {Money(charged - total, currency).format()} kept as credit"
    record_activity(uow, now, workspace_id, client_id, "payment.recorded", summary, {"payment_id": payment_id})
    view = _payment_view(uow, uow.execute(sa.select(payments).where(payments.c.id == payment_id)).one())
    uow.publish(
        "payment.recorded",
        workspace_id,
        {**view, "recipients": portal_recipients(uow, client_id), "paid_by_contact_id": _payer(uow, payment_id)},
    )
    return view


def _payer(uow, payment_id: str) -> str | None:
    """The contact who started this card payment in the portal, if one did (its receipt is its own)."""
    return uow.execute(
        sa.select(payment_payers.c.contact_id).where(payment_payers.c.payment_id == payment_id)
    ).scalar_one_or_none()


def _payment_request(data: dict, now: datetime) -> tuple[list, str, datetime]:
    """(allocations, method, received_at) of a payment, checked."""
    allocations = data.get("allocations")
    if allocations is None:
        allocations = [{"invoice_id": data.get("invoice_id"), "amount": data.get("amount")}]
    if not isinstance(allocations, list) or not allocations:
        raise Invalid("Say which invoices the payment is for.", allocations="required")
    method = data.get("method", "bank_transfer")
    if method not in METHODS:
        raise Invalid("Unknown payment method.", method=f"one of {', '.join(sorted(METHODS))}")
    try:
        received_at = datetime.fromisoformat(data["received_at"]) if data.get("received_at") else now
    except (TypeError, ValueError):
        raise Invalid("received_at is an ISO 8601 date and time.", received_at="not a date-time") from None
    if received_at.tzinfo is None:
        raise Invalid("received_at needs a time zone.", received_at="naive datetime")
    return allocations, method, received_at


@dataclass
class _Applied:
    settled: list = field(default_factory=list)  # (invoice row, amount) for each invoice paid something
    client_id: str | None = None
    currency: str | None = None
    kinds: set = field(default_factory=set)
    requested: int = 0  # what the allocations asked for, before any clipping


def _apply(uow, workspace_id: str, allocations: list, allow_unapplied: bool) -> _Applied:
    """Settle each allocation on its invoice (locked; clipped to what it owes with allow_unapplied)."""
    applied = _Applied()
    # Lock invoices in a fixed order so two payments touching the same invoices cannot deadlock.
    for i, allocation in enumerate(sorted(allocations, key=lambda a: str(a.get("invoice_id")))):
        amount = _amount(allocation.get("amount"), f"allocations.{i}.amount")
        invoice_id = str(allocation.get("invoice_id") or "")
        applied.requested += amount
        if allow_unapplied:
            row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
            owed = domain.balance(row.total, row.amount_paid, row.amount_credited)
            amount = min(amount, owed if row.status in domain.OPEN_STATUSES else 0)
            if amount:
                row = _settle(uow, workspace_id, invoice_id, paid=amount)
        else:
            row = _settle(uow, workspace_id, invoice_id, paid=amount)
        if applied.client_id not in (None, row.client_id) or applied.currency not in (None, row.currency):
            raise Conflict("One payment is for one client's invoices in one currency.", allocations="mixed")
        applied.client_id, applied.currency = row.client_id, row.currency
        if amount:
            applied.kinds.add(row.kind)
            applied.settled.append((row, amount))
    return applied


def _charged(data: dict, requested: int, total: int, allow_unapplied: bool) -> int:
    """What the payment is for: the allocations' total, or (a card charge) the amount charged."""
    if allow_unapplied:
        charged = requested if data.get("amount") is None else _amount(data["amount"])
        if charged < requested:
            raise Invalid("The amount is less than the sum of the allocations.", amount="mismatch")
        return charged
    if data.get("amount") is not None and data.get("allocations") is not None and data["amount"] != total:
        raise Invalid("The amount differs from the sum of the allocations.", amount="mismatch")
    return total


def _announce_applied(uow, workspace_id: str, payment_id: str, client_id: str, currency: str, settled: list) -> None:
    for row, amount in settled:
        event = {
            "payment_id": payment_id,
            "invoice_id": row.id,
            "number": row.number,
            "client_id": client_id,
            "amount": amount,
            "currency": currency,
            "status": row.status,
            "balance": domain.balance(row.total, row.amount_paid, row.amount_credited),
        }
        uow.publish("invoice.payment_applied", workspace_id, event)
        if row.status == "paid":
            uow.publish("invoice.paid", workspace_id, event)


def _payment_view(uow, row) -> dict:
    allocations = uow.execute(
        sa.select(payment_allocations.c.invoice_id, payment_allocations.c.amount, invoices.c.number)
        .join(invoices, invoices.c.id == payment_allocations.c.invoice_id)
        .where(payment_allocations.c.payment_id == row.id)
    ).all()
    # amount = what the allocations still pay + unapplied + refunded
    return {
        "id": row.id,
        "client_id": row.client_id,
        "kind": row.kind,
        "amount": row.amount,
        "currency": row.currency,
        "method": row.method,
        "reference": row.reference,
        "source": row.source,
        "received_at": iso(row.received_at),
        "allocations": [{"invoice_id": a.invoice_id, "number": a.number, "amount": a.amount} for a in allocations],
        "unapplied": row.unapplied,
        "refunded": _refunded(uow, row.id),
        "dispute_status": row.dispute_status,
    }


def _refunded(uow, payment_id: str) -> int:
    return int(
        uow.execute(sa.select(sa.func.sum(refunds.c.amount)).where(refunds.c.payment_id == payment_id)).scalar_one()
        or 0
    )


def get_payment(uow, now: datetime, workspace_id: str, payment_id: str, client_id: str | None = None) -> dict:
    """One payment with what it paid, and the client's details for a receipt."""
    row = get_scoped(uow, payments, workspace_id, payment_id, "payment", client_id=client_id)
    client = client_row(uow, workspace_id, row.client_id)
    return {
        **_payment_view(uow, row),
        "verification_code": code_of(uow, "receipt", payment_id),  # printed on the receipt
        "client": client_snapshot(uow, client),
        "locale": client.locale,
        "timezone": client.timezone,
    }


def list_payments(
    uow, now: datetime, workspace_id: str, client_id: str | None = None, kind: str | None = None, sort: str = "-date"
) -> list[dict]:
    query = sa.select(payments).where(payments.c.workspace_id == workspace_id)
    if client_id:
        query = query.where(payments.c.client_id == client_id)
    if kind:
        if kind not in ("invoice", "retainer"):
            raise Invalid("kind is invoice or retainer.", kind="unknown")
        query = query.where(payments.c.kind == kind)
    columns = {"date": payments.c.received_at, "amount": payments.c.amount}
    column = columns.get(sort.lstrip("-"))
    if column is None:
        raise Invalid("Unknown sort.", sort="date or amount, optionally with a leading -")
    rows = uow.execute(query.order_by(column.desc() if sort.startswith("-") else column.asc())).all()
    return [_payment_view(uow, r) for r in rows]


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


REFUND_FIELDS = {"refund_id", "payment_id", "amount", "currency", "client_id", "reason"}
DISPUTE_FIELDS = {"dispute_id", "payment_id", "amount", "currency", "client_id", "reason", "status"}


def _text_field(data: dict, key: str, limit: int, required: bool = False) -> str:
    return text(data.get(key), key, limit, required=required, null="")


def _card_payment(uow, workspace_id: str, data: dict):
    """The payment a refund or dispute is about, locked, checked against the event's client and currency.

    Unknown yet is not a refusal: payment.succeeded and payment.refunded arrive on different queues,
    so a refund made right after the payment can overtake it. Unavailable has the consumer retry
    with backoff, and park it as a dead letter (replayable) only if the payment never arrives."""
    try:
        payment = get_scoped(uow, payments, workspace_id, str(data.get("payment_id") or ""), "payment", lock=True)
    except NotFound:
        raise Unavailable("The payment is not recorded here yet.") from None
    if data.get("client_id") and data["client_id"] != payment.client_id:
        raise Invalid("The payment belongs to another client.", client_id="mismatch")
    if data.get("currency") and data["currency"] != payment.currency:
        raise Invalid("The currency differs from the payment's.", currency="mismatch")
    return payment


def _refund_view(row) -> dict:
    return {
        "id": row.id,
        "payment_id": row.payment_id,
        "client_id": row.client_id,
        "amount": row.amount,
        "currency": row.currency,
        "policy": row.policy,
        "reason": row.reason,
        "created_at": iso(row.created_at),
    }


def _reverse(uow, now, workspace_id: str, invoice_id: str, amount: int, policy: str, refund_id: str):
    """Take refunded money off an invoice: under "reopen" it is owed again; under "credit" a credit of
    the same amount keeps it settled. Returns the new row."""
    row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", lock=True)
    paid, credited, status = row.amount_paid - amount, row.amount_credited, row.status
    if policy == "credit":
        credited += amount
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
    else:
        status = domain.status_after_refund(row.status, row.total, paid, credited, row.viewed_at is not None)
    uow.execute(
        invoices.update()
        .where(invoices.c.id == invoice_id)
        .values(amount_paid=paid, amount_credited=credited, status=status)
    )
    return get_scoped(uow, invoices, workspace_id, invoice_id, "invoice")


def record_refund(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    """A card refund of all or part of a payment; idempotent by refund id. It takes back the payment's
    unapplied money first, then what the payment paid on invoices, newest invoice first, by the
    workspace's refund_policy (see _reverse)."""
    check_fields(data, REFUND_FIELDS)
    refund_id = _text_field(data, "refund_id", 64, required=True)
    existing = uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).first()
    if existing is not None:
        if existing.workspace_id != workspace_id:
            raise Invalid("This refund id is already used.", refund_id="taken")
        return _refund_view(existing)
    amount = _amount(data.get("amount"))
    reason = _text_field(data, "reason", 2000)
    payment = _card_payment(uow, workspace_id, data)
    refundable = payment.amount - _refunded(uow, payment.id)
    if amount > refundable:
        raise Invalid(
            f"Only {Money(refundable, payment.currency).format()} of this payment can be refunded.",
            amount="more than refundable",
        )
    policy = settings_of(workspace_row(uow, workspace_id)).refund_policy
    # Unapplied money first: it paid no invoice. If the client already spent it as credit, their
    # available credit goes below zero, which is what they owe back.
    from_unapplied = min(amount, payment.unapplied)
    if from_unapplied:
        uow.execute(
            payments.update().where(payments.c.id == payment.id).values(unapplied=payments.c.unapplied - from_unapplied)
        )
    left, reversals = amount - from_unapplied, []
    allocated = uow.execute(
        sa.select(payment_allocations.c.id, payment_allocations.c.invoice_id, payment_allocations.c.amount)
        .join(invoices, invoices.c.id == payment_allocations.c.invoice_id)
        .where(payment_allocations.c.payment_id == payment.id)
        .order_by(invoices.c.due_date.desc(), invoices.c.issue_date.desc(), invoices.c.number.desc())
    ).all()
    # allocations + unapplied + earlier refunds make up the payment's amount, so this covers `left`
    for allocation in allocated:
        if not left:
            break
        take = min(left, allocation.amount)
        if take == allocation.amount:  # the payment no longer pays this invoice at all
            uow.execute(payment_allocations.delete().where(payment_allocations.c.id == allocation.id))
        else:
            uow.execute(
                payment_allocations.update()
                .where(payment_allocations.c.id == allocation.id)
                .values(amount=allocation.amount - take)
            )
        row = _reverse(uow, now, workspace_id, allocation.invoice_id, take, policy, refund_id)
        reversals.append(
            {
                "invoice_id": row.id,
                "number": row.number,
                "amount": take,
                "status": row.status,
                "balance": domain.balance(row.total, row.amount_paid, row.amount_credited),
            }
        )
        left -= take
    uow.execute(
        refunds.insert().values(
            id=refund_id,
            workspace_id=workspace_id,
            payment_id=payment.id,
            client_id=payment.client_id,
            amount=amount,
            currency=payment.currency,
            policy=policy,
            reason=reason,
            created_at=now,
        )
    )
    money_moved(uow, now, workspace_id, payment.client_id)
    view = _refund_view(uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).one())
    uow.publish(
        "refund.recorded",
        workspace_id,
        {
            **view,
            "from_unapplied": from_unapplied,
            "reversals": reversals,
            "recipients": portal_recipients(uow, payment.client_id),
        },
    )
    record_activity(
        uow,
        now,
        workspace_id,
        payment.client_id,
        "refund.recorded",
        f"Refund of {Money(amount, payment.currency).format()} recorded",
        {"refund_id": refund_id, "payment_id": payment.id},
    )
    return view


def list_refunds(
    uow, now: datetime, workspace_id: str, payment_id: str | None = None, client_id: str | None = None
) -> list[dict]:
    query = sa.select(refunds).where(refunds.c.workspace_id == workspace_id)
    if payment_id:
        query = query.where(refunds.c.payment_id == payment_id)
    if client_id:
        query = query.where(refunds.c.client_id == client_id)
    return [_refund_view(r) for r in uow.execute(query.order_by(refunds.c.created_at.desc(), refunds.c.id)).all()]


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


def client_balances(uow, now: datetime, workspace_id: str, client_id: str) -> dict:
    client = client_row(uow, workspace_id, client_id)
    row = uow.execute(BALANCES, params(workspace_id, client_id, client.currency)).one()
    return {
        "currency": client.currency,
        "outstanding": int(row.outstanding),
        "credit_available": int(row.credit),
        "retainer_available": int(row.retainer),
    }


def statement(uow, now: datetime, workspace_id: str, client_id: str, start, end, currency: str | None = None) -> dict:
    """Statement of account: opening balance, each invoice, payment, credit note and refund in date
    order with a running balance, and the closing balance. Void and draft invoices are not charges."""
    client = client_row(uow, workspace_id, client_id)
    ws = workspace_row(uow, workspace_id)
    today = workspace_today(ws, now)
    # Without a period: the last three months, so that it opens with content even on the 1st. Without its
    # start: the three months before its end; without its end: today (or the start, when that is later).
    start, end = parse_date(start, "from"), parse_date(end, "to")
    end = end or max(today, start or today)
    start = start or end - relativedelta(months=3)
    if end < start:
        raise Invalid("The period's start is after its end.", period="from after to")
    currency = currency or client.currency
    entries: list[domain.StatementEntry] = []
    for r in uow.execute(
        sa.select(invoices).where(
            invoices.c.client_id == client_id,
            invoices.c.kind == "standard",
            invoices.c.currency == currency,
            invoices.c.status.notin_(["draft", "void"]),
        )
    ).all():
        entries.append(domain.StatementEntry(r.issue_date, "invoice", r.number, r.total))
    tz_today = lambda moment: workspace_today(ws, moment)  # noqa: E731 - payment dates in the business's zone
    for r in uow.execute(
        sa.select(payments).where(payments.c.client_id == client_id, payments.c.currency == currency)
    ).all():
        entries.append(domain.StatementEntry(tz_today(r.received_at), "payment", r.reference or r.method, r.amount))
    for r in uow.execute(
        sa.select(credit_notes).where(credit_notes.c.client_id == client_id, credit_notes.c.currency == currency)
    ).all():
        entries.append(domain.StatementEntry(r.issue_date, "credit", r.number, r.total))
    for r in uow.execute(
        sa.select(credit_applications).where(
            credit_applications.c.client_id == client_id,
            credit_applications.c.currency == currency,
            credit_applications.c.kind == "refunded",
        )
    ).all():
        entries.append(
            domain.StatementEntry(tz_today(r.created_at), "refund", r.reference or "Retainer refund", r.amount)
        )
    # Card refunds owe again what they gave back; under the credit policy the invoices they reversed
    # stay settled by a credit of what was taken off them (the unapplied part is not credited).
    credited = dict(
        uow.execute(
            sa.select(credit_applications.c.reference, sa.func.sum(credit_applications.c.amount))
            .where(
                credit_applications.c.client_id == client_id,
                credit_applications.c.currency == currency,
                credit_applications.c.source == "refund",
            )
            .group_by(credit_applications.c.reference)
        ).all()
    )
    for r in uow.execute(
        sa.select(refunds, payments.c.reference.label("paid_by"), payments.c.method)
        .join(payments, payments.c.id == refunds.c.payment_id)
        .where(refunds.c.client_id == client_id, refunds.c.currency == currency)
    ).all():
        label = f"Refund of {r.paid_by or r.method}"
        entries.append(domain.StatementEntry(tz_today(r.created_at), "refund", label, r.amount))
        if credited.get(r.id):
            entries.append(
                domain.StatementEntry(
                    tz_today(r.created_at), "credit", f"Credit for {label.lower()}", int(credited[r.id])
                )
            )
    opening = sum(e.effect for e in entries if e.on < start)
    result = domain.statement(opening, [e for e in entries if start <= e.on <= end])
    # what is owed now by days past due: as of today whatever the period, from the dashboard's read
    open_by_due = uow.execute(_STATEMENT_AGING, params(workspace_id, client_id, currency)).all()
    result["aging"] = aging(((r.currency, r.due_date, r.owed) for r in open_by_due), today, first=currency)[0]
    return {
        "client": client_snapshot(uow, client),
        "client_id": client.id,
        "locale": client.locale,
        "timezone": client.timezone,
        "currency": currency,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "today": today.isoformat(),
        **result,
    }


def _activity(uow, workspace_id: str, client_id: str, limit) -> list[dict]:
    rows = uow.execute(
        sa.select(activities)
        .where(activities.c.workspace_id == workspace_id, activities.c.client_id == client_id)
        .order_by(activities.c.occurred_at.desc(), activities.c.id.desc())
        .limit(page_bounds(limit, 0, 200)[0])
    ).all()
    return [_activity_view(r) for r in rows]


def _activity_view(row) -> dict:
    return {"kind": row.kind, "summary": row.summary, "data": row.data, "occurred_at": iso(row.occurred_at)}


def list_activity(uow, now: datetime, workspace_id: str, client_id: str, limit: int = 50) -> list[dict]:
    client_row(uow, workspace_id, client_id)
    return _activity(uow, workspace_id, client_id, limit)


_client, _workspace = sa.bindparam("of_client"), sa.bindparam("of_workspace")  # as in summaries.params
_now = sa.bindparam("now", type_=UtcDateTime)
_ws = workspaces.alias("business")
_summary = client_summaries
# Overdue: the client's open invoices (ix_invoices_open) due before the business's today; counted in
# any currency, summed in the client's (domain.is_overdue). The client's currency and the business's
# time zone are looked up once for the whole scan.
_client_currency = (
    sa.select(clients.c.currency).where(clients.c.id == _client, clients.c.workspace_id == _workspace).scalar_subquery()
)
_business_zone = sa.select(workspaces.c.timezone).where(workspaces.c.id == _workspace).scalar_subquery()
# The same scan gives the aging buckets: what is owed per currency and due date, which
# aging.aging() sorts into buckets by days past due (few rows: one per distinct due date).
OPEN_BY_DUE = (
    sa.select(
        invoices.c.currency,
        invoices.c.due_date,
        sa.func.count().label("invoices"),
        sa.func.sum(OWED).label("owed"),
    )
    .where(*OPEN)
    .group_by(invoices.c.currency, invoices.c.due_date)
    .subquery("open_by_due")
)
_past_due = OPEN_BY_DUE.c.due_date < local_date(_now, _business_zone)
_OVERDUE = (
    sa.select(
        sa.func.coalesce(sa.func.sum(sa.case((_past_due, OPEN_BY_DUE.c.invoices), else_=0)), 0).label("overdue_count"),
        sa.func.coalesce(
            sa.func.sum(
                sa.case((_past_due & (OPEN_BY_DUE.c.currency == _client_currency), OPEN_BY_DUE.c.owed), else_=0)
            ),
            0,
        ).label("overdue_amount"),
        json_array_agg(
            json_object(
                *(
                    part
                    for name in ("currency", "due_date", "owed")
                    for part in (sa.literal_column(f"'{name}'"), OPEN_BY_DUE.c[name])
                )
            )
        ).label("open_by_due"),
    )
    .select_from(OPEN_BY_DUE)
    .subquery("overdue")
)
# The statement's aging: the same grouped read, in the statement's currency.
_STATEMENT_AGING = sa.select(OPEN_BY_DUE.c.currency, OPEN_BY_DUE.c.due_date, OPEN_BY_DUE.c.owed).where(
    OPEN_BY_DUE.c.currency == sa.bindparam("in_currency")
)


def _open_by_due(value) -> list[tuple[str, date, int]]:
    """The open_by_due JSON array as (currency, due date, owed) rows (NULL or [] when nothing is open)."""
    items = json.loads(value) if isinstance(value, str) else (value or [])
    return [(i["currency"], date.fromisoformat(str(i["due_date"])[:10]), int(i["owed"])) for i in items if i]


# The recent lists as the portal sees them: issued, not archived, newest first.


def _grouped(code: str | None) -> str | None:
    return None if code is None else verification.grouped(code)


def _code_of(kind: str, document_id):
    """A listed document's verification code, in the same statement (the listings look them up apart)."""
    found = verification_codes.c.document_kind == kind, verification_codes.c.document_id == document_id
    return sa.select(verification_codes.c.code).where(*found).scalar_subquery().label("verification_code")


_RECENT_INVOICES = sa.select(invoices, _code_of("invoice", invoices.c.id)).where(
    invoices.c.client_id == _client,
    invoices.c.workspace_id == _workspace,
    invoices.c.status != "draft",
    invoices.c.archived_at.is_(None),
)
_RECENT_QUOTES = sa.select(quotes, _code_of("quote", quotes.c.id)).where(
    quotes.c.client_id == _client, quotes.c.workspace_id == _workspace, *PORTAL_QUOTES
)
_RECENT_ACTIVITY = sa.select(
    activities.c.kind, activities.c.summary, activities.c.data, activities.c.occurred_at
).where(activities.c.workspace_id == _workspace, activities.c.client_id == _client)
# What bank debits in flight are paying (kept from payments' events), in the dashboard's one statement.
_PROCESSING = (
    sa.select(sa.func.coalesce(sa.func.sum(processing_payments.c.amount), 0))
    .where(
        processing_payments.c.workspace_id == _workspace,
        processing_payments.c.client_id == _client,
        processing_payments.c.settled_at.is_(None),
    )
    .scalar_subquery()
    .label("processing")
)
_BUSINESS = ("name", "email", "phone", "address", "logo_url", "brand_color")
_DASHBOARD = (
    sa.select(
        clients.c.id,
        clients.c.name,
        clients.c.address,
        clients.c.phone,
        clients.c.currency,
        clients.c.locale,
        clients.c.timezone,
        *(getattr(_ws.c, name).label(f"business_{name}") for name in _BUSINESS),
        local_date(_now, _ws.c.timezone).label("today"),
        _summary.c.currency.label("summary_currency"),
        _summary.c.outstanding,
        _summary.c.credit_available,
        _summary.c.retainer_available,
        _summary.c.last_payment_amount,
        _summary.c.last_payment_currency,
        _summary.c.last_payment_received_at,
        _OVERDUE.c.overdue_count,
        _OVERDUE.c.overdue_amount,
        _OVERDUE.c.open_by_due,
        _PROCESSING,
        json_rows(_RECENT_INVOICES, (invoices.c.issue_date.desc(), invoices.c.number.desc()), 5).label(
            "recent_invoices"
        ),
        json_rows(_RECENT_QUOTES, QUOTE_ORDER, 5).label("recent_quotes"),
        json_rows(_RECENT_ACTIVITY, (activities.c.occurred_at.desc(), activities.c.id.desc()), 10).label(
            "recent_activity"
        ),
    )
    .select_from(
        clients.join(_ws, _ws.c.id == clients.c.workspace_id)
        .outerjoin(
            _summary, (_summary.c.client_id == clients.c.id) & (_summary.c.workspace_id == clients.c.workspace_id)
        )
        .join(_OVERDUE, sa.true())
    )
    .where(clients.c.id == _client, clients.c.workspace_id == _workspace)
)


def client_dashboard(uow, now: datetime, workspace_id: str, client_id: str) -> dict:
    """What the portal's dashboard shows, scoped to one client of one workspace, in one statement:
    the client and its business, the client's summary row (handlers/summaries.py: kept by every
    change to its money, never summed here), the overdue figures from its open invoices as of the
    business's today, and the recent invoices, quotes and activity as JSON lists."""
    row = uow.execute(_DASHBOARD, {**params(workspace_id, client_id), "now": now}).first()
    if row is None:
        raise NotFound("No such client.")
    summary = row
    if row.summary_currency != row.currency:  # none yet, or made before a change of currency
        log.warning(
            "client summary missing; portalctl summaries repair rebuilds it",
            extra={"workspace_id": workspace_id, "client_id": client_id},
        )
        summary = SimpleNamespace(outstanding=0, credit_available=0, retainer_available=0, last_payment_amount=None)
    money = lambda amount: {"amount": int(amount), "currency": row.currency}  # noqa: E731
    today = row.today
    return {
        "client": {
            "id": row.id,
            "name": row.name,
            "address": row.address,
            "phone": row.phone,
            "currency": row.currency,
            "locale": row.locale,
            "timezone": row.timezone,
        },
        "business": {name: getattr(row, f"business_{name}") for name in _BUSINESS},
        "outstanding": money(summary.outstanding),
        # of the outstanding, what bank debits are paying already (settled or failed within days)
        "processing": money(int(row.processing)),
        "overdue": {"count": int(row.overdue_count), **money(row.overdue_amount)},
        # what is owed by days past due (the business's today), per currency, the client's first
        "aging": aging(_open_by_due(row.open_by_due), today, first=row.currency),
        "credit_available": money(summary.credit_available),
        "retainer_available": money(summary.retainer_available),
        "last_payment": None
        if summary.last_payment_amount is None
        else {
            "amount": summary.last_payment_amount,
            "currency": summary.last_payment_currency,
            "received_at": iso(summary.last_payment_received_at),
        },
        "recent_invoices": [
            {**invoice_view(r, today), "verification_code": _grouped(r.verification_code)}
            for r in rows_from_json(_RECENT_INVOICES, row.recent_invoices)
        ],
        "recent_quotes": [
            {**quote_view(r, today), "verification_code": _grouped(r.verification_code)}
            for r in rows_from_json(_RECENT_QUOTES, row.recent_quotes)
        ],
        "recent_activity": [_activity_view(r) for r in rows_from_json(_RECENT_ACTIVITY, row.recent_activity)],
    }
