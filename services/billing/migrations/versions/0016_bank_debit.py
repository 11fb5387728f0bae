"""bank debits in flight: what is processing, per invoice, until it settles or fails

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 05:30:00

`processing_payments` is billing's view of payments' debits between payment.processing and
payment.succeeded / payment.failed: the invoice, the payments page and the dashboard show these
amounts as processing, and a second payment of such an invoice is refused. It holds one client's
data: row-level security as for the other client tables (0005). New, so nothing to backfill.
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "processing_payments",
        sa.Column("payment_id", sa.String(length=36), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("started_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("settled_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.PrimaryKeyConstraint("payment_id", "try_number", "invoice_id"),
    )
    op.create_index("ix_processing_payments_client", "processing_payments", ["workspace_id", "client_id", "settled_at"])
    op.create_index("ix_processing_payments_invoice", "processing_payments", ["invoice_id", "settled_at"])
    enable_row_level_security(op, "processing_payments")


def downgrade() -> None:
    disable_row_level_security(op, "processing_payments")
    op.drop_index("ix_processing_payments_invoice", table_name="processing_payments")
    op.drop_index("ix_processing_payments_client", table_name="processing_payments")
    op.drop_table("processing_payments")
