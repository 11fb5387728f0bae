"""sessions and devices: where each session and sign-in link came from, per-recipient document links,
and the "this wasn't me" token of each sign-in email

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 05:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions begun before this revision have no device: the sessions page shows them as unknown.
    for table in ("sessions", "link_tokens"):
        op.add_column(table, sa.Column("ip", sa.String(45), nullable=True))
        op.add_column(table, sa.Column("user_agent", sa.String(500), nullable=True))
    op.add_column("sessions", sa.Column("browser", sa.String(100), nullable=True))
    op.add_column("sessions", sa.Column("os", sa.String(100), nullable=True))
    # Only the digest of the "this wasn't me" token in the sign-in email is kept, as for the link itself.
    op.add_column("link_tokens", sa.Column("report_hash", sa.String(64), nullable=True))
    op.create_index("ix_link_tokens_report_hash", "link_tokens", ["report_hash"], unique=True)
    op.create_index("ix_link_tokens_contact_id", "link_tokens", ["contact_id"])
    # The contact a one-document link was emailed to (none for links issued before this revision).
    op.add_column("document_links", sa.Column("contact_id", sa.String(36), nullable=True))
    op.create_index("ix_document_links_contact_id", "document_links", ["contact_id"])


def downgrade() -> None:
    # batch mode: SQLite (make dev) drops a column by copying its table
    with op.batch_alter_table("document_links") as batch:
        batch.drop_index("ix_document_links_contact_id")
        batch.drop_column("contact_id")
    with op.batch_alter_table("link_tokens") as batch:
        batch.drop_index("ix_link_tokens_contact_id")
        batch.drop_index("ix_link_tokens_report_hash")
        for column in ("report_hash", "user_agent", "ip"):
            batch.drop_column(column)
    with op.batch_alter_table("sessions") as batch:
        for column in ("os", "browser", "user_agent", "ip"):
            batch.drop_column(column)
