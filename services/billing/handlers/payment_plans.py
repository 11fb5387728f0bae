"""What a card payment is for: the payments service asks before it charges a card.

A plan picks the invoices (given ones, or every open one of the client), optionally applies the
client's credit and retainer balance to them first, and spreads what is left to charge over them
oldest first. As a preview nothing is written; committed, the balance applications are made and tagged
with the caller's key, so asking again with the same key (a retried checkout) never applies them twice.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from chassis.errors import Conflict, Invalid
from chassis.money import Money
from chassis.scope import require_role
from services.billing import domain
from services.billing.handlers.balances import _available, _use_balance
from services.billing.handlers.common import (
    check_fields,
    client_row,
    client_snapshot,
    get_scoped,
    iso,
    settings_of,
    workspace_row,
)
from services.billing.handlers.disputes import open_dispute_of
from services.billing.handlers.processing import processing_by_invoice, refuse_if_processing
from services.billing.handlers.settlement import _amount
from services.billing.tables import credit_applications, invoices

__all__ = ["plan_payment"]

PLAN_FIELDS = {"invoice_ids", "amount", "apply_balance", "currency", "key", "autopay"}
SOURCES = ("credit", "retainer")  # the order balance is used in


def _oldest_first(row):
    return row.due_date, row.issue_date, row.number


def _done(uow, workspace_id: str, client_id: str, key: str | None) -> dict[str, dict[str, int]]:
    """Balance applications an earlier commit with this key made: {invoice_id: {source: amount}}."""
    done: dict[str, dict[str, int]] = {}
    if not key:
        return done
    rows = uow.execute(
        sa.select(
            credit_applications.c.invoice_id, credit_applications.c.source, sa.func.sum(credit_applications.c.amount)
        )
        .where(
            credit_applications.c.workspace_id == workspace_id,
            credit_applications.c.client_id == client_id,
            credit_applications.c.reference == key,
            credit_applications.c.kind == "applied",
            credit_applications.c.source.in_(SOURCES),
        )
        .group_by(credit_applications.c.invoice_id, credit_applications.c.source)
    ).all()
    for invoice_id, source, amount in rows:
        done.setdefault(invoice_id, {})[source] = int(amount)
    return done


def _balance_before(row, done: dict) -> int:
    """What the invoice owed before this plan's own applications (so a replay sees the same)."""
    return domain.balance(row.total, row.amount_paid, row.amount_credited) + sum(done.get(row.id, {}).values())


def _unpayable(row, done: dict) -> str | None:
    if row.archived_at is not None:
        return "This invoice is archived."
    if row.status == "draft":
        return "This invoice is not issued yet."
    if row.status == "void":
        return "This invoice is void."
    if _balance_before(row, done) <= 0:  # paid, unless by this plan's own applications
        return "This invoice is already paid."
    return None


def _selection(uow, workspace_id: str, client_id: str, invoice_ids, done: dict) -> list:
    if invoice_ids is None:  # pay all: every open standard invoice the client can see
        rows = uow.execute(
            sa.select(invoices).where(
                invoices.c.workspace_id == workspace_id,
                invoices.c.client_id == client_id,
                sa.or_(
                    invoices.c.id.in_(list(done)),  # paid meanwhile by this plan's own applications
                    sa.and_(
                        invoices.c.kind == "standard",
                        invoices.c.archived_at.is_(None),
                        invoices.c.status.in_(sorted(domain.OPEN_STATUSES)),
                    ),
                ),
            )
        ).all()
        rows = [r for r in rows if _unpayable(r, done) is None]
        busy = processing_by_invoice(uow, [r.id for r in rows if r.id not in done])
        rows = [r for r in rows if not busy.get(r.id)]  # a debit with the bank pays those already
    else:
        if not isinstance(invoice_ids, list) or not all(isinstance(i, str) for i in invoice_ids):
            raise Invalid("invoice_ids is a list of invoice ids.", invoice_ids="not a list of ids")
        rows, seen = [], set()
        for i, invoice_id in enumerate(invoice_ids):
            if invoice_id in seen:
                continue
            seen.add(invoice_id)
            # scoped by client too: another client's invoice is exactly as missing as an unknown one
            row = get_scoped(uow, invoices, workspace_id, invoice_id, "invoice", client_id=client_id)
            problem = _unpayable(row, done)
            if problem:
                raise Invalid(
                    problem, fields={f"invoice_ids.{i}": row.status if row.archived_at is None else "archived"}
                )
            rows.append(row)
    if set(done) - {r.id for r in rows}:
        raise Invalid("This key was used to pay other invoices.", key="used for other invoices")
    if not rows:
        raise Invalid("Nothing to pay.", invoice_ids="nothing to pay")
    return sorted(rows, key=_oldest_first)


def _balance_use(available: dict, rows, owed: dict) -> list[tuple[str, str, int]]:
    """Credit, then retainer, spread over the standard invoices oldest first."""
    owed, uses = dict(owed), []
    for source in SOURCES:
        left = max(available[source], 0)  # below zero after a refund of spent credit
        for r in rows:
            use = min(left, owed[r.id]) if r.kind == "standard" else 0
            if use:
                uses.append((r.id, source, use))
                owed[r.id] -= use
                left -= use
    return uses


def _plan_key(request: dict, key: str | None, commit: bool) -> str | None:
    """The plan's key: given in the request or by the caller (the same one if both), needed to commit."""
    if key is not None and request.get("key") not in (None, key):
        raise Invalid("Two different keys were given.", key="mismatch")
    key = request.get("key") if key is None else key
    if key is not None and (not isinstance(key, str) or not key.strip() or len(key) > 200):
        raise Invalid("key is text of 1 to 200 characters.", key="invalid")
    if commit and key is None:
        raise Invalid("A key is needed to commit a payment plan.", key="required")
    return key


def _card_amount(asked, remaining: int, currency: str, settings) -> int:
    """What the card pays: all that remains, or (a partial payment) less, as the business allows."""
    amount = remaining if asked is None else _amount(asked)
    if amount > remaining:
        raise Invalid(
            f"The amount is more than the {Money(remaining, currency).format()} owed.", amount="more than the balance"
        )
    if amount < remaining and not settings.allow_partial_payments:
        raise Invalid("This business takes payment of the whole balance only.", amount="partial payments off")
    if amount < remaining and amount < settings.partial_payment_minimum:
        raise Invalid(
            f"A partial payment is at least {Money(settings.partial_payment_minimum, currency).format()}.",
            amount="below the minimum",
        )
    return amount


def plan_payment(
    uow,
    now: datetime,
    workspace_id: str,
    client_id: str,
    request: dict | None,
    commit: bool = False,
    key: str | None = None,
) -> dict:
    """What to charge and how it pays the client's invoices. `amount`, when given, is the card amount:
    it is spread over what is left once balance is applied; less than that is a partial payment.
    The key may come in the request or as the `key` argument (as the payments service passes it)."""
    require_role(domain.PAYING_ROLES, domain.PAYING_DETAIL)  # before showing what a payment would do
    request = {} if request is None else request
    check_fields(request, PLAN_FIELDS)
    settings = settings_of(workspace_row(uow, workspace_id))
    if "card" not in settings.payment_methods:
        raise Invalid("This business does not take card payments.", method="card not accepted")
    apply_balance = request.get("apply_balance", False)
    if not isinstance(apply_balance, bool):
        raise Invalid("apply_balance is true or false.", apply_balance="not a boolean")
    key = _plan_key(request, key, commit)
    # Locked when committing: balance use and replays of one key are serialised per client.
    client = client_row(uow, workspace_id, client_id, lock=commit)
    done = _done(uow, workspace_id, client.id, key)
    rows = _selection(uow, workspace_id, client.id, request.get("invoice_ids"), done)
    if not done:  # a replay of a committed plan is not a second payment
        refuse_if_processing(uow, rows)
    if request.get("autopay", False) is not False:  # payments' automatic charge of a recurring invoice
        if request["autopay"] is not True:
            raise Invalid("autopay is true or false.", autopay="not a boolean")
        disputed = [r.number for r in rows if open_dispute_of(uow, r.id) is not None]
        if disputed:  # the client pays by hand meanwhile if it wants to; nothing is charged automatically
            raise Conflict(
                f"Invoice {', '.join(disputed)} is disputed; automatic payment waits until the dispute is resolved.",
                invoice_ids="disputed",
            )

    currencies = {r.currency for r in rows}
    if len(currencies) > 1:
        raise Invalid("Invoices in different currencies are paid separately.", invoice_ids="mixed currencies")
    currency = currencies.pop()
    if request.get("currency") is not None and request["currency"] != currency:
        raise Invalid(f"The invoices are in {currency}.", currency="mismatch")

    # Balance first (credit, then retainer; standard invoices only, oldest first), on top of what an
    # earlier commit with this key applied. A replay finds nothing more to apply.
    owed = {r.id: domain.balance(r.total, r.amount_paid, r.amount_credited) for r in rows}
    applied = {source: sum(d.get(source, 0) for d in done.values()) for source in SOURCES}
    usable = _balance_use(_available(uow, client.id, currency), rows, owed)  # (invoice_id, source, amount)
    to_apply = usable if apply_balance else []
    for invoice_id, source, use in to_apply:
        owed[invoice_id] -= use
        applied[source] += use
    remaining = sum(owed.values())

    amount = _card_amount(request.get("amount"), remaining, currency, settings)
    partial = amount < remaining

    allocations, left = [], amount
    for r in rows:
        take = min(left, owed[r.id])
        if take:
            allocations.append({"invoice_id": r.id, "number": r.number, "amount": take})
            left -= take

    if commit:  # everything is checked: only now write
        assert key is not None  # _plan_key refuses to commit without one
        for invoice_id, source, use in to_apply:
            _use_balance(uow, now, workspace_id, invoice_id, use, source, reference=key)

    contact = client_snapshot(uow, client)
    return {
        "client_id": client.id,
        "currency": currency,
        "amount": amount,
        "allocations": allocations,
        "applied": applied,
        # the invoices that balance went to, so the card page can say where the client's credit went
        "applied_to": [r.number for r in rows if r.id in done or any(i == r.id for i, _, _ in to_apply)],
        "invoices": [
            {"id": r.id, "number": r.number, "due_date": iso(r.due_date), "balance": _balance_before(r, done)}
            for r in rows
        ],
        "partial": partial,
        "customer": {"name": client.name, "email": contact["contact_email"] or None},
        "stripe_account": settings.stripe_account,
        "minimum": settings.partial_payment_minimum,
        "allow_partial": settings.allow_partial_payments,
        # what "use my credit first" would apply, so the review page needs one plan, not two
        "balance_usable": sum(use for _, _, use in usable) if not apply_balance else 0,
        # the same by source, so the page names them as the dashboard does (credits, retainer)
        "balance_usable_by_source": {
            source: sum(use for _, s, use in usable if s == source) if not apply_balance else 0 for source in SOURCES
        },
    }
