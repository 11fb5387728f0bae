"""indexes that keep the client summary's refresh to what is open: a client's latest payment, its
payments with money unapplied, and its retainer invoices

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 16:30:00

The summary is recomputed on every payment. Without these its credit, retainer and last-payment
figures read every payment and invoice the client ever had, so a payment cost more the longer the
client's history. Indexes only: nothing to backfill.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

RETAINER_INVOICE = "kind = 'retainer'"
UNAPPLIED_PAYMENT = "unapplied != 0"


def upgrade() -> None:
    op.create_index("ix_payments_client_latest", "payments", ["workspace_id", "client_id", "received_at", "id"])
    op.create_index(
        "ix_payments_unapplied",
        "payments",
        ["client_id", "currency"],
        postgresql_where=sa.text(UNAPPLIED_PAYMENT),
        sqlite_where=sa.text(UNAPPLIED_PAYMENT),
    )
    op.create_index(
        "ix_invoices_retainers",
        "invoices",
        ["client_id", "currency"],
        postgresql_where=sa.text(RETAINER_INVOICE),
        sqlite_where=sa.text(RETAINER_INVOICE),
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_retainers", table_name="invoices")
    op.drop_index("ix_payments_unapplied", table_name="payments")
    op.drop_index("ix_payments_client_latest", table_name="payments")
