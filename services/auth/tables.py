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
    sa.Column("role", sa.String(20), nullable=False, default="viewer"),  # billing's, written into credentials
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
    sa.Column("ip", sa.String(45), nullable=True),  # who asked for the link, named in its email
    sa.Column("user_agent", sa.String(500), nullable=True),
    sa.Column("report_hash", sa.String(64), nullable=True),  # the email's "this wasn't me" link
    sa.Index("ix_link_tokens_contact_id", "contact_id"),
    sa.Index("ix_link_tokens_report_hash", "report_hash", unique=True),
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
    # the device the session was begun on, for the contact's sessions page
    sa.Column("ip", sa.String(45), nullable=True),
    sa.Column("user_agent", sa.String(500), nullable=True),
    sa.Column("browser", sa.String(100), nullable=True),
    sa.Column("os", sa.String(100), nullable=True),
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
    sa.Column("contact_id", sa.String(36), nullable=True, index=True),  # the recipient it was emailed to
)

# A contact's passkeys (WebAuthn credentials): only the public key is kept, with the signature
# counter the authenticator last reported (a counter that does not grow means a cloned key).
passkeys = sa.Table(
    "passkeys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), nullable=False, index=True),
    sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),  # base64url
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("sign_count", sa.BigInteger, nullable=False),
    sa.Column("transports", sa.String(200), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_used_at", UtcDateTime, nullable=True),
)

# Challenges for registering, signing in and stepping up: each answers once, within minutes.
passkey_challenges = sa.Table(
    "passkey_challenges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("challenge", sa.String(100), nullable=False, unique=True),  # base64url
    sa.Column("purpose", sa.String(20), nullable=False),  # register | sign_in | step_up
    sa.Column("workspace_id", sa.String(36), nullable=True),
    sa.Column("client_id", sa.String(36), nullable=True),
    sa.Column("contact_id", sa.String(36), nullable=True),
    sa.Column("session_id", sa.String(36), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
)

# Which workspaces let their contacts sign in with a password (billing's setting `passwords_enabled`,
# copied from its workspace events). No row: off.
workspace_passwords = sa.Table(
    "workspace_passwords",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# A contact's password, as an argon2id hash (the hash carries its salt and parameters).
passwords = sa.Table(
    "passwords",
    metadata,
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("hash", sa.String(300), nullable=False),
    sa.Column("set_at", UtcDateTime, nullable=False),
)

# Links that "Forgot your password?" emails: single-use and expiring, like sign-in links. Only the hash is kept.
password_reset_tokens = sa.Table(
    "password_reset_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), nullable=False, index=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
)
