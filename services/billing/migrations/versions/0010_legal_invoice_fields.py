"""What invoice law asks documents to state: a VAT category per line, the date of supply or service
period and an exemption reason per invoice, and the client's country, VAT id and buyer reference

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (nullable or with a constant default): no table is rebuilt, on SQLite either
    op.add_column("line_items", sa.Column("tax_category", sa.String(2), nullable=True))
    op.add_column("invoices", sa.Column("supply_date", sa.Date(), nullable=True))
    op.add_column("invoices", sa.Column("service_period_start", sa.Date(), nullable=True))
    op.add_column("invoices", sa.Column("service_period_end", sa.Date(), nullable=True))
    op.add_column("invoices", sa.Column("tax_exemption_reason", sa.Text(), server_default="", nullable=False))
    op.add_column("clients", sa.Column("country", sa.String(2), server_default="", nullable=False))
    op.add_column("clients", sa.Column("vat_id", sa.String(20), server_default="", nullable=False))
    op.add_column("clients", sa.Column("buyer_reference", sa.String(100), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        for column in ("buyer_reference", "vat_id", "country"):
            batch.drop_column(column)
    with op.batch_alter_table("invoices") as batch:
        for column in ("tax_exemption_reason", "service_period_end", "service_period_start", "supply_date"):
            batch.drop_column(column)
    with op.batch_alter_table("line_items") as batch:
        batch.drop_column("tax_category")
