"""passkeys: contacts' WebAuthn credentials, and the single-use challenges they answer

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:30:00
"""

import sqlalchemy as sa
from alembic import op

from chassis.db import UtcDateTime, disable_row_level_security, enable_row_level_security

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), nullable=False, index=True),
        sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("transports", sa.String(200), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("last_used_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "passkey_challenges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("challenge", sa.String(100), nullable=False, unique=True),
        sa.Column("purpose", sa.String(20), nullable=False),
        # unset for a sign-in challenge: nobody is known until the passkey answers
        sa.Column("workspace_id", sa.String(36), nullable=True),
        sa.Column("client_id", sa.String(36), nullable=True),
        sa.Column("contact_id", sa.String(36), nullable=True),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("used_at", UtcDateTime, nullable=True),
    )
    # Registration and step-up run in the contact's scope; passkey sign-in runs unscoped, as the
    # magic link does, because nobody is known until the passkey answers.
    enable_row_level_security(op, "passkeys")
    enable_row_level_security(op, "passkey_challenges")


def downgrade() -> None:
    disable_row_level_security(op, "passkey_challenges")
    disable_row_level_security(op, "passkeys")
    op.drop_table("passkey_challenges")
    op.drop_table("passkeys")
