"""Saved cards: a SetupIntent for Stripe.js to collect a card into (to save it, or to pay an attempt
with it), keeping the card once Stripe confirmed it, choosing the default card, and removing a card
(detached at Stripe, a bank account's mandate ended with it, the newest remaining card made the
default). Cards and bank accounts share the payment_methods table; bank accounts are added by
services/payments/bank_debit.py, and a card is charged by charging."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis.errors import Conflict, Invalid, NotFound
from chassis.scope import require_role
from services.payments.handlers.common import PAYING_DETAIL, PAYING_ROLES, iso
from services.payments.handlers.payment_attempts import _attempt
from services.payments.handlers.stripe_customers import _account_of, _customer, ensure_customer
from services.payments.tables import card_setups, customers, mandates, payment_methods


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
