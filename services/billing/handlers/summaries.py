"""A client's money as the portal shows it: the balance figures as SQL, and the summary row per client
(`client_summaries`) that the dashboard reads instead of summing the ledger on every visit.

Every change to a client's money calls `money_moved`, and the summary is recomputed from the ledger,
with the same SQL `client_balances` uses, once before the transaction commits (`refresh`). The
changes that call it:

- documents.py: `send_invoice` (a draft issued), `void_invoice`, `archive_invoice` (archived
  invoices are out of the total; unarchiving puts them back), `issue_credit_note`, and `create_invoice`
  / `convert_quote` / the recurring sweep through `send_invoice`;
- payments.py: `record_payment` (offline, and card payments from `on_payment_succeeded`, unapplied
  money included);
- balances.py: `_use_balance` (`apply_credit`, `apply_retainer`, and `plan_payment` when it commits),
  `refund_retainer`;
- refunds.py: `record_refund` (card refunds, under either refund policy);
- clients.py: `create_client` (its first, empty summary) and `update_client` when the currency changes.

Not on the list because they move no money: drafts and their edits, `mark_invoice_viewed` (sent to
viewed, open either way), `record_dispute` (only the dispute's status is kept; a lost dispute's money
comes back as a refund). Overdue figures change with the date, so the dashboard reads them from the
client's open invoices (`ix_invoices_open`), never from here. `repair_client_summaries` rebuilds
every summary of a workspace and says which had drifted.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chassis.db import UtcDateTime
from chassis.prepared import Prepared
from services.billing import domain
from services.billing.handlers.common import iso, workspace_row
from services.billing.tables import (
    RETAINER_INVOICE,
    UNAPPLIED_PAYMENT,
    client_summaries,
    clients,
    credit_applications,
    credit_notes,
    invoices,
    payment_allocations,
    payments,
)

__all__ = ["repair_client_summaries"]

log = logging.getLogger(__name__)

# The balance figures, as scalar subqueries built once at import: a prebuilt statement skips
# SQLAlchemy's construction and cache-key work each time. Their parameters (see `params`) are not
# named like columns, which an UPDATE's SET reserves.
_client: sa.BindParameter[str] = sa.bindparam("of_client")
_workspace: sa.BindParameter[str] = sa.bindparam("of_workspace")
_currency: sa.BindParameter[str] = sa.bindparam("in_currency")


def params(workspace_id: str | None, client_id: str, currency: str | None = None) -> dict:
    """The parameters of the statements built from these figures (credit and retainer need no workspace)."""
    given = {"of_workspace": workspace_id, "of_client": client_id, "in_currency": currency}
    return {name: value for name, value in given.items() if value is not None}


def _sum(column, *where, select_from=None):
    query = sa.select(sa.func.coalesce(sa.func.sum(column), 0))
    return (query.select_from(select_from) if select_from is not None else query).where(*where).scalar_subquery()


_used = (credit_applications.c.client_id == _client, credit_applications.c.currency == _currency)
# Credit: credit notes and unapplied card money, less what was spent. Applications with source
# "refund" are refunds turned into credit on an invoice: never spendable, so never subtracted here.
CREDIT = (
    _sum(credit_notes.c.total, credit_notes.c.client_id == _client, credit_notes.c.currency == _currency)
    + _sum(payments.c.unapplied, payments.c.client_id == _client, payments.c.currency == _currency, UNAPPLIED_PAYMENT)
    - _sum(credit_applications.c.amount, *_used, credit_applications.c.source == "credit")
)
# Paid into the client's retainer invoices: each retainer's allocations, summed over its retainers. So
# written, whatever the statistics, the plan finds the retainers first (ix_invoices_retainers) and then
# their allocations, never every allocation of the workspace with its invoice.
_ALLOCATED_TO_INVOICE = _sum(payment_allocations.c.amount, payment_allocations.c.invoice_id == invoices.c.id)
RETAINER = _sum(
    _ALLOCATED_TO_INVOICE, invoices.c.client_id == _client, RETAINER_INVOICE, invoices.c.currency == _currency
) - _sum(credit_applications.c.amount, *_used, credit_applications.c.source == "retainer")
OWED = invoices.c.total - invoices.c.amount_paid - invoices.c.amount_credited
# What a client owes on: issued standard invoices not settled, except archived ones (hidden from the
# client, so not in its total). The overdue figures add the due date (dashboard, ix_invoices_open).
OPEN = (
    invoices.c.client_id == _client,
    invoices.c.workspace_id == _workspace,
    invoices.c.kind == "standard",
    invoices.c.archived_at.is_(None),
    invoices.c.status.in_(sorted(domain.OPEN_STATUSES)),
    OWED > 0,
)  # domain.balance: never below zero
OUTSTANDING = _sum(OWED, *OPEN, invoices.c.currency == _currency)  # totals never mix currencies
# Paid but not settled yet: bank debits on their way will count here. None are taken yet.
PROCESSING = sa.literal(0, sa.BigInteger)
AVAILABLE = sa.select(CREDIT.label("credit"), RETAINER.label("retainer"))
BALANCES = sa.select(OUTSTANDING.label("outstanding"), CREDIT.label("credit"), RETAINER.label("retainer"))


def _last_payment(column):
    return (
        sa.select(column)
        .where(payments.c.client_id == _client, payments.c.workspace_id == _workspace)
        .order_by(payments.c.received_at.desc(), payments.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_key = (client_summaries.c.workspace_id == _workspace, client_summaries.c.client_id == _client)
_LOCK = Prepared(  # every change to a client's money sends it (chassis/prepared.py)
    "billing_client_summary_lock",
    sa.select(client_summaries, clients.c.currency.label("client_currency"))
    .join(
        clients,
        (clients.c.id == client_summaries.c.client_id) & (clients.c.workspace_id == client_summaries.c.workspace_id),
    )
    .where(*_key)
    .with_for_update(of=client_summaries),
)
_REFRESH = (
    client_summaries.update()
    .where(*_key)
    .values(
        currency=_currency,
        outstanding=OUTSTANDING,
        credit_available=CREDIT,
        retainer_available=RETAINER,
        processing=PROCESSING,
        last_payment_amount=_last_payment(payments.c.amount),
        last_payment_currency=_last_payment(payments.c.currency),
        last_payment_received_at=_last_payment(payments.c.received_at),
        updated_at=sa.bindparam("now", type_=UtcDateTime),
    )
    .returning(*client_summaries.c)
)
# Run on every change to a client's money: planning its eight subqueries over five tables, each with
# its row-level-security policy, took three times as long as running them. Its one plan per connection
# is made at the first call, from the statistics of then: made while a new workspace's tables were
# nearly empty, it scanned and sorted all of a client's payments three times on every later payment
# (a third of PostgreSQL's work an event). Without scans and sorts, each figure reads its index.
_REFRESH_PREPARED = Prepared(
    "billing_client_summary_refresh", _REFRESH, planner={"enable_seqscan": "off", "enable_sort": "off", "jit": "off"}
)
FIGURES = (
    "currency",
    "outstanding",
    "credit_available",
    "retainer_available",
    "processing",
    "last_payment_amount",
    "last_payment_currency",
    "last_payment_received_at",
)


def money_moved(uow, now: datetime, workspace_id: str, client_id: str) -> None:
    """The client's money changed in this transaction: its summary is recomputed before the commit,
    once however many changes the transaction makes."""
    uow.before_commit(
        ("client_summary", workspace_id, client_id), lambda unit: refresh(unit, now, workspace_id, client_id)
    )


def refresh(uow, now: datetime, workspace_id: str, client_id: str):
    """Recompute one client's summary from the ledger and store it; returns (before, after) as rows
    (before is None when the client had none).

    The row is locked first and the figures are summed in the next statement: under READ COMMITTED a
    statement sees what was committed when it starts, so a transaction that changed the same client
    and committed while this one waited for the lock is counted. Summing in the locking statement
    could store figures without it. (A delta, outstanding + x, would not need this; see
    docs/decisions.md for why the figures are recomputed instead.)"""
    scope = params(workspace_id, client_id)
    before = locked = uow.execute(_LOCK, scope).first()
    if locked is None:  # a new client (or a missing row): create it, then lock it like any other
        currency = uow.execute(
            sa.select(clients.c.currency).where(clients.c.id == client_id, clients.c.workspace_id == workspace_id)
        ).scalar()
        if currency is None:
            return None, None  # no such client in this scope: nothing to keep
        insert = (postgresql.insert if uow.conn.dialect.name == "postgresql" else sqlite.insert)(client_summaries)
        created = (
            uow.execute(
                insert.values(
                    workspace_id=workspace_id, client_id=client_id, currency=currency, updated_at=now
                ).on_conflict_do_nothing()
            ).rowcount
            == 1
        )
        locked = uow.execute(_LOCK, scope).one()  # another transaction may have made it meanwhile
        before = None if created else locked
    figures = {**params(workspace_id, client_id, locked.client_currency), "now": now}
    after = uow.execute(_REFRESH_PREPARED, figures).one()
    return before, after


def repair_client_summaries(uow, now: datetime, workspace_id: str) -> dict:
    """Rebuild the summary of every client of the workspace from the ledger, and say which had
    drifted from it (a summary that was missing counts), figure by figure. Nothing but the summaries
    changes; running it again finds nothing."""
    workspace_row(uow, workspace_id)
    client_ids = (
        uow.execute(sa.select(clients.c.id).where(clients.c.workspace_id == workspace_id).order_by(clients.c.id))
        .scalars()
        .all()
    )  # the order money_moved locks in
    drifted = []
    for client_id in client_ids:
        before, after = refresh(uow, now, workspace_id, client_id)
        if after is None:
            continue
        changes = {
            name: {
                "was": _plain(getattr(before, name)) if before is not None else None,
                "now": _plain(getattr(after, name)),
            }
            for name in FIGURES
            if before is None or getattr(before, name) != getattr(after, name)
        }
        if changes:
            drifted.append({"client_id": client_id, "missing": before is None, "figures": changes})
            log.warning(
                "client summary had drifted from the ledger",
                extra={
                    "workspace_id": workspace_id,
                    "client_id": client_id,
                    "missing": before is None,
                    "figures": sorted(changes),
                },
            )
    return {"workspace_id": workspace_id, "clients": len(client_ids), "drifted": drifted}


def _plain(value):
    return iso(value) if isinstance(value, datetime) else value
