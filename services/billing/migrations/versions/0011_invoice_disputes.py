"""invoice disputes: a client's dispute of an owed invoice (whole or some of its lines) with its reason,
and how the business resolved it (adjusted with a credit note, or rejected with a message); at most
one open dispute per invoice, kept by a partial unique index

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

OPEN_DISPUTE = "status = 'open'"


def upgrade() -> None:
    op.create_table(
        "invoice_disputes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=True),
        sa.Column("raised_by", sa.String(length=254), nullable=False),
        sa.Column("raised_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resolution_message", sa.Text(), server_default="", nullable=False),
        sa.Column("credit_note_id", sa.String(length=36), nullable=True),
        sa.Column("credit_amount", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_invoice_disputes_invoice", "invoice_disputes", ["invoice_id"])
    op.create_index("ix_invoice_disputes_listing", "invoice_disputes", ["workspace_id", "status", "raised_at"])
    op.create_index(
        "uq_invoice_disputes_open",
        "invoice_disputes",
        ["invoice_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_DISPUTE),
        sqlite_where=sa.text(OPEN_DISPUTE),
    )
    enable_row_level_security(op, "invoice_disputes")


def downgrade() -> None:
    disable_row_level_security(op, "invoice_disputes")
    op.drop_index("uq_invoice_disputes_open", table_name="invoice_disputes")
    op.drop_index("ix_invoice_disputes_listing", table_name="invoice_disputes")
    op.drop_index("ix_invoice_disputes_invoice", table_name="invoice_disputes")
    op.drop_table("invoice_disputes")
