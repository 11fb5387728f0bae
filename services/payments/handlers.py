"""Payments use cases: pay invoices by card through Stripe, save cards, autopay, refunds, and the
Stripe events that settle all of it.

Each function takes a unit of work, the time, and its collaborators (`stripe`: a StripeApi or a fake;
`billing`: the billing service's RPC proxy or a fake), so the rules test without a broker or Stripe.

How a card payment flows:
1. `start_payment` asks billing for a plan (which invoices, how much, credit applied first) and keeps
   it as an attempt. The form's key makes a double submit find the same attempt.
2. The browser sets the card up with Stripe.js (a SetupIntent from `card_setup`), then
   `confirm_attempt` charges it with a PaymentIntent whose idempotency key is the attempt id and its
   try number. A claim on the attempt row lets one confirmation in at a time.
3. Money is recorded only when Stripe's signed `payment_intent.succeeded` event is processed
   (`handle_event`), once per attempt, whatever the order or number of deliveries.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis import settings
from chassis.errors import Conflict, Invalid, NotFound
from chassis.events import add_dead_letter
from chassis.fields import text
from chassis.logs import current_request_id
from chassis.scope import require_role
from services.payments.stripe_api import CardDeclined, StripeUnavailable, payment_intent_view
from services.payments.tables import (
    attempts,
    card_setups,
    customers,
    disputes,
    mandates,
    payment_methods,
    refunds,
    stripe_events,
)

log = logging.getLogger(__name__)
# Who in the client's organisation may pay and change its cards (the roles: chassis/scope.py).
PAYING_ROLES = ("owner", "payer")
PAYING_DETAIL = "Only an owner or a payer of your organisation can pay or change its cards."

CLAIM_TIMEOUT = timedelta(seconds=60)  # a confirmation that crashed mid-way may be taken over after this


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def portal_url(path: str) -> str:
    return settings.env("PORTAL_URL", "http://localhost:8000").rstrip("/") + path


# ---------------------------------------------------------------- views and lookups


def attempt_view(row) -> dict:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "status": row.status,
        "amount": row.amount,
        "currency": row.currency,
        "allocations": row.allocations,
        "applied": row.applied,
        "failure_message": row.failure_message,
        "off_session": row.off_session,
        "client_secret": row.client_secret if row.status == "requires_action" else None,
        "payment_intent_id": row.payment_intent_id,
        "payment_method_id": row.payment_method_id,
        "refunded": row.refunded,
        "dispute_status": row.dispute_status,
        "created_at": iso(row.created_at),
        "succeeded_at": iso(row.succeeded_at),
    }


def _attempt(uow, workspace_id: str, attempt_id: str, client_id: str | None = None, lock: bool = False):
    """One attempt of the workspace (and of the client, for the portal): another's looks missing."""
    query = sa.select(attempts).where(attempts.c.id == str(attempt_id), attempts.c.workspace_id == workspace_id)
    if client_id is not None:
        query = query.where(attempts.c.client_id == client_id)
    if lock and uow.conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = uow.execute(query).first()
    if row is None:
        raise NotFound("No such payment.")
    return row


def get_attempt(uow, now, workspace_id: str, attempt_id: str, client_id: str | None = None) -> dict:
    return attempt_view(_attempt(uow, workspace_id, attempt_id, client_id))


def _customer(uow, workspace_id: str, client_id: str):
    return uow.execute(
        sa.select(customers).where(customers.c.workspace_id == workspace_id, customers.c.client_id == client_id)
    ).first()


def ensure_customer(uow, now, stripe, billing, workspace_id: str, client_id: str, account: str | None = None):
    """The client's Stripe Customer, created on first need. Its key is the client, so two first
    payments at once make one Customer at Stripe, and the primary key keeps one row here."""
    row = _customer(uow, workspace_id, client_id)
    if row is not None:
        return row
    client = billing.get_client(workspace_id, client_id)
    primary = (
        next((c for c in client.get("contacts", []) if c.get("is_primary")), None)
        or (client.get("contacts") or [{}])[0]
    )
    customer_id = stripe.create_customer(
        name=client["name"],
        email=primary.get("email", ""),
        metadata={"workspace_id": workspace_id, "client_id": client_id},
        key=f"customer:{workspace_id}:{client_id}",
        account=account,
    )
    try:
        with uow.conn.begin_nested():
            uow.execute(
                customers.insert().values(
                    workspace_id=workspace_id,
                    client_id=client_id,
                    stripe_customer_id=customer_id,
                    stripe_account=account,
                    created_at=now,
                )
            )
    except IntegrityError:
        pass  # a concurrent first payment stored it (the same Customer, thanks to the key)
    return _customer(uow, workspace_id, client_id)


def _account_of(billing, workspace_id: str) -> str | None:
    workspace = billing.get_workspace(workspace_id)
    return (workspace.get("settings") or {}).get("stripe_account")


# ---------------------------------------------------------------- starting a payment


def start_payment(
    uow, now, billing, workspace_id: str, client_id: str, request: dict, request_key: str, off_session: bool = False
) -> dict:
    """Turn the reviewed selection into an attempt. Billing checks everything (the invoices are the
    client's and open, the amount, the minimum, the currency) and applies credit first, once per key."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    if not isinstance(request_key, str) or not request_key.strip():
        raise Invalid("The payment form is missing its key; reload the page.", key="required")
    request_key = text(request_key, "key", 100)
    existing = uow.execute(
        sa.select(attempts).where(
            attempts.c.workspace_id == workspace_id,
            attempts.c.client_id == client_id,
            attempts.c.request_key == request_key,
        )
    ).first()
    if existing is not None:  # a double submit, or a retried call
        return attempt_view(existing)
    if not isinstance(request, dict):
        raise Invalid("Say what to pay.", request="not an object")
    plan = billing.plan_payment(
        workspace_id, client_id, {**request, "key": f"payment:{client_id}:{request_key}"}, commit=True
    )
    attempt_id = str(uuid.uuid4())
    try:
        with uow.conn.begin_nested():
            uow.execute(
                attempts.insert().values(
                    id=attempt_id,
                    workspace_id=workspace_id,
                    client_id=client_id,
                    request_key=request_key,
                    currency=plan["currency"],
                    amount=plan["amount"],
                    allocations=[
                        {"invoice_id": a["invoice_id"], "number": a.get("number", ""), "amount": a["amount"]}
                        for a in plan["allocations"]
                    ],
                    applied=plan.get("applied") or {},
                    status="succeeded" if plan["amount"] == 0 else "open",
                    tries=0,
                    off_session=off_session,
                    stripe_account=plan.get("stripe_account"),
                    failure_message="",
                    refunded=0,
                    created_at=now,
                    updated_at=now,
                    succeeded_at=now if plan["amount"] == 0 else None,
                )
            )
    except IntegrityError:  # the same key submitted concurrently: the other one won
        pass
    row = uow.execute(
        sa.select(attempts).where(
            attempts.c.workspace_id == workspace_id,
            attempts.c.client_id == client_id,
            attempts.c.request_key == request_key,
        )
    ).one()
    return attempt_view(row)


# ---------------------------------------------------------------- cards


def card_view(row, default_id: str | None) -> dict:
    return {
        "id": row.id,
        "brand": row.brand,
        "last4": row.last4,
        "exp_month": row.exp_month,
        "exp_year": row.exp_year,
        "type": row.type,  # card | sepa_debit
        "holder_name": row.holder_name,
        "country": row.country,
        "default": row.id == default_id,
        "created_at": iso(row.created_at),
    }


def list_cards(uow, now, workspace_id: str, client_id: str) -> list[dict]:
    customer = _customer(uow, workspace_id, client_id)
    rows = uow.execute(
        sa.select(payment_methods)
        .where(
            payment_methods.c.workspace_id == workspace_id,
            payment_methods.c.client_id == client_id,
            payment_methods.c.saved.is_(True),
            payment_methods.c.removed_at.is_(None),
        )
        .order_by(payment_methods.c.created_at.desc(), payment_methods.c.id)
    ).all()
    default = customer.default_payment_method if customer else None
    return [card_view(r, default) for r in rows]


def card_setup(uow, now, stripe, billing, workspace_id: str, client_id: str, attempt_id: str | None = None) -> dict:
    """A SetupIntent for Stripe.js to collect a card into: to save it, or to pay an attempt with it."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    if attempt_id is not None:
        attempt = _attempt(uow, workspace_id, attempt_id, client_id)
        if attempt.status not in ("open", "failed"):
            raise Conflict("This payment is no longer waiting for a card.")
        account = attempt.stripe_account
    else:
        account = _account_of(billing, workspace_id)
    customer = ensure_customer(uow, now, stripe, billing, workspace_id, client_id, account)
    setup_id = str(uuid.uuid4())
    intent = stripe.create_setup_intent(
        customer=customer.stripe_customer_id,
        key=f"setup:{setup_id}",
        account=customer.stripe_account,
        metadata={
            "workspace_id": workspace_id,
            "client_id": client_id,
            "setup_id": setup_id,
            "attempt_id": attempt_id or "",
        },
    )
    uow.execute(
        card_setups.insert().values(
            id=setup_id,
            workspace_id=workspace_id,
            client_id=client_id,
            attempt_id=attempt_id,
            setup_intent_id=intent["id"],
            client_secret=intent["client_secret"],
            created_at=now,
        )
    )
    return {"setup_intent": intent["id"], "client_secret": intent["client_secret"]}


def _register_card(uow, now, stripe, customer, payment_method_id: str, saved: bool):
    """Keep a card the client set up: attached to its Customer at Stripe, listed here if saved."""
    card = stripe.payment_method(payment_method_id, customer.stripe_account)
    if card["customer"] is None:
        card = stripe.attach(payment_method_id, customer.stripe_customer_id, customer.stripe_account)
    elif card["customer"] != customer.stripe_customer_id:
        raise Invalid("This card belongs to someone else.", payment_method="not yours")
    existing = uow.execute(sa.select(payment_methods).where(payment_methods.c.id == card["id"])).first()
    if existing is None:
        try:
            with uow.conn.begin_nested():
                uow.execute(
                    payment_methods.insert().values(
                        id=card["id"],
                        workspace_id=customer.workspace_id,
                        client_id=customer.client_id,
                        brand=card["brand"],
                        last4=card["last4"],
                        exp_month=card["exp_month"],
                        exp_year=card["exp_year"],
                        saved=saved,
                        created_at=now,
                    )
                )
        except IntegrityError:
            pass  # the setup_intent.succeeded event registered it at the same moment
    elif saved and not existing.saved:
        uow.execute(payment_methods.update().where(payment_methods.c.id == card["id"]).values(saved=True))
    if saved and not customer.default_payment_method:
        _set_default(uow, stripe, customer, card["id"])
    return card


def _setup(uow, workspace_id: str, client_id: str, setup_intent_id: str):
    row = uow.execute(
        sa.select(card_setups).where(
            card_setups.c.setup_intent_id == str(setup_intent_id),
            card_setups.c.workspace_id == workspace_id,
            card_setups.c.client_id == client_id,
        )
    ).first()
    if row is None:
        raise NotFound("No such card set-up.")
    return row


def _setup_card(uow, now, stripe, workspace_id: str, client_id: str, setup_intent_id: str, saved: bool) -> str:
    setup = _setup(uow, workspace_id, client_id, setup_intent_id)
    customer = _customer(uow, workspace_id, client_id)
    intent = stripe.setup_intent(setup.setup_intent_id, customer.stripe_account)
    if intent["status"] != "succeeded" or not intent["payment_method"]:
        raise Invalid("The card was not accepted; check its details or try another card.", card=intent["status"])
    _register_card(uow, now, stripe, customer, intent["payment_method"], saved)
    return intent["payment_method"]


def save_card(uow, now, stripe, workspace_id: str, client_id: str, setup_intent_id: str) -> dict:
    """After Stripe.js confirmed the SetupIntent: keep the card (idempotent)."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    card_id = _setup_card(uow, now, stripe, workspace_id, client_id, setup_intent_id, saved=True)
    return next(c for c in list_cards(uow, now, workspace_id, client_id) if c["id"] == card_id)


def _saved_card(uow, workspace_id: str, client_id: str, payment_method_id: str):
    row = uow.execute(
        sa.select(payment_methods).where(
            payment_methods.c.id == str(payment_method_id),
            payment_methods.c.workspace_id == workspace_id,
            payment_methods.c.client_id == client_id,
            payment_methods.c.saved.is_(True),
            payment_methods.c.removed_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFound("No such card.")
    return row


def _set_default(uow, stripe, customer, payment_method_id: str | None) -> None:
    stripe.set_default(customer.stripe_customer_id, payment_method_id, customer.stripe_account)
    uow.execute(
        customers.update()
        .where(customers.c.workspace_id == customer.workspace_id, customers.c.client_id == customer.client_id)
        .values(default_payment_method=payment_method_id)
    )


def set_default_card(uow, now, stripe, workspace_id: str, client_id: str, payment_method_id: str) -> list[dict]:
    require_role(PAYING_ROLES, PAYING_DETAIL)
    card = _saved_card(uow, workspace_id, client_id, payment_method_id)
    _set_default(uow, stripe, _customer(uow, workspace_id, client_id), card.id)
    return list_cards(uow, now, workspace_id, client_id)


def remove_card(uow, now, stripe, workspace_id: str, client_id: str, payment_method_id: str) -> list[dict]:
    """Detach the card at Stripe and forget it; the newest remaining card becomes the default."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    card = _saved_card(uow, workspace_id, client_id, payment_method_id)
    customer = _customer(uow, workspace_id, client_id)
    try:
        stripe.detach(card.id, customer.stripe_account)
    except Invalid:
        pass  # already detached at Stripe (the dashboard, or an earlier try of this call)
    _forget_card(uow, now, stripe, card.id)
    return list_cards(uow, now, workspace_id, client_id)


def _forget_card(uow, now, stripe, payment_method_id: str) -> None:
    row = uow.execute(sa.select(payment_methods).where(payment_methods.c.id == payment_method_id)).first()
    if row is None or row.removed_at is not None:
        return
    uow.execute(payment_methods.update().where(payment_methods.c.id == payment_method_id).values(removed_at=now))
    # A removed bank account's mandate ends with it (Stripe deactivates the mandate on detach).
    uow.execute(
        mandates.update()
        .where(mandates.c.payment_method_id == payment_method_id, mandates.c.status == "active")
        .values(status="cancelled", cancelled_at=now)
    )
    customer = _customer(uow, row.workspace_id, row.client_id)
    if customer is not None and customer.default_payment_method == payment_method_id:
        remaining = list_cards(uow, now, row.workspace_id, row.client_id)
        _set_default(uow, stripe, customer, remaining[0]["id"] if remaining else None)


# ---------------------------------------------------------------- charging


def confirm_attempt(
    uow,
    now,
    stripe,
    workspace_id: str,
    client_id: str,
    attempt_id: str,
    setup_intent_id: str | None = None,
    payment_method_id: str | None = None,
    save: bool = False,
) -> dict:
    """Charge the attempt with a card the client just set up (setup_intent_id) or a saved one."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    row = _attempt(uow, workspace_id, attempt_id, client_id)
    if row.off_session:
        raise Conflict("This automatic payment is charged by the system.")
    if row.status not in ("open", "failed", "confirming"):
        return attempt_view(row)  # already charged, charging, or waiting for the bank: nothing to do twice
    if setup_intent_id:
        card_id = _setup_card(uow, now, stripe, workspace_id, client_id, setup_intent_id, saved=bool(save))
    elif payment_method_id:
        card_id = _saved_card(uow, workspace_id, client_id, payment_method_id).id
    else:
        raise Invalid("Enter a card or choose a saved one.", card="required")
    uow.commit()
    return charge(uow, now, stripe, row.id, card_id)


def charge(uow, now, stripe, attempt_id: str, card_id: str) -> dict:
    """Claim the attempt, then create and confirm its PaymentIntent. Only one caller wins the claim;
    the others get the attempt as it stands. The idempotency key is the attempt and its try number,
    so a retry after a lost answer returns the same PaymentIntent rather than charging again."""
    claimed = uow.execute(
        attempts.update()
        .where(
            attempts.c.id == attempt_id,
            sa.or_(
                attempts.c.status.in_(["open", "failed"]),
                sa.and_(attempts.c.status == "confirming", attempts.c.updated_at < now - CLAIM_TIMEOUT),
            ),
        )
        .values(status="confirming", payment_method_id=card_id, updated_at=now)
    ).rowcount
    row = uow.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).one()
    if claimed != 1:
        return attempt_view(row)
    method = uow.execute(sa.select(payment_methods).where(payment_methods.c.id == card_id)).first()
    mandate = method.mandate_id if method is not None and method.type == "sepa_debit" else None
    if method is not None and method.type == "sepa_debit" and row.currency != "EUR":
        _fail(uow, now, row, "A bank account can pay invoices in EUR only.", "currency_not_supported")
        uow.commit()
        return attempt_view(uow.execute(sa.select(attempts).where(attempts.c.id == row.id)).one())
    uow.publish("payment.attempted", row.workspace_id, _event(row, off_session=row.off_session))
    uow.commit()
    customer = _customer(uow, row.workspace_id, row.client_id)
    try:
        intent = stripe.create_payment_intent(
            amount=row.amount,
            currency=row.currency,
            customer=customer.stripe_customer_id,
            payment_method=card_id,
            off_session=row.off_session,
            key=f"attempt:{row.id}:{row.tries}",
            account=row.stripe_account,
            **({"mandate": mandate} if mandate else {}),  # a debit: collected under its mandate
            metadata={
                "attempt_id": row.id,
                "try": str(row.tries),
                "workspace_id": row.workspace_id,
                "client_id": row.client_id,
            },
        )
    except CardDeclined as exc:
        _fail(uow, now, row, exc.message, exc.code)
    except StripeUnavailable:
        # Unknown outcome: open it again with the same try number, so the retry reuses the key.
        uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status == "confirming")
            .values(status="open", updated_at=now)
        )
        uow.commit()
        raise
    else:
        _apply_intent(uow, now, row, intent, debit=mandate is not None)
    uow.commit()
    return attempt_view(uow.execute(sa.select(attempts).where(attempts.c.id == row.id)).one())


def _apply_intent(uow, now, row, intent: dict, debit: bool = False) -> None:
    """Move the attempt along with what Stripe answered; success itself waits for the signed event. A
    debit stays processing for days: billing is told (payment.processing) so the invoice shows it."""
    status = intent["status"]
    if status in ("succeeded", "processing"):
        new = {"status": "processing"}
    elif status == "requires_action" and not row.off_session:
        new = {"status": "requires_action", "client_secret": intent["client_secret"]}
    elif status == "requires_action":  # autopay, but the bank wants the client there
        return _fail(
            uow,
            now,
            row,
            "Your bank asks you to confirm this payment yourself.",
            "authentication_required",
            intent["id"],
        )
    else:
        return _fail(uow, now, row, intent["error"] or "The payment did not go through.", status, intent["id"])
    moved = uow.execute(
        attempts.update()
        .where(attempts.c.id == row.id, attempts.c.status == "confirming")
        .values(payment_intent_id=intent["id"], updated_at=now, **new)
    ).rowcount
    if moved == 1 and debit and new["status"] == "processing":
        _publish_processing(uow, now, row, intent["id"])


def _publish_processing(uow, now, row, payment_intent_id: str) -> None:
    uow.publish(
        "payment.processing",
        row.workspace_id,
        _event(
            row,
            off_session=row.off_session,
            method="sepa_debit",
            reference=payment_intent_id,
            since=now.isoformat(),
            **{"try": row.tries},
        ),
    )


def _fail(uow, now, row, message: str, code: str, payment_intent_id: str | None = None) -> None:
    """The try failed: the attempt can be tried again with another card (try number + 1). A failure
    after the payment was processing (a debit the bank returned days later) is `late`: the client
    has left the page, so it is emailed, like a failed automatic payment."""
    late = row.status == "processing"
    failed = uow.execute(
        attempts.update()
        .where(attempts.c.id == row.id, attempts.c.status.in_(["confirming", "requires_action", "processing", "open"]))
        .values(
            status="failed",
            tries=row.tries + 1,
            failure_message=message[:500],
            payment_intent_id=None,
            client_secret=None,
            updated_at=now,
        )
    ).rowcount
    if failed != 1:
        return
    pay_url = portal_url("/pay?" + "&".join(f"invoice={a['invoice_id']}" for a in row.allocations))
    uow.publish(
        "payment.failed",
        row.workspace_id,
        {
            **_event(row, off_session=row.off_session),
            "reason": message,
            "code": code,
            "pay_url": pay_url,
            "payment_intent_id": payment_intent_id,
            "late": late,
            "try": row.tries,
        },
    )


def _event(row, **extra) -> dict:
    return {
        "payment_id": row.id,
        "client_id": row.client_id,
        "amount": row.amount,
        "currency": row.currency,
        "allocations": [{"invoice_id": a["invoice_id"], "amount": a["amount"]} for a in row.allocations],
        **extra,
    }


def refresh_attempt(uow, now, stripe, workspace_id: str, client_id: str, attempt_id: str) -> dict:
    """After the browser's authentication step: a failure there sends no event, so ask Stripe."""
    require_role(PAYING_ROLES, PAYING_DETAIL)
    row = _attempt(uow, workspace_id, attempt_id, client_id)
    if row.status != "requires_action" or not row.payment_intent_id:
        return attempt_view(row)
    intent = stripe.payment_intent(row.payment_intent_id, row.stripe_account)
    if intent["status"] in ("requires_payment_method", "canceled"):
        _fail(
            uow,
            now,
            row,
            intent["error"] or "The payment was not authenticated.",
            "authentication_failed",
            intent["id"],
        )
    elif intent["status"] == "processing" or intent["status"] == "succeeded":
        uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status == "requires_action")
            .values(status="processing", updated_at=now)
        )
    uow.commit()
    return get_attempt(uow, now, workspace_id, attempt_id, client_id)


# ---------------------------------------------------------------- autopay


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


# ---------------------------------------------------------------- Stripe events


def receive_event(uow, now, event: dict) -> bool:
    """Keep a verified Stripe event; processing happens later, once. False for a redelivery."""
    if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_") or "type" not in event:
        raise Invalid("Not a Stripe event.")
    try:
        with uow.conn.begin_nested():
            uow.execute(
                stripe_events.insert().values(
                    id=event["id"],
                    type=str(event["type"])[:100],
                    body=json.dumps(event),
                    received_at=now,
                    outcome="",
                    request_id=current_request_id(),
                )
            )
    except IntegrityError:
        return False
    return True


def pending_events(uow, now, limit: int = 20) -> list[tuple[str, str | None]]:
    """Stored events due for processing: (event id, id of the request that delivered it)."""
    due = sa.or_(stripe_events.c.next_attempt_at.is_(None), stripe_events.c.next_attempt_at <= now)
    return [
        (r.id, r.request_id)
        for r in uow.execute(
            sa.select(stripe_events.c.id, stripe_events.c.request_id)
            .where(stripe_events.c.processed_at.is_(None), due)
            .order_by(stripe_events.c.received_at, stripe_events.c.id)
            .limit(limit)
        ).all()
    ]


STRIPE_EVENT_CONSUMER = "payments.stripe_event"


def event_failed(uow, now, event_id: str, error: str, max_attempts: int, base_delay: float) -> bool:
    """Count a failed try of a stored event: retry it later with a growing delay, or, out of tries,
    park it in dead_letters (marked processed so the timer stops). True when it was parked."""
    row = uow.execute(
        sa.select(stripe_events).where(stripe_events.c.id == event_id, stripe_events.c.processed_at.is_(None))
    ).first()
    if row is None:
        return False
    tries = row.attempts + 1
    if tries >= max_attempts:
        add_dead_letter(uow.conn, STRIPE_EVENT_CONSUMER, json.loads(row.body), error)
        uow.execute(
            stripe_events.update()
            .where(stripe_events.c.id == event_id)
            .values(attempts=tries, processed_at=now, outcome=f"dead-lettered: {error}"[:200])
        )
        return True
    uow.execute(
        stripe_events.update()
        .where(stripe_events.c.id == event_id)
        .values(attempts=tries, next_attempt_at=now + timedelta(seconds=base_delay * 2 ** (tries - 1)))
    )
    return False


def requeue_event(uow, event_id: str) -> bool:
    """A replay from the dead-letter table: the timer processes the stored event again, afresh."""
    return (
        uow.execute(
            stripe_events.update()
            .where(stripe_events.c.id == event_id)
            .values(processed_at=None, attempts=0, next_attempt_at=None, outcome="")
        ).rowcount
        == 1
    )


def event_workspace(uow, event_id: str) -> str | None:
    """Which workspace a stored Stripe event belongs to, from our own rows for the object it names: the
    processing timer's lookup across workspaces. None when it names nothing of ours."""
    stored = uow.execute(sa.select(stripe_events.c.body).where(stripe_events.c.id == event_id)).first()
    if stored is None:
        return None
    event = json.loads(stored.body)
    obj, kind = event["data"]["object"], event["type"]
    if kind.startswith("payment_intent."):
        found = _attempt_for_intent(uow, payment_intent_view(obj))
    elif kind == "charge.refunded" or kind.startswith("charge.dispute."):
        intent_id = obj.get("payment_intent")
        intent_id = intent_id if isinstance(intent_id, str) else (intent_id or {}).get("id")
        found = (
            uow.execute(sa.select(attempts.c.workspace_id).where(attempts.c.payment_intent_id == intent_id)).first()
            if intent_id
            else None
        )
    elif kind == "setup_intent.succeeded":
        found = uow.execute(
            sa.select(card_setups.c.workspace_id).where(card_setups.c.setup_intent_id == obj["id"])
        ).first()
    elif kind == "payment_method.detached":
        found = uow.execute(sa.select(payment_methods.c.workspace_id).where(payment_methods.c.id == obj["id"])).first()
    else:
        found = None
    return found.workspace_id if found is not None else None


def process_event(uow, now, stripe, event_id: str) -> str | None:
    """Handle one stored event in one transaction with marking it processed; a replica that got to it
    first makes this a no-op (row lock on PostgreSQL, the processed_at check everywhere)."""
    query = sa.select(stripe_events).where(stripe_events.c.id == event_id, stripe_events.c.processed_at.is_(None))
    if uow.conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = uow.execute(query).first()
    if row is None:
        return None
    outcome = handle_event(uow, now, stripe, json.loads(row.body))
    uow.execute(
        stripe_events.update().where(stripe_events.c.id == event_id).values(processed_at=now, outcome=outcome[:200])
    )
    return outcome


def _attempt_for_intent(uow, intent: dict):
    attempt_id = intent["metadata"].get("attempt_id")
    query = (
        sa.select(attempts).where(attempts.c.id == attempt_id)
        if attempt_id
        else sa.select(attempts).where(attempts.c.payment_intent_id == intent["id"])
    )
    return uow.execute(query).first()


def handle_event(uow, now, stripe, event: dict) -> str:
    obj, kind = event["data"]["object"], event["type"]
    if kind.startswith("payment_intent."):
        return _on_payment_intent(uow, now, kind, payment_intent_view(obj))
    if kind == "charge.refunded":
        return _on_charge_refunded(uow, now, obj)
    if kind.startswith("charge.dispute."):
        return _on_dispute(uow, now, obj)
    if kind == "setup_intent.succeeded":
        setup = uow.execute(sa.select(card_setups).where(card_setups.c.setup_intent_id == obj["id"])).first()
        if setup is None or setup.attempt_id:  # cards entered to pay are kept by the payment itself
            return "ignored: not a card being saved"
        if "sepa_debit" in (obj.get("payment_method_types") or []):  # kept, with its mandate, when set up
            return "ignored: a bank account"
        customer = _customer(uow, setup.workspace_id, setup.client_id)
        payment_method = obj.get("payment_method")
        payment_method = payment_method if isinstance(payment_method, str) else (payment_method or {}).get("id")
        _register_card(uow, now, stripe, customer, payment_method, saved=True)
        return "card saved"
    if kind == "payment_method.detached":
        _forget_card(uow, now, stripe, obj["id"])
        return "card removed"
    return "ignored"


def _on_payment_intent(uow, now, kind: str, intent: dict) -> str:
    row = _attempt_for_intent(uow, intent)
    if row is None:
        return "ignored: no such attempt"
    current_try = intent["metadata"].get("try") in (None, str(row.tries))
    if kind == "payment_intent.succeeded":
        if row.status == "succeeded":
            return "duplicate: already paid"
        if intent["amount"] != row.amount or intent["currency"] != row.currency:
            log.error(
                "payment intent does not match its attempt",
                extra={"attempt_id": row.id, "payment_intent": intent["id"]},
            )
            return "rejected: amount or currency differs from the attempt"
        # A success always counts, even of a try we thought failed: the money was taken.
        paid = uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status != "succeeded")
            .values(
                status="succeeded",
                payment_intent_id=intent["id"],
                client_secret=None,
                failure_message="",
                succeeded_at=now,
                updated_at=now,
            )
        ).rowcount
        if paid == 1:
            card = uow.execute(
                sa.select(payment_methods).where(
                    payment_methods.c.id == (intent["payment_method"] or row.payment_method_id)
                )
            ).first()
            uow.publish(
                "payment.succeeded",
                row.workspace_id,
                _event(
                    row,
                    reference=intent["id"],
                    received_at=now.isoformat(),
                    method="sepa_debit" if card is not None and card.type == "sepa_debit" else "card",
                    off_session=row.off_session,
                    card={"brand": card.brand, "last4": card.last4} if card and card.type == "card" else None,
                    bank={"last4": card.last4, "country": card.country}
                    if card is not None and card.type == "sepa_debit"
                    else None,
                ),
            )
        return "paid"
    if not current_try or row.status in ("succeeded", "failed", "canceled"):
        return f"ignored: attempt is {row.status}"
    if kind == "payment_intent.payment_failed":
        _fail(uow, now, row, intent["error"] or "The payment did not go through.", "payment_failed", intent["id"])
        return "failed"
    if kind == "payment_intent.processing":
        # Only from before processing: a success (or failure) that came first is never undone by it.
        moved = uow.execute(
            attempts.update()
            .where(attempts.c.id == row.id, attempts.c.status.in_(["confirming", "requires_action"]))
            .values(status="processing", payment_intent_id=intent["id"], updated_at=now)
        ).rowcount
        method = uow.execute(
            sa.select(payment_methods.c.type).where(
                payment_methods.c.id == (intent["payment_method"] or row.payment_method_id)
            )
        ).first()
        if moved == 1 and method is not None and method.type == "sepa_debit":
            _publish_processing(uow, now, row, intent["id"])
        return "processing"
    return "ignored"


# ---------------------------------------------------------------- refunds and disputes


def refund_view(row) -> dict:
    return {
        "id": row.id,
        "payment_id": row.attempt_id,
        "stripe_refund_id": row.stripe_refund_id,
        "amount": row.amount,
        "currency": row.currency,
        "reason": row.reason,
        "status": row.status,
        "created_at": iso(row.created_at),
    }


def refund_payment(
    uow, now, stripe, workspace_id: str, payment_id: str, amount, reason: str = "", request_key: str = ""
) -> dict:
    """Refund all or part of a card payment. The refund row is claimed before Stripe is called, and
    its id is the idempotency key, so retrying with the same request key never refunds twice."""
    row = _attempt(uow, workspace_id, payment_id)
    if not isinstance(request_key, str) or not request_key.strip():
        raise Invalid("Send an idempotency key with a refund.", idempotency_key="required")
    request_key = text(request_key, "idempotency_key", 100)
    reason = text(reason, "reason", 500, null="")
    existing = uow.execute(
        sa.select(refunds).where(refunds.c.attempt_id == row.id, refunds.c.request_key == request_key)
    ).first()
    if existing is None:
        if row.status != "succeeded" or not row.payment_intent_id:
            raise Conflict("Only a completed card payment can be refunded.")
        if amount is None:  # the rest; once everything is refunded there is no rest (a state, not bad input)
            amount = row.amount - row.refunded
            if amount <= 0:
                raise Conflict("This payment has been refunded in full.", amount="nothing left to refund")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise Invalid("The amount is a positive integer in minor units.", amount="not a positive integer")
        committed = uow.execute(
            sa.select(sa.func.coalesce(sa.func.sum(refunds.c.amount), 0)).where(
                refunds.c.attempt_id == row.id, refunds.c.status != "failed"
            )
        ).scalar_one()
        if amount > row.amount - committed:
            raise Conflict("That is more than is left to refund on this payment.", amount="above the refundable")
        try:
            with uow.conn.begin_nested():
                uow.execute(
                    refunds.insert().values(
                        id=str(uuid.uuid4()),
                        attempt_id=row.id,
                        request_key=request_key,
                        amount=amount,
                        currency=row.currency,
                        reason=reason,
                        status="pending",
                        created_at=now,
                    )
                )
        except IntegrityError:
            pass
        uow.commit()
        existing = uow.execute(
            sa.select(refunds).where(refunds.c.attempt_id == row.id, refunds.c.request_key == request_key)
        ).one()
    if existing.status != "pending":
        return refund_view(existing)
    try:
        result = stripe.create_refund(
            payment_intent=row.payment_intent_id,
            amount=existing.amount,
            metadata={"refund_id": existing.id, "payment_id": row.id},
            key=f"refund:{existing.id}",
            account=row.stripe_account,
        )
    except Invalid:
        uow.execute(refunds.update().where(refunds.c.id == existing.id).values(status="failed"))
        uow.commit()
        raise
    uow.execute(refunds.update().where(refunds.c.id == existing.id).values(stripe_refund_id=result["id"]))
    if result["status"] == "succeeded":
        _refund_succeeded(uow, row, existing.id)
    uow.commit()
    return refund_view(uow.execute(sa.select(refunds).where(refunds.c.id == existing.id)).one())


def _refund_succeeded(uow, attempt, refund_id: str) -> None:
    """Publish payment.refunded once per refund, however many paths report it."""
    done = uow.execute(
        refunds.update().where(refunds.c.id == refund_id, refunds.c.status == "pending").values(status="succeeded")
    ).rowcount
    if done != 1:
        return
    refund = uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).one()
    uow.execute(
        attempts.update().where(attempts.c.id == attempt.id).values(refunded=attempts.c.refunded + refund.amount)
    )
    uow.publish(
        "payment.refunded",
        attempt.workspace_id,
        {
            "refund_id": refund.stripe_refund_id or refund.id,
            "payment_id": attempt.id,
            "client_id": attempt.client_id,
            "amount": refund.amount,
            "currency": refund.currency,
            "reason": refund.reason,
        },
    )


def _on_charge_refunded(uow, now, charge: dict) -> str:
    intent_id = charge.get("payment_intent")
    intent_id = intent_id if isinstance(intent_id, str) else (intent_id or {}).get("id")
    row = uow.execute(sa.select(attempts).where(attempts.c.payment_intent_id == intent_id)).first()
    if row is None:
        return "ignored: no such payment"
    count = 0
    for refund in (charge.get("refunds") or {}).get("data") or []:
        if refund.get("status") != "succeeded":
            continue
        known = uow.execute(sa.select(refunds).where(refunds.c.stripe_refund_id == refund["id"])).first()
        if known is None:  # made at Stripe directly (the dashboard): record it here too
            refund_id = str(uuid.uuid4())
            uow.execute(
                refunds.insert().values(
                    id=refund_id,
                    attempt_id=row.id,
                    request_key=f"stripe:{refund['id']}",
                    stripe_refund_id=refund["id"],
                    amount=refund["amount"],
                    currency=row.currency,
                    reason=str(refund.get("reason") or ""),
                    status="pending",
                    created_at=now,
                )
            )
            known = uow.execute(sa.select(refunds).where(refunds.c.id == refund_id)).one()
        _refund_succeeded(uow, uow.execute(sa.select(attempts).where(attempts.c.id == row.id)).one(), known.id)
        count += 1
    return f"refunds: {count}"


def _on_dispute(uow, now, dispute: dict) -> str:
    intent_id = dispute.get("payment_intent")
    row = (
        uow.execute(sa.select(attempts).where(attempts.c.payment_intent_id == intent_id)).first() if intent_id else None
    )
    if row is None:
        return "ignored: no such payment"
    known = uow.execute(sa.select(disputes).where(disputes.c.id == dispute["id"])).first()
    status = str(dispute.get("status", "needs_response"))[:40]
    if known is not None and known.status == status:
        return "duplicate: dispute unchanged"
    values = {"status": status, "updated_at": now}
    if known is None:
        uow.execute(
            disputes.insert().values(
                id=dispute["id"],
                attempt_id=row.id,
                workspace_id=row.workspace_id,
                amount=dispute["amount"],
                currency=row.currency,
                reason=str(dispute.get("reason") or "")[:100],
                created_at=now,
                **values,
            )
        )
    else:
        uow.execute(disputes.update().where(disputes.c.id == dispute["id"]).values(**values))
    uow.execute(attempts.update().where(attempts.c.id == row.id).values(dispute_status=status))
    uow.publish(
        "payment.disputed",
        row.workspace_id,
        {
            "dispute_id": dispute["id"],
            "payment_id": row.id,
            "client_id": row.client_id,
            "amount": dispute["amount"],
            "currency": row.currency,
            "reason": str(dispute.get("reason") or ""),
            "status": status,
        },
    )
    return f"dispute {status}"


def list_disputes(uow, now, workspace_id: str) -> list[dict]:
    rows = uow.execute(
        sa.select(disputes, attempts.c.client_id)
        .join(attempts, attempts.c.id == disputes.c.attempt_id)
        .where(disputes.c.workspace_id == workspace_id)
        .order_by(disputes.c.created_at.desc())
    ).all()
    return [
        {
            "id": r.id,
            "payment_id": r.attempt_id,
            "client_id": r.client_id,
            "amount": r.amount,
            "currency": r.currency,
            "reason": r.reason,
            "status": r.status,
            "created_at": iso(r.created_at),
            "updated_at": iso(r.updated_at),
        }
        for r in rows
    ]


def list_refunds(uow, now, workspace_id: str, payment_id: str) -> list[dict]:
    row = _attempt(uow, workspace_id, payment_id)
    return [
        refund_view(r)
        for r in uow.execute(
            sa.select(refunds).where(refunds.c.attempt_id == row.id).order_by(refunds.c.created_at)
        ).all()
    ]
