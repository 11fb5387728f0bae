"""each contact's role inside its client's organisation

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 05:30:00

Every contact has one role: owner, payer, approver or viewer. Contacts from before roles could do
everything in the portal, so they become owners; new contacts name their role (payer when the admin
API leaves it out). A column of an existing table: its row-level security and grants still apply.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("role", sa.String(length=20), nullable=False, server_default="owner"))
    if op.get_bind().dialect.name == "postgresql":  # SQLite cannot alter a column in place; inserts name it
        op.alter_column("contacts", "role", server_default=None)
        op.create_check_constraint("ck_contacts_role", "contacts", "role IN ('owner', 'payer', 'approver', 'viewer')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_contacts_role", "contacts", type_="check")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("role")
