"""passwords: which workspaces allow them, each contact's argon2id hash, and "Forgot your password?" links

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 05:30:00
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_passwords",
        sa.Column("workspace_id", sa.String(36), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "passwords",
        sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), primary_key=True),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.Column("hash", sa.String(300), nullable=False),
        sa.Column("set_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "password_reset_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), nullable=False, index=True),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.Column("created_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
    )
    # Signing in and resetting run before anyone is known (unscoped); the profile's calls are held to
    # the contact's client, and a workspace's setting to that workspace.
    enable_row_level_security(op, "passwords")
    enable_row_level_security(op, "password_reset_tokens")
    enable_row_level_security(op, "workspace_passwords", client_column=None)


def downgrade() -> None:
    for table in ("workspace_passwords", "password_reset_tokens", "passwords"):
        disable_row_level_security(op, table)
        op.drop_table(table)
