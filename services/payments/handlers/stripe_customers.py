"""Stripe Customers: each client of a workspace has one, made on its first payment or card, under the
workspace's connected Stripe account when it has one. `_customer` reads the row, `ensure_customer`
makes it once even when two first payments race (Stripe's idempotency key is the client, and the
primary key keeps one row here), and `_account_of` says which Stripe account a new one belongs to."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.payments.tables import customers


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
