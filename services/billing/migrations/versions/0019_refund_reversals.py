"""refund_reversals: what each card refund took back from each invoice its payment paid

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 16:00:00

An invoice page shows a refunded payment as paid in full with its refund as a line of its own. Refunds
recorded before under the credit policy are copied from the refund credits they left on invoices;
those under the reopen policy left no record of the invoices they reopened, and stay as they were.
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refund_reversals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_refund_reversals_refund_id", "refund_reversals", ["refund_id"])
    op.create_index("ix_refund_reversals_invoice_id", "refund_reversals", ["invoice_id"])
    op.execute(
        "INSERT INTO refund_reversals"
        " (workspace_id, client_id, refund_id, payment_id, invoice_id, amount, created_at)"
        " SELECT r.workspace_id, r.client_id, r.id, r.payment_id, c.invoice_id, c.amount, r.created_at"
        " FROM refunds r JOIN credit_applications c ON c.source = 'refund' AND c.reference = r.id"
        " WHERE c.invoice_id IS NOT NULL"
    )
    enable_row_level_security(op, "refund_reversals")


def downgrade() -> None:
    disable_row_level_security(op, "refund_reversals")
    op.drop_index("ix_refund_reversals_invoice_id", table_name="refund_reversals")
    op.drop_index("ix_refund_reversals_refund_id", table_name="refund_reversals")
    op.drop_table("refund_reversals")
