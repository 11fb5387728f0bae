"""row-level security: client-scoped tables visible only within the transaction's workspace and client

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:00:00.000000
"""

from alembic import op

from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Tables with a workspace and a client: a portal call sees only its own client's rows.
CLIENT_TABLES = (
    "contacts",
    "invoices",
    "quotes",
    "credit_notes",
    "payments",
    "refunds",
    "credit_applications",
    "recurring_invoices",
    "comments",
    "activities",
    "reviews",
    "bookings",
    "client_engagement",
)
# Workspace-wide tables: every client of the workspace shares them (numbering, booking cells, which
# hold every client's bookings so that free times are right), so they are held to the workspace only.
WORKSPACE_TABLES = ("api_keys", "counters", "booking_cells")
# Line items, allocations and sent reminders have no workspace column; they are reached through
# their (protected) documents and payments.


def upgrade() -> None:
    for table in CLIENT_TABLES:
        enable_row_level_security(op, table)
    enable_row_level_security(op, "clients", client_column="id")  # a client row is its own client's
    for table in WORKSPACE_TABLES:
        enable_row_level_security(op, table, client_column=None)


def downgrade() -> None:
    for table in (*CLIENT_TABLES, "clients", *WORKSPACE_TABLES):
        disable_row_level_security(op, table)
