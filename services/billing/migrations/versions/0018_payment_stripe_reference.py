"""a payment's Stripe PaymentIntent id apart from the reference the client sees

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 13:00:00

A payment through Stripe now shows the client the card or bank account it was paid with as its
reference; Stripe's id is kept in stripe_reference for looking the payment up there. Payments
recorded before kept the id as their reference: it is copied, and their reference left as it was.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("stripe_reference", sa.String(length=64), server_default="", nullable=False))
    op.execute(
        "UPDATE payments SET stripe_reference = reference"
        " WHERE source = 'stripe' AND substr(reference, 1, 3) = 'pi_' AND length(reference) <= 64"
    )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("stripe_reference")
