"""row-level security: contacts, sessions and document links visible only within the transaction's scope

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:00:00.000000
"""

from alembic import op

from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Sign-in itself runs unscoped (nobody is known yet) and so bypasses these; calls made for a
# signed-in client (sign-out, its document links) are held to that client.
CLIENT_TABLES = ("contacts", "sessions", "document_links")


def upgrade() -> None:
    for table in CLIENT_TABLES:
        enable_row_level_security(op, table)


def downgrade() -> None:
    for table in CLIENT_TABLES:
        disable_row_level_security(op, table)
