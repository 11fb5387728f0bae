"""client summaries (the dashboard's read model), filled from the ledger; indexes for the invoice
listings, open invoices and number search, and statistics that tell the planner a client's invoices
are in one workspace

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-26 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OPEN_INVOICE = "status IN ('partially_paid', 'sent', 'viewed')"

# The figures as services/billing/handlers/summaries.py computed them for this revision, frozen in
# SQL for every client at once: a migration must not change meaning when that module changes.
FILL = """
INSERT INTO client_summaries (workspace_id, client_id, currency, outstanding, credit_available, retainer_available,
                              processing, last_payment_amount, last_payment_currency, last_payment_received_at,
                              updated_at)
SELECT c.workspace_id, c.id, c.currency,
  (SELECT coalesce(sum(i.total - i.amount_paid - i.amount_credited), 0) FROM invoices i
    WHERE i.client_id = c.id AND i.workspace_id = c.workspace_id AND i.kind = 'standard' AND i.archived_at IS NULL
      AND i.status IN ('partially_paid', 'sent', 'viewed') AND i.total - i.amount_paid - i.amount_credited > 0
      AND i.currency = c.currency),
  (SELECT coalesce(sum(n.total), 0) FROM credit_notes n WHERE n.client_id = c.id AND n.currency = c.currency)
  + (SELECT coalesce(sum(p.unapplied), 0) FROM payments p WHERE p.client_id = c.id AND p.currency = c.currency)
  - (SELECT coalesce(sum(a.amount), 0) FROM credit_applications a
      WHERE a.client_id = c.id AND a.currency = c.currency AND a.source = 'credit'),
  (SELECT coalesce(sum(pa.amount), 0) FROM payment_allocations pa JOIN invoices i ON i.id = pa.invoice_id
    WHERE i.client_id = c.id AND i.kind = 'retainer' AND i.currency = c.currency)
  - (SELECT coalesce(sum(a.amount), 0) FROM credit_applications a
      WHERE a.client_id = c.id AND a.currency = c.currency AND a.source = 'retainer'),
  0,
  (SELECT p.amount FROM payments p WHERE p.client_id = c.id AND p.workspace_id = c.workspace_id
    ORDER BY p.received_at DESC, p.id DESC LIMIT 1),
  (SELECT p.currency FROM payments p WHERE p.client_id = c.id AND p.workspace_id = c.workspace_id
    ORDER BY p.received_at DESC, p.id DESC LIMIT 1),
  (SELECT p.received_at FROM payments p WHERE p.client_id = c.id AND p.workspace_id = c.workspace_id
    ORDER BY p.received_at DESC, p.id DESC LIMIT 1),
  CURRENT_TIMESTAMP
FROM clients c
"""


def upgrade() -> None:
    op.create_table(
        "client_summaries",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("outstanding", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("credit_available", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("retainer_available", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("processing", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_payment_amount", sa.BigInteger(), nullable=True),
        sa.Column("last_payment_currency", sa.String(length=3), nullable=True),
        sa.Column("last_payment_received_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
        ),
        sa.PrimaryKeyConstraint("workspace_id", "client_id"),
    )
    enable_row_level_security(op, "client_summaries")
    op.execute(FILL)

    op.create_table(
        "invoice_number_suffixes",
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column(
            "suffix",
            sa.String(length=50).with_variant(sa.String(length=50, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
        ),
        sa.PrimaryKeyConstraint("invoice_id", "suffix"),
    )
    op.create_index("ix_invoice_number_suffixes_search", "invoice_number_suffixes", ["workspace_id", "suffix"])
    enable_row_level_security(op, "invoice_number_suffixes")
    _fill_suffixes()

    op.create_index("ix_invoices_client_listing", "invoices", ["workspace_id", "client_id", "issue_date", "number"])
    op.create_index("ix_invoices_listing", "invoices", ["workspace_id", "issue_date", "number"])
    op.create_index(
        "ix_invoices_open",
        "invoices",
        ["workspace_id", "client_id", "due_date"],
        postgresql_where=sa.text(OPEN_INVOICE),
        sqlite_where=sa.text(OPEN_INVOICE),
    )
    if op.get_bind().dialect.name == "postgresql":
        # A client's rows are all in one workspace: without this the planner multiplies the two
        # conditions as if independent, and with the row-level-security policy counting them again it
        # expects a handful of a client's invoices where there are thousands, and sorts them all for
        # one page instead of reading the listing index in order.
        op.execute(
            "CREATE STATISTICS st_invoices_workspace_client (dependencies, ndistinct) "
            "ON workspace_id, client_id FROM invoices"
        )


def _fill_suffixes() -> None:
    """Every ending of every number, lower-cased, as handlers/documents.py writes them (frozen here)."""
    conn = op.get_bind()
    meta = sa.MetaData()
    invoices = sa.Table(
        "invoices",
        meta,
        sa.Column("id", sa.String),
        sa.Column("workspace_id", sa.String),
        sa.Column("client_id", sa.String),
        sa.Column("number", sa.String),
    )
    suffixes = sa.Table(
        "invoice_number_suffixes",
        meta,
        sa.Column("invoice_id", sa.String),
        sa.Column("suffix", sa.String),
        sa.Column("workspace_id", sa.String),
        sa.Column("client_id", sa.String),
    )
    batch = []
    for row in conn.execute(sa.select(invoices)).all():
        number = row.number.lower()
        batch += [
            {"invoice_id": row.id, "suffix": ending, "workspace_id": row.workspace_id, "client_id": row.client_id}
            for ending in {number[i:] for i in range(len(number))}
        ]
        if len(batch) >= 5000:
            conn.execute(suffixes.insert(), batch)
            batch = []
    if batch:
        conn.execute(suffixes.insert(), batch)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_invoices_workspace_client")
    op.drop_index("ix_invoices_open", table_name="invoices")
    op.drop_index("ix_invoices_listing", table_name="invoices")
    op.drop_index("ix_invoices_client_listing", table_name="invoices")
    disable_row_level_security(op, "invoice_number_suffixes")
    op.drop_index("ix_invoice_number_suffixes_search", table_name="invoice_number_suffixes")
    op.drop_table("invoice_number_suffixes")
    disable_row_level_security(op, "client_summaries")
    op.drop_table("client_summaries")
