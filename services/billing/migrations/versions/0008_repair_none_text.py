"""Text that was stored as Python's spelling of a null ("None") goes back to what the null meant: empty
text in a column that holds text, NULL in one that may be NULL

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (table, column, nullable): the text columns a null could reach through str()
COLUMNS = (
    ("contacts", "name", False),
    ("contacts", "phone", False),
    ("contacts", "locale", True),
    ("clients", "address", False),
    ("clients", "phone", False),
    ("clients", "tax_id", False),
    ("workspaces", "phone", False),
    ("workspaces", "address", False),
    ("workspaces", "tax_id", False),
    ("invoices", "notes", False),
    ("invoices", "terms", False),
    ("quotes", "notes", False),
    ("quotes", "terms", False),
    ("quotes", "signature_name", True),
    ("quotes", "rejection_reason", True),
    ("credit_notes", "reason", False),
    ("recurring_invoices", "notes", False),
    ("payments", "reference", False),
    ("credit_applications", "reference", False),
    ("refunds", "reason", False),
    ("comments", "author_name", False),
    ("reviews", "author_name", False),
    ("reviews", "message", False),
)


def upgrade() -> None:
    for table, column, nullable in COLUMNS:
        t = sa.table(table, sa.column(column, sa.Text))
        op.execute(t.update().where(t.c[column] == "None").values({column: None if nullable else ""}))


def downgrade() -> None:
    pass  # what was repaired was never a value anyone sent
