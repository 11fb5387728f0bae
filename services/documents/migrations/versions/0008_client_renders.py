"""the read model of a client's rendered documents, for cached PDFs fetched without an RPC

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 22:30:00

client_renders: which documents documents rendered from billing's answer to a client, and when billing
was asked; client_changes and workspace_changes: when billing or payments last announced anything
about a client, or about a whole workspace. All start empty: a document's first download goes through
billing, as before. Held to their workspace and client by row-level security, like the emails (0005).
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_renders",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("read_after", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "client_id", "kind", "document_id"),
    )
    enable_row_level_security(op, "client_renders")
    op.create_table(
        "client_changes",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("changed_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "client_id"),
    )
    enable_row_level_security(op, "client_changes")
    op.create_table(
        "workspace_changes",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("changed_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id"),
    )
    enable_row_level_security(op, "workspace_changes", client_column=None)


def downgrade() -> None:
    for table in ("workspace_changes", "client_changes", "client_renders"):
        disable_row_level_security(op, table)
        op.drop_table(table)
