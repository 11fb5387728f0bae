"""bank accounts (SEPA Direct Debit) beside cards, their mandates, and debits collected after notice

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:30:00

A payment method is a card or a bank account (`type`); a bank account keeps the holder, the IBAN's
country, bank code and last four digits (never the whole IBAN: Stripe holds it) and its Stripe mandate.
`mandates` is the record of each acceptance (who, when, from which address and browser, which text),
client data with row-level security like the other client tables (0004). An automatic debit waits
for `collect_at`, the end of the pre-notification's lead time. Existing rows are cards.
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_methods") as batch:
        batch.add_column(sa.Column("type", sa.String(length=20), nullable=False, server_default="card"))
        batch.add_column(sa.Column("holder_name", sa.String(length=200), nullable=False, server_default=""))
        batch.add_column(sa.Column("country", sa.String(length=2), nullable=False, server_default=""))
        batch.add_column(sa.Column("bank_code", sa.String(length=20), nullable=False, server_default=""))
        batch.add_column(sa.Column("mandate_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("collect_at", chassis.db.UtcDateTime(timezone=True), nullable=True))
    op.create_table(
        "mandates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("payment_method_id", sa.String(length=64), nullable=False),
        sa.Column("stripe_mandate_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=True),
        sa.Column("holder_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("iban_last4", sa.String(length=4), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("accepted_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=False),
        sa.Column("text_version", sa.String(length=40), nullable=False),
        sa.Column("cancelled_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_mandate_id", name="uq_mandates_stripe"),
    )
    op.create_index("ix_mandates_client", "mandates", ["workspace_id", "client_id"])
    op.create_index("ix_mandates_payment_method", "mandates", ["payment_method_id"])
    enable_row_level_security(op, "mandates")


def downgrade() -> None:
    disable_row_level_security(op, "mandates")
    op.drop_index("ix_mandates_payment_method", table_name="mandates")
    op.drop_index("ix_mandates_client", table_name="mandates")
    op.drop_table("mandates")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("collect_at")
    with op.batch_alter_table("payment_methods") as batch:
        for column in ("mandate_id", "bank_code", "country", "holder_name", "type"):
            batch.drop_column(column)
