"""The billing service's own tables. Money columns are integer minor units beside a currency."""
import sqlalchemy as sa

from chassis.db import UtcDateTime
from chassis.events import define_tables

metadata = sa.MetaData()
define_tables(metadata)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("phone", sa.String(50), nullable=False, default=""),
    sa.Column("address", sa.Text, nullable=False, default=""),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("locale", sa.String(20), nullable=False),
    sa.Column("timezone", sa.String(60), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("address", sa.Text, nullable=False, default=""),
    sa.Column("phone", sa.String(50), nullable=False, default=""),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("locale", sa.String(20), nullable=False),
    sa.Column("timezone", sa.String(60), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("phone", sa.String(50), nullable=False, default=""),
    sa.Column("is_primary", sa.Boolean, nullable=False, default=False),
    sa.Column("portal_access", sa.Boolean, nullable=False, default=False),
    sa.Column("version", sa.Integer, nullable=False, default=1),  # orders contact events for consumers
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("workspace_id", "email", name="uq_contacts_workspace_email"),
)

invoices = sa.Table(
    "invoices",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("number", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("amount_paid", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("workspace_id", "number", name="uq_invoices_workspace_number"),
)

invoice_lines = sa.Table(
    "invoice_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("quantity", sa.Numeric(12, 4), nullable=False),
    sa.Column("unit_price", sa.BigInteger, nullable=False),
    sa.Column("line_total", sa.BigInteger, nullable=False),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("method", sa.String(30), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
)
