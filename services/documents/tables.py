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
    sa.Column("request_id", sa.String(64), nullable=True),  # the request it was queued for: sending logs under it
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

# Outbound webhooks: a workspace's own systems subscribe to event types; each event becomes one
# delivery per matching subscription, retried until it is acknowledged or 24 hours have passed.
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False, index=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("description", sa.String(500), nullable=False, default=""),
    sa.Column("event_types", sa.JSON, nullable=False),  # exact types, "invoice.*" or "*"
    sa.Column("secret", sa.String(200), nullable=False),  # HMAC key: kept, since every delivery is signed with it
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "subscription_id", sa.String(36), sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact bytes signed and sent, the same on every attempt
    sa.Column("status", sa.String(20), nullable=False),  # pending, succeeded, failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("retry_until", UtcDateTime, nullable=False),  # 24 h after creation (or after a replay)
    sa.Column("claim_token", sa.String(36), nullable=True),  # the delivery run that holds it, if any
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    # a redelivered event never becomes a second delivery to the same subscription
    sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_subscription_event"),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_log", "subscription_id", "created_at"),
)

# One row per HTTP request made, for the delivery log.
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.String(36),
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
)

# Documents' own copy of each contact's email choices, from billing's
# contact.notification_preferences_changed events (the newest version wins). No row: the defaults.
notification_preferences = sa.Table(
    "notification_preferences",
    metadata,
    sa.Column("contact_id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("choices", sa.JSON, nullable=False),  # {category: true/false}
    sa.Column("email_locale", sa.String(20), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# The previous release's read model of a client's current renders, now kept in each process's memory
# (services/documents/renders.py). Written only by older processes while an upgrade rolls out (the change
# times by this release too, for them); the next release drops these three tables.
# Which of a client's documents an older process rendered from billing's answer, and when billing was
# asked. A render was served only while no event about the client had come since (client_changes),
# and only for a while (valid_until).
client_renders = sa.Table(
    "client_renders",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("client_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),  # invoice, quote, receipt
    sa.Column("document_id", sa.String(36), primary_key=True),
    sa.Column("cache_key", sa.String(64), nullable=False),  # the rendered file (services/documents/storage.py)
    sa.Column("filename", sa.Text, nullable=False),  # a receipt's names its payment reference
    # billing was asked for what was rendered after this (the gateway's clock, less a margin for skew)
    sa.Column("read_after", UtcDateTime, nullable=False),
    sa.Column("valid_until", UtcDateTime, nullable=False),  # a time limit, and the business's next midnight
)

# When billing or payments last announced anything about a client, by this service's clock: renders
# from data read before then are not served from the read model.
client_changes = sa.Table(
    "client_changes",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("client_id", sa.String(36), primary_key=True),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)

# The same for an announcement that names no client (the workspace's branding): every client's renders.
workspace_changes = sa.Table(
    "workspace_changes",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)
