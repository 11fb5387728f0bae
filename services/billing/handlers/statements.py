"""The statement of account of one client in one currency over a period: its opening balance, each
invoice, payment, credit note and refund in date order with a running balance (domain.statement),
the closing balance, and what is owed now by days past due, read with the dashboard's aging query,
with the credit and retainer money that make the two differ (the dashboard's figures)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta

from chassis.errors import Invalid
from services.billing import domain
from services.billing.aging import aging
from services.billing.handlers.common import client_row, client_snapshot, parse_date, workspace_row, workspace_today
from services.billing.handlers.dashboard import OPEN_BY_DUE
from services.billing.handlers.summaries import AVAILABLE, params
from services.billing.tables import credit_applications, credit_notes, invoices, payments, refunds

__all__ = ["statement"]

# The statement's aging: the dashboard's grouped read of open invoices, in the statement's currency.
_STATEMENT_AGING = sa.select(OPEN_BY_DUE.c.currency, OPEN_BY_DUE.c.due_date, OPEN_BY_DUE.c.owed).where(
    OPEN_BY_DUE.c.currency == sa.bindparam("in_currency")
)


def statement(uow, now: datetime, workspace_id: str, client_id: str, start, end, currency: str | None = None) -> dict:
    """Statement of account: opening balance, each invoice, payment, credit note and refund in date
    order with a running balance, and the closing balance. Void and draft invoices are not charges."""
    client = client_row(uow, workspace_id, client_id)
    ws = workspace_row(uow, workspace_id)
    today = workspace_today(ws, now)
    # Without a period: the last three months, so that it opens with content even on the 1st. Without its
    # start: the three months before its end; without its end: today (or the start, when that is later).
    start, end = parse_date(start, "from", "The start date"), parse_date(end, "to", "The end date")  # as the page says
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
        entries.append(domain.StatementEntry(r.issue_date, "credit", r.number, r.total, credit_note_id=r.id))
    for r in uow.execute(
        sa.select(credit_applications).where(
            credit_applications.c.client_id == client_id,
            credit_applications.c.currency == currency,
            credit_applications.c.kind == "refunded",
        )
    ).all():
        entries.append(
            domain.StatementEntry(
                tz_today(r.created_at),
                "refund",
                r.reference or "Retainer refund",
                r.amount,
                about=None if r.reference else "retainer_refund",
            )
        )
    # Card refunds owe again what they gave back; under the credit policy the invoices they reversed
    # stay settled by a credit of what was taken off them, and that credit is an entry here only for
    # the charges above. The unapplied part is not credited, and neither is a retainer invoice: it is
    # no charge, and the money taken off it leaves the retainer held, so the refund's entry alone
    # gives back what its payment's entry took off.
    credited = dict(
        uow.execute(
            sa.select(credit_applications.c.reference, sa.func.sum(credit_applications.c.amount))
            .join(invoices, invoices.c.id == credit_applications.c.invoice_id)
            .where(
                credit_applications.c.client_id == client_id,
                credit_applications.c.currency == currency,
                credit_applications.c.source == "refund",
                invoices.c.kind == "standard",
            )
            .group_by(credit_applications.c.reference)
        ).all()
    )
    for r in uow.execute(
        sa.select(refunds, payments.c.reference.label("paid_by"), payments.c.method)
        .join(payments, payments.c.id == refunds.c.payment_id)
        .where(refunds.c.client_id == client_id, refunds.c.currency == currency)
    ).all():
        paid_by = r.paid_by or r.method
        label = f"Refund of {paid_by}"
        entries.append(
            domain.StatementEntry(tz_today(r.created_at), "refund", label, r.amount, about="refund", payment=paid_by)
        )
        if credited.get(r.id):
            entries.append(
                domain.StatementEntry(
                    tz_today(r.created_at),
                    "credit",
                    f"Credit for {label.lower()}",
                    int(credited[r.id]),
                    about="refund_credit",
                    payment=paid_by,
                )
            )
    opening = sum(e.effect for e in entries if e.on < start)
    result = domain.statement(opening, [e for e in entries if start <= e.on <= end])
    # what is owed now by days past due: as of today whatever the period, from the dashboard's read
    open_by_due = uow.execute(_STATEMENT_AGING, params(workspace_id, client_id, currency)).all()
    result["aging"] = aging(((r.currency, r.due_date, r.owed) for r in open_by_due), today, first=currency)[0]
    # The closing balance already takes off unapplied credit and retainer money, which pay no
    # invoice yet, so it is the aging's total less both (the dashboard's figures, in this currency).
    held = uow.execute(AVAILABLE, params(None, client_id, currency)).one()
    result["unapplied_credit"], result["retainer_held"] = int(held.credit), int(held.retainer)
    # Said only when exact. It is not while an archived invoice is still owed (a charge here, not in
    # the aging) or an entry is dated after the period's end (in the aging or the figures, not in the
    # closing balance), nor for a period that ended before today.
    result["reconciles"] = (
        end >= today and result["aging"]["total"] - int(held.credit) - int(held.retainer) == result["closing_balance"]
    )
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
