"""quote revisions: a quote's version, whether the client asked for changes, which version was accepted
or declined, and the earlier versions kept read-only in quote_versions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (nullable or with a constant default): no table is rebuilt; every quote is version 1
    op.add_column("quotes", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.add_column("quotes", sa.Column("changes_requested_at", chassis.db.UtcDateTime(timezone=True), nullable=True))
    op.add_column("quotes", sa.Column("accepted_version", sa.Integer(), nullable=True))
    op.add_column("quotes", sa.Column("rejected_version", sa.Integer(), nullable=True))
    # a quote accepted or declined before revisions existed had one version only
    op.execute("UPDATE quotes SET accepted_version = 1 WHERE status = 'accepted'")
    op.execute("UPDATE quotes SET rejected_version = 1 WHERE status = 'rejected'")

    op.create_table(
        "quote_versions",
        sa.Column("quote_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=50), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("expiry_date", sa.Date(), nullable=True),
        sa.Column("subtotal", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("discount_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tax_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("tax_breakdown", sa.JSON(), nullable=False),
        sa.Column("issued_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("changes_requested_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["quote_id"], ["quotes.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("quote_id", "version"),
    )
    enable_row_level_security(op, "quote_versions")  # a client's quote history, like its quotes


def downgrade() -> None:
    disable_row_level_security(op, "quote_versions")
    op.drop_table("quote_versions")
    with op.batch_alter_table("quotes") as batch:
        for column in ("rejected_version", "accepted_version", "changes_requested_at", "version"):
            batch.drop_column(column)
