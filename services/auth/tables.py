"""The auth service's own tables."""

import sqlalchemy as sa

from chassis.db import UtcDateTime
from chassis.events import define_tables

metadata = sa.MetaData()
define_tables(metadata)

# Auth's own copy of billing's contacts, kept current from billing's contact events.
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("email", sa.String(254), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("locale", sa.String(20), nullable=True),  # the language of its sign-in emails
    sa.Column("portal_access", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

link_tokens = sa.Table(
    "link_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sid_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), nullable=False, index=True),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)

# One row per link request, by "email:<addr>" and "ip:<addr>": every replica sees the same counts.
rate_hits = sa.Table(
    "rate_hits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index("ix_rate_hits_key_at", "key", "at"),
)

# Links in invoice and quote emails: open one document without signing in. Only the hash is kept.
document_links = sa.Table(
    "document_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("document_kind", sa.String(20), nullable=False),
    sa.Column("document_id", sa.String(36), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)
