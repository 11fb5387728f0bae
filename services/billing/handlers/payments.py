"""Payments: recording one against one or more of a client's invoices (offline payments from the
admin API, card and bank debit payments from payments' events), and reading and listing them with
what they paid. A payment is idempotent by its id. Money a card payment brings beyond what its
invoices still owe stays on it as `unapplied`, which is the client's credit (see balances.py); the
invoices themselves are settled through settlement.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from chassis.errors import Conflict, Invalid, NotFound
from chassis.fields import text
from chassis.money import Money
from chassis.prepared import Prepared, bound
from services.billing import domain
from services.billing.handlers.common import (
    check_fields,
    client_row,
    client_snapshot,
    get_scoped,
    iso,
    new_id,
    occurred,
    portal_recipients,
    record_activity,
)
from services.billing.handlers.engagement import record_signals
from services.billing.handlers.processing import payment_succeeded
from services.billing.handlers.settlement import _amount, settled, write_settled
from services.billing.handlers.summaries import money_moved
from services.billing.handlers.verification import code_of, issue_code
from services.billing.tables import invoices, payment_allocations, payment_payers, payments, refunds

__all__ = [
    "record_payment",
    "record_payment_once",
    "record_stripe_payment",
    "read_stripe_payments_together",
    "get_payment",
    "list_payments",
]

METHODS = {"card", "sepa_debit", "bank_transfer", "cash", "cheque", "other"}  # sepa_debit: through Stripe
PAYMENT_FIELDS = {
    "payment_id",
    "client_id",
    "invoice_id",
    "allocations",
    "amount",
    "currency",
    "method",
    "reference",
    "stripe_reference",
    "received_at",
    "source",
}


# Built once and prepared (chassis/prepared.py), as are the two reads after it: every payment sends them.
_PAYMENT_COLUMNS = bound(
    payments,
    "id",
    "workspace_id",
    "client_id",
    "kind",
    "amount",
    "unapplied",
    "currency",
    "method",
    "reference",
    "stripe_reference",
    "source",
    "received_at",
)


def _paid_by(payment_id: sa.ColumnElement[str]) -> sa.Label[str]:
    """The contact who started this card payment in the portal, if one did (its receipt is its own):
    read in the same round trip as the payment's insert."""
    return (
        sa.select(payment_payers.c.contact_id)
        .where(payment_payers.c.payment_id == payment_id)
        .scalar_subquery()
        .label("paid_by_contact_id")
    )


_NEW_PAYMENT = Prepared(
    "billing_payment_new",
    payments.insert()
    .values(_PAYMENT_COLUMNS)
    .returning(*payments.c, _paid_by(sa.bindparam("id", type_=payments.c.id.type))),  # the new row's id
)
# On PostgreSQL the invoices a payment settles, the payment and its allocations are written in one
# statement: the invoices' new amounts and status (settled by the domain, under the locks _apply took),
# given as four arrays, by an UPDATE in a data-modifying WITH query; the allocations, given as two
# arrays (invoices, amounts), by an INSERT in another. Their foreign key is checked as the statement
# ends, once the payment's row is there.
_new_payment = payments.insert().values(_PAYMENT_COLUMNS).returning(*payments.c).cte("new_payment")
_settling = (
    sa.func.unnest(
        sa.bindparam("settled_invoices", type_=postgresql.ARRAY(sa.String)),
        sa.bindparam("settled_statuses", type_=postgresql.ARRAY(sa.String)),
        sa.bindparam("settled_paid", type_=postgresql.ARRAY(sa.BigInteger)),
        sa.bindparam("settled_credited", type_=postgresql.ARRAY(sa.BigInteger)),
    )
    .table_valued("id", "status", "amount_paid", "amount_credited")
    .render_derived(name="settling")
)
_settled_invoices = (
    invoices.update()
    .where(invoices.c.id == _settling.c.id)
    .values(status=_settling.c.status, amount_paid=_settling.c.amount_paid, amount_credited=_settling.c.amount_credited)
    .cte("settled_invoices")
)
_allocated = (
    sa.func.unnest(
        sa.bindparam("allocated_invoices", type_=postgresql.ARRAY(sa.String)),
        sa.bindparam("allocated_amounts", type_=postgresql.ARRAY(sa.BigInteger)),
    )
    .table_valued("invoice_id", "amount")
    .render_derived(name="allocated")
)
_SETTLED_NEW_PAYMENT_AND_ALLOCATIONS = Prepared(
    "billing_payment_settled_new_allocated",
    sa.select(*_new_payment.c, _paid_by(_new_payment.c.id)).add_cte(
        _settled_invoices,
        payment_allocations.insert()
        .from_select(
            ["payment_id", "invoice_id", "amount"],
            sa.select(_new_payment.c.id, _allocated.c.invoice_id, _allocated.c.amount).join_from(
                _new_payment, _allocated, sa.true()
            ),
        )
        .cte("new_allocations"),
    ),
)
_UNREAD = object()  # take_read_ahead's answer when nothing was read ahead
_of_payment = sa.bindparam("of_payment", type_=sa.String)
_PAYMENT = Prepared("billing_payment", sa.select(payments).where(payments.c.id == _of_payment))


def record_payment(uow, now: datetime, workspace_id: str, data: dict, *, allow_unapplied: bool = False) -> dict:
    """The payment's view; see record_payment_once."""
    return record_payment_once(uow, now, workspace_id, data, allow_unapplied=allow_unapplied)[0]


def record_payment_once(
    uow, now: datetime, workspace_id: str, data: dict, *, allow_unapplied: bool = False
) -> tuple[dict, bool]:
    """Apply a payment to one or more invoices (oldest first when several); answers (the payment's
    view, whether this call recorded it). Idempotent by payment id: the same payment arriving twice (a
    duplicate event, a retried call) is applied once, and the second call says it recorded nothing.

    allow_unapplied is for card payments only (BillingService.on_payment_succeeded): money already
    charged cannot be refused, so each allocation is clipped to what its invoice still owes (nothing
    for a paid or void one) and the rest of data["amount"] stays on the payment as `unapplied`, which
    is the client's credit. Without it, an allocation the invoice cannot take is an error."""
    check_fields(data, PAYMENT_FIELDS)
    payment_id = text(data.get("payment_id"), "payment_id", 64, null="") or new_id()
    existing = uow.take_read_ahead(("payment", payment_id), _UNREAD)
    if existing is _UNREAD:
        existing = uow.execute(_PAYMENT, {"of_payment": payment_id}).first()
    if existing is not None:
        if existing.workspace_id != workspace_id:
            raise Conflict("This payment id is already used.", payment_id="taken")
        return _payment_view(uow, existing), False
    allocations, method, received_at = _payment_request(data, now)
    applied = _apply(uow, workspace_id, allocations, allow_unapplied)
    if data.get("client_id") and data["client_id"] != applied.client_id:
        raise Invalid("The invoices belong to another client.", client_id="mismatch")
    if data.get("currency") and data["currency"] != applied.currency:
        raise Invalid("The payment currency differs from the invoice currency.", currency="mismatch")
    total = sum(amount for _, amount in applied.settled)
    charged = _charged(data, applied.requested, total, allow_unapplied)
    client_id, currency = applied.client_id, applied.currency
    assert client_id is not None and currency is not None  # set by every allocation, and there is at least one
    # the payment's row, which takes the key locks on its client and workspace that its code's needs
    stored = _insert_payment(
        uow,
        {
            "id": payment_id,
            "workspace_id": workspace_id,
            "client_id": client_id,
            "kind": "retainer" if applied.kinds == {"retainer"} else "invoice",
            "amount": charged,
            "unapplied": charged - total,
            "currency": currency,
            "method": method,
            "reference": text(data.get("reference", ""), "reference", 200),
            "stripe_reference": text(data.get("stripe_reference", ""), "stripe_reference", 64),
            "source": text(data.get("source", "offline"), "source", 20),
            "received_at": received_at,
        },
        applied.settled,
        applied.invoices_settled,
    )
    issue_code(uow, now, workspace_id, client_id, "receipt", payment_id, at_commit=True)
    _announce_applied(uow, workspace_id, payment_id, client_id, currency, applied.settled)
    money_moved(uow, now, workspace_id, client_id)
    summary = f"Payment of {Money(charged, currency).format()} recorded"
    if charged > total:
        summary += f", {Money(charged - total, currency).format()} kept as credit"
    record_activity(uow, now, workspace_id, client_id, "payment.recorded", summary, {"payment_id": payment_id})
    # a new payment: what it paid is known here, and nothing of it can have been refunded yet
    paid = [{"invoice_id": row.id, "number": row.number, "amount": amount} for row, amount in applied.settled]
    view = _view(stored, paid, refunded=0)
    uow.publish(
        "payment.recorded",
        workspace_id,
        {
            **view,
            "recipients": uow.read_once(("portal_recipients", client_id), lambda: portal_recipients(uow, client_id)),
            "paid_by_contact_id": stored.paid_by_contact_id,
        },
    )
    return view, True


def _insert_payment(uow, values: dict, settled: list, invoices_settled: list) -> Any:
    """The payment's row, as inserted (with paid_by_contact_id), after writing the invoices it settled
    (invoices_settled: their rows as the domain settled them) and with what it paid each (settled:
    (invoice row, amount)): in one statement on PostgreSQL, in one a table on SQLite."""
    if uow.conn.dialect.name == "postgresql":
        written = {
            "settled_invoices": [row.id for row in invoices_settled],
            "settled_statuses": [row.status for row in invoices_settled],
            "settled_paid": [row.amount_paid for row in invoices_settled],
            "settled_credited": [row.amount_credited for row in invoices_settled],
            "allocated_invoices": [row.id for row, _ in settled],
            "allocated_amounts": [amount for _, amount in settled],
        }
        return uow.execute(_SETTLED_NEW_PAYMENT_AND_ALLOCATIONS, {**values, **written}).one()
    for row in invoices_settled:
        write_settled(uow, row)
    stored = uow.execute(_NEW_PAYMENT, values).one()
    if settled:
        uow.execute(
            payment_allocations.insert(),
            [{"payment_id": values["id"], "invoice_id": row.id, "amount": amount} for row, amount in settled],
        )
    return stored


def record_stripe_payment(uow, now: datetime, event: dict) -> None:
    """payments' payment.succeeded: a payment Stripe took reaches the ledger; the payment id makes a
    replay harmless. The card was charged already, so what the invoices no longer owe becomes the
    client's credit (allow_unapplied) instead of refusing the payment. Written so that a burst of one
    client's payments can be handled in one transaction (BillingService.on_payment_succeeded): one
    refresh of its summary, one commit."""
    data = event["data"]
    workspace_id = event["workspace_id"]
    _, recorded = record_payment_once(
        uow,
        now,
        workspace_id,
        {
            "payment_id": data["payment_id"],
            "allocations": data["allocations"],
            "amount": data["amount"],
            "currency": data["currency"],
            "client_id": data.get("client_id"),
            "method": "sepa_debit" if data.get("method") == "sepa_debit" else "card",
            "reference": paid_with(data),
            "stripe_reference": data.get("reference", ""),
            "source": "stripe",
            "received_at": data.get("received_at"),
        },
        allow_unapplied=True,
    )
    payment_succeeded(uow, now, workspace_id, data)
    if data.get("client_id") and recorded:  # a payment reported again is no new signal
        client_id = data["client_id"]
        # Folded in as the transaction commits, before the summary's refresh: payments handled
        # together then lock every invoice first and the client's rollup last, as one alone does,
        # so a batch and a lone payment of the same client never wait on each other in a circle.
        # A batch's payments of one client are folded in with one lock and one write.
        uow.gathered(
            ("client_engagement", workspace_id, client_id),
            lambda unit, moments: record_signals(unit, now, workspace_id, client_id, "payment", moments),
        ).append(occurred(event, now))


# Stripe's card brands as a client knows them; another brand shows as "Card".
CARD_BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
    "cartes_bancaires": "Cartes Bancaires",
}


def paid_with(data: dict) -> str:
    """What a payment through Stripe shows the client as its reference (receipt, payments list,
    statement): the card or bank account it was paid with, as the offline "Card ending 4242" does,
    not Stripe's PaymentIntent id (kept apart as stripe_reference)."""
    if data.get("method") == "sepa_debit":
        last4 = (data.get("bank") or {}).get("last4")
        return f"SEPA Direct Debit ending {last4}" if last4 else "SEPA Direct Debit"
    card = data.get("card") or {}
    name = CARD_BRANDS.get(str(card.get("brand") or "").lower(), "Card")
    return f"{name} ending {card['last4']}" if card.get("last4") else name


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
    invoices_settled: list = field(default_factory=list)  # each invoice's row as settled, to be written
    client_id: str | None = None
    currency: str | None = None
    kinds: set = field(default_factory=set)
    requested: int = 0  # what the allocations asked for, before any clipping


def _apply(uow, workspace_id: str, allocations: list, allow_unapplied: bool) -> _Applied:
    """Settle each allocation on its invoice (locked; clipped to what it owes with allow_unapplied), as
    the domain settles it (Invoice.settle); the invoices are written with the payment's insert."""
    applied = _Applied()
    ordered = sorted(allocations, key=lambda a: str(a.get("invoice_id")))
    locked = _locked_invoices(uow, workspace_id, [str(a.get("invoice_id") or "") for a in ordered])
    written: dict[str, Any] = {}  # each invoice settled, as its last allocation left it
    for i, allocation in enumerate(ordered):
        amount = _amount(allocation.get("amount"), f"allocations.{i}.amount")
        invoice_id = str(allocation.get("invoice_id") or "")
        applied.requested += amount
        row = locked[invoice_id]
        if row is None:
            raise NotFound("No such invoice.")
        if allow_unapplied:
            owed = domain.balance(row.total, row.amount_paid, row.amount_credited)
            amount = min(amount, owed if row.status in domain.OPEN_STATUSES else 0)
        if amount or not allow_unapplied:
            row = locked[invoice_id] = written[invoice_id] = settled(row, paid=amount)
        if applied.client_id not in (None, row.client_id) or applied.currency not in (None, row.currency):
            raise Conflict("One payment is for one client's invoices in one currency.", allocations="mixed")
        applied.client_id, applied.currency = row.client_id, row.currency
        if amount:
            applied.kinds.add(row.kind)
            applied.settled.append((row, amount))
    applied.invoices_settled = list(written.values())
    return applied


# Several invoices are locked in one statement, in the order of their ids as Python sorts them (code
# points: COLLATE "C", whatever the database's own collation), the order _apply settles them in, so that
# two payments locking the same invoices never wait on each other in a circle.
_id_in: sa.BindParameter[list[str]] = sa.bindparam("of_ids", expanding=True)
_of_workspace = sa.bindparam("of_workspace", type_=sa.String)
_LOCK_INVOICES = {
    postgresql: sa.select(invoices)
    .where(invoices.c.workspace_id == _of_workspace, invoices.c.id.in_(_id_in))
    .order_by(invoices.c.id.collate("C") if postgresql else invoices.c.id)
    .with_for_update()
    for postgresql in (True, False)
}


def _locked_invoices(uow, workspace_id: str, invoice_ids: list[str]) -> dict[str, Any]:
    """The invoices of `invoice_ids` (None for one not in the workspace), locked for this transaction:
    those read ahead for its batch (read_stripe_payments_together), the others in one statement."""
    wanted = sorted(set(invoice_ids))
    found = {invoice_id: uow.take_read_ahead(("invoice", workspace_id, invoice_id), _UNREAD) for invoice_id in wanted}
    missing = [invoice_id for invoice_id, row in found.items() if row is _UNREAD]
    if missing:
        found.update(dict.fromkeys(missing))
        found.update({row.id: row for row in _lock_invoices(uow, workspace_id, missing)})
    return found


def _lock_invoices(uow, workspace_id: str, invoice_ids: list[str]) -> list:
    if len(invoice_ids) == 1:  # most payments: the prepared statement of every lookup by id
        try:
            return [get_scoped(uow, invoices, workspace_id, invoice_ids[0], "invoice", lock=True)]
        except NotFound:
            return []
    statement = _LOCK_INVOICES[uow.conn.dialect.name == "postgresql"]
    return uow.execute(statement, {"of_workspace": workspace_id, "of_ids": invoice_ids}).all()


def read_stripe_payments_together(uow, events: list[dict]) -> None:
    """Before a batch of one client's payment.succeeded events is recorded (on_payment_succeeded): which
    of their payments are recorded already, and their invoices, locked, each in one statement for the
    whole batch instead of one a payment. Each payment then takes what was read for it (record_payment_once),
    or reads it itself when another of the batch took it first. What an event names that is not as it
    should be is left for its own handling to refuse."""
    workspace_id = events[0]["workspace_id"]
    payment_ids: set[str] = set()
    invoice_ids: set[str] = set()
    for event in events:
        data = event.get("data")
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("payment_id"), str) and 0 < len(data["payment_id"]) <= 64:
            payment_ids.add(data["payment_id"])
        allocations = data.get("allocations")
        for allocation in allocations if isinstance(allocations, list) else []:
            if isinstance(allocation, dict) and allocation.get("invoice_id"):
                invoice_ids.add(str(allocation["invoice_id"]))
    if payment_ids:
        recorded = sa.select(payments).where(payments.c.id.in_(sorted(payment_ids)))
        found = {row.id: row for row in uow.execute(recorded)}
        uow.read_ahead({("payment", payment_id): found.get(payment_id) for payment_id in payment_ids})
    if invoice_ids:
        locked = {row.id: row for row in _lock_invoices(uow, workspace_id, sorted(invoice_ids))}
        uow.read_ahead({("invoice", workspace_id, invoice_id): locked.get(invoice_id) for invoice_id in invoice_ids})


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


def _payment_view(uow, row, refunded: int | None = None) -> dict:
    """A payment's view; `refunded` when the statement that read the row summed it already."""
    allocations = uow.execute(
        sa.select(payment_allocations.c.invoice_id, payment_allocations.c.amount, invoices.c.number)
        .join(invoices, invoices.c.id == payment_allocations.c.invoice_id)
        .where(payment_allocations.c.payment_id == row.id)
    ).all()
    paid = [{"invoice_id": a.invoice_id, "number": a.number, "amount": a.amount} for a in allocations]
    return _view(row, paid, _refunded(uow, row.id) if refunded is None else int(refunded))


def _view(row, allocations: list[dict], refunded: int) -> dict:
    """A payment as the APIs and its event show it, from its row, what it paid, and what was refunded."""
    # amount = what the allocations still pay + unapplied + refunded
    return {
        "id": row.id,
        "client_id": row.client_id,
        "kind": row.kind,
        "amount": row.amount,
        "currency": row.currency,
        "method": row.method,
        "reference": row.reference,
        "stripe_reference": row.stripe_reference,
        "source": row.source,
        "received_at": iso(row.received_at),
        "allocations": allocations,
        "unapplied": row.unapplied,
        "refunded": refunded,
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
    refunded = uow.execute(
        sa.select(refunds.c.id, refunds.c.amount, refunds.c.created_at)
        .where(refunds.c.payment_id == row.id)
        .order_by(refunds.c.created_at, refunds.c.id)
    ).all()
    return {
        **_payment_view(uow, row, sum(r.amount for r in refunded)),
        # each refund, oldest first, so that the receipt adds up on its face
        "refunds": [{"id": r.id, "amount": r.amount, "created_at": iso(r.created_at)} for r in refunded],
        # the contact who paid it in the portal, if one did: its receipt and refunds are its own
        "paid_by_contact_id": uow.execute(
            sa.select(payment_payers.c.contact_id).where(payment_payers.c.payment_id == row.id)
        ).scalar(),
        "verification_code": code_of(uow, "receipt", payment_id),  # printed on the receipt
        "client": client_snapshot(uow, client),
        "locale": client.locale,
        "timezone": client.timezone,
    }


def list_payments(
    uow, now: datetime, workspace_id: str, client_id: str | None = None, kind: str | None = None, sort: str = "-date"
) -> list[dict]:
    # what was refunded of each payment, summed in the list's own statement
    refunded = (
        sa.select(sa.func.coalesce(sa.func.sum(refunds.c.amount), 0))
        .where(refunds.c.payment_id == payments.c.id)
        .scalar_subquery()
        .label("refunded_total")
    )
    query = sa.select(payments, refunded).where(payments.c.workspace_id == workspace_id)
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
    return [_payment_view(uow, r, r.refunded_total) for r in rows]
