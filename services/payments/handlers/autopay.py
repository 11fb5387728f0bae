"""Autopay: a recurring invoice issued with autopay queues an off-session charge of the client's
default payment method; a bank account's debit is announced `debit_notice_days` ahead, as SEPA
requires, and collected no earlier. Without a saved card the client is emailed the pay link instead.
The autopay timer finds what is due (`due_autopay`) and charges it with charging.charge. An invoice
dispute cancels a charge still queued, and its resolution queues what the invoice still owes, once."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa

from chassis.errors import Conflict
from services.payments.handlers.common import portal_url
from services.payments.handlers.payment_attempts import start_payment
from services.payments.handlers.stripe_customers import _customer
from services.payments.tables import attempts, mandates, payment_methods

log = logging.getLogger(__name__)


def queue_autopay(uow, now, billing, workspace_id: str, invoice: dict, key: str | None = None) -> dict | None:
    """A recurring invoice with autopay was issued: queue an off-session charge of the default card.
    Without a saved card the client gets the pay-link email instead. `key` names the attempt (one per
    invoice; a resumed one after a dispute has its own)."""
    customer = _customer(uow, workspace_id, invoice["client_id"])
    if customer is None or not customer.default_payment_method:
        uow.publish(
            "payment.failed",
            workspace_id,
            {
                "payment_id": None,
                "client_id": invoice["client_id"],
                "amount": invoice["balance"],
                "currency": invoice["currency"],
                "allocations": [{"invoice_id": invoice["id"], "amount": invoice["balance"]}],
                "off_session": True,
                "reason": "There is no saved card to pay automatically.",
                "code": "no_card",
                "pay_url": portal_url(f"/pay?invoice={invoice['id']}"),
            },
        )
        return None
    try:  # billing refuses an automatic payment of an invoice under dispute
        view = start_payment(
            uow,
            now,
            billing,
            workspace_id,
            invoice["client_id"],
            {"invoice_ids": [invoice["id"]], "autopay": True},
            key or f"autopay:{invoice['id']}",
            off_session=True,
        )
    except Conflict as exc:
        log.info("autopay not queued", extra={"invoice_id": invoice["id"], "reason": exc.detail})
        return None
    queued = uow.execute(
        attempts.update()
        .where(attempts.c.id == view["id"], attempts.c.payment_method_id.is_(None))
        .values(payment_method_id=customer.default_payment_method)
    ).rowcount
    method = uow.execute(
        sa.select(payment_methods).where(payment_methods.c.id == customer.default_payment_method)
    ).first()
    if queued == 1 and method is not None and method.type == "sepa_debit" and view["status"] == "open":
        _notify_debit(uow, now, billing, workspace_id, view, method, invoice)
    return view


def _notify_debit(uow, now, billing, workspace_id: str, view: dict, method, invoice: dict) -> None:
    """SEPA rules: the client is told the amount and date of an automatic debit before it is
    collected, by the workspace's lead time (debit_notice_days); the timer collects it no earlier."""
    settings_ = billing.get_workspace(workspace_id).get("settings") or {}
    lead_days = settings_.get("debit_notice_days", 3)
    collect_at = now + timedelta(days=lead_days)
    uow.execute(attempts.update().where(attempts.c.id == view["id"]).values(collect_at=collect_at))
    mandate = uow.execute(
        sa.select(mandates.c.reference).where(mandates.c.payment_method_id == method.id, mandates.c.status == "active")
    ).first()
    uow.publish(
        "payment.debit_scheduled",
        workspace_id,
        {
            "payment_id": view["id"],
            "client_id": invoice["client_id"],
            "amount": view["amount"],
            "currency": view["currency"],
            "allocations": [
                {"invoice_id": a["invoice_id"], "number": a.get("number", ""), "amount": a["amount"]}
                for a in view["allocations"]
            ],
            "off_session": True,
            "collect_on": collect_at.date().isoformat(),
            "collect_at": collect_at.isoformat(),
            "mandate_reference": mandate.reference if mandate else "",
            "iban_last4": method.last4,
        },
    )


LIVE = ("open", "confirming", "requires_action", "processing", "succeeded")  # an attempt that may still pay


def _autopay_attempts(uow, workspace_id: str, client_id: str, invoice_id: str) -> list:
    rows = uow.execute(
        sa.select(attempts).where(
            attempts.c.workspace_id == workspace_id,
            attempts.c.client_id == client_id,
            attempts.c.off_session.is_(True),
        )
    ).all()
    return [r for r in rows if any(a["invoice_id"] == invoice_id for a in r.allocations)]


def pause_autopay(uow, now, workspace_id: str, invoice: dict) -> list[str]:
    """The invoice was disputed: an automatic charge still waiting for the timer is cancelled (nothing
    was taken; a plan for autopay applies no credit, so nothing is given back). One that the timer has
    already claimed (confirming, or with Stripe) completes: the dispute's adjustment then becomes the
    client's credit if the invoice is paid meanwhile. The compare-and-set on `open` decides the race
    with the timer's claim, so an attempt is either charged or cancelled, never both."""
    cancelled = []
    for row in _autopay_attempts(uow, workspace_id, invoice["client_id"], invoice["invoice_id"]):
        done = uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status == "open")
            .values(status="cancelled", failure_message="The invoice is disputed.", updated_at=now)
        ).rowcount
        if done:
            cancelled.append(row.id)
    if cancelled:
        log.info("autopay paused by an invoice dispute", extra={"invoice_id": invoice["invoice_id"]})
    return cancelled


def resume_autopay(uow, now, billing, workspace_id: str, resolved: dict) -> dict | None:
    """The dispute was resolved: an invoice charged automatically, still owing, with no charge that may
    still pay it, is queued again (its own key per dispute, so a redelivered event queues it once)."""
    if not resolved.get("autopay") or resolved.get("balance", 0) <= 0:
        return None
    previous = _autopay_attempts(uow, workspace_id, resolved["client_id"], resolved["invoice_id"])
    key = f"autopay:{resolved['invoice_id']}:{resolved['dispute_id']}"
    if any(r.status in LIVE and r.request_key != key for r in previous):
        return None
    invoice = {
        "id": resolved["invoice_id"],
        "client_id": resolved["client_id"],
        "balance": resolved["balance"],
        "currency": resolved["currency"],
    }
    return queue_autopay(uow, now, billing, workspace_id, invoice, key=key)


def due_autopay(uow, now=None) -> list[tuple[str, str, str, str]]:
    """Autopay attempts waiting to be charged: (attempt id, card id, workspace id, client id). The
    autopay timer's step that looks across workspaces; each is charged in its client's scope. A debit
    waits out its pre-notification (collect_at)."""
    due = sa.true() if now is None else sa.or_(attempts.c.collect_at.is_(None), attempts.c.collect_at <= now)
    return [
        (r.id, r.payment_method_id, r.workspace_id, r.client_id)
        for r in uow.execute(
            sa.select(attempts.c.id, attempts.c.payment_method_id, attempts.c.workspace_id, attempts.c.client_id)
            .where(attempts.c.off_session.is_(True), attempts.c.status == "open", due)
            .limit(50)
        ).all()
    ]
