"""The documents service's own tables."""
import sqlalchemy as sa

from chassis.db import UtcDateTime
from chassis.events import define_tables

metadata = sa.MetaData()
define_tables(metadata)

# Each email is stored before it is sent: a crash or SMTP outage delays it, never loses it, and the
# idempotency key makes a repeated request (duplicate event, retried RPC) a no-op.
emails = sa.Table(
    "emails",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("workspace_id", sa.String(36), nullable=True),
    sa.Column("client_id", sa.String(36), nullable=True, index=True),
    sa.Column("to_addr", sa.String(254), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("message", sa.Text, nullable=False),  # the whole RFC 822 message
    sa.Column("status", sa.String(20), nullable=False),  # queued, sent, failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime, nullable=True),
)

# Documents' own copy of each workspace's identity, from billing's events, for branding mail.
workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # the whole branding view from billing's workspace events (address, colours, logo, paper size...)
    sa.Column("branding", sa.JSON, nullable=False, default=dict),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
