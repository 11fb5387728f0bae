"""verification codes: the code printed on every invoice, quote, credit note and receipt, by which
anyone holding the paper can check it against billing's record at /verify/<code>; every document
that exists already gets one

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 05:00:00
"""

import base64
import secrets

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Each document table and the kind its codes name; a receipt is a payment.
DOCUMENTS = (("invoices", "invoice"), ("quotes", "quote"), ("credit_notes", "credit_note"), ("payments", "receipt"))


def _new_code() -> str:
    """As clients/verification.py makes them (frozen here): 28 base32 characters, 140 random bits."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")[:28]


def upgrade() -> None:
    op.create_table(
        "verification_codes",
        sa.Column("code", sa.String(length=28), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("document_kind", sa.String(length=20), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("code"),
        sa.UniqueConstraint("document_kind", "document_id", name="uq_verification_codes_document"),
    )
    # A client's codes are its own, like its documents; only the allow-listed lookup by code (the
    # system scope) reads across workspaces.
    enable_row_level_security(op, "verification_codes")
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    meta = sa.MetaData()
    codes = sa.Table(
        "verification_codes",
        meta,
        sa.Column("code", sa.String),
        sa.Column("workspace_id", sa.String),
        sa.Column("client_id", sa.String),
        sa.Column("document_kind", sa.String),
        sa.Column("document_id", sa.String),
        sa.Column("created_at", chassis.db.UtcDateTime(timezone=True)),
    )
    for table_name, kind in DOCUMENTS:
        moment = "received_at" if table_name == "payments" else "created_at"
        table = sa.Table(
            table_name,
            meta,
            sa.Column("id", sa.String),
            sa.Column("workspace_id", sa.String),
            sa.Column("client_id", sa.String),
            sa.Column(moment, chassis.db.UtcDateTime(timezone=True)),
        )
        batch = []
        for row in conn.execute(sa.select(table)).all():
            batch.append(
                {
                    "code": _new_code(),
                    "workspace_id": row.workspace_id,
                    "client_id": row.client_id,
                    "document_kind": kind,
                    "document_id": row.id,
                    "created_at": getattr(row, moment),
                }
            )
            if len(batch) >= 5000:
                conn.execute(codes.insert(), batch)
                batch = []
        if batch:
            conn.execute(codes.insert(), batch)


def downgrade() -> None:
    disable_row_level_security(op, "verification_codes")
    op.drop_table("verification_codes")
