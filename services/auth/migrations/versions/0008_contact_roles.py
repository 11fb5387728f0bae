"""auth's copy of each contact's role, which sessions carry

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:30:00

Billing owns the role; auth keeps the copy its contact events carry and writes it into each session's
credential. Until billing's events re-announce a contact, its copy says owner, which is what billing
made every contact from before roles. A column of an existing table: its row-level security and
grants still apply.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("role", sa.String(length=20), nullable=False, server_default="owner"))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("role")
