"""The payments service's own tables: Stripe customers and saved cards and bank accounts per client,
SEPA mandates, payment attempts (one per "Proceed to payment"), card set-ups, the Stripe events
received, refunds and disputes."""

import sqlalchemy as sa

from chassis.db import UtcDateTime
from chassis.events import define_tables

metadata = sa.MetaData()
define_tables(metadata)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("client_id", sa.String(36), primary_key=True),
    sa.Column("stripe_customer_id", sa.String(64), nullable=False, unique=True),
    sa.Column("stripe_account", sa.String(64), nullable=True),  # Stripe Connect account, if the workspace has one
    sa.Column("default_payment_method", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

payment_methods = sa.Table(
    "payment_methods",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # Stripe's pm_ id
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("brand", sa.String(30), nullable=False, default=""),
    sa.Column("last4", sa.String(4), nullable=False, default=""),
    sa.Column("exp_month", sa.Integer, nullable=False, default=0),
    sa.Column("exp_year", sa.Integer, nullable=False, default=0),
    sa.Column("saved", sa.Boolean, nullable=False, default=False),  # shown and reusable, or used once
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("removed_at", UtcDateTime, nullable=True),
    # "card" or "sepa_debit"; a bank account keeps its holder and where the IBAN is, never the IBAN
    sa.Column("type", sa.String(20), nullable=False, default="card", server_default="card"),
    sa.Column("holder_name", sa.String(200), nullable=False, default="", server_default=""),
    sa.Column("country", sa.String(2), nullable=False, default="", server_default=""),
    sa.Column("bank_code", sa.String(20), nullable=False, default="", server_default=""),
    sa.Column("mandate_id", sa.String(64), nullable=True),  # Stripe's mandate a debit is collected under
    sa.Index("ix_payment_methods_client", "workspace_id", "client_id"),
)

mandates = sa.Table(
    "mandates",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("payment_method_id", sa.String(64), nullable=False),
    sa.Column("stripe_mandate_id", sa.String(64), nullable=False),
    sa.Column("reference", sa.String(64), nullable=False),  # the mandate reference the bank shows
    sa.Column("status", sa.String(20), nullable=False),  # active | cancelled
    sa.Column("contact_id", sa.String(36), nullable=True),  # who accepted it in the portal
    sa.Column("holder_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("iban_last4", sa.String(4), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("accepted_at", UtcDateTime, nullable=False),
    sa.Column("ip_address", sa.String(64), nullable=False),
    sa.Column("user_agent", sa.String(500), nullable=False),
    sa.Column("text_version", sa.String(40), nullable=False),  # which mandate text was shown
    sa.Column("cancelled_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("stripe_mandate_id", name="uq_mandates_stripe"),
    sa.Index("ix_mandates_client", "workspace_id", "client_id"),
    sa.Index("ix_mandates_payment_method", "payment_method_id"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),  # also the payment's id in billing's ledger
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("request_key", sa.String(100), nullable=False),  # the form's key: a double submit finds this row
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),  # what the card is charged, minor units
    sa.Column("allocations", sa.JSON, nullable=False),
    sa.Column("applied", sa.JSON, nullable=False),  # credit and retainer applied before charging
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("tries", sa.Integer, nullable=False, default=0),  # failed tries so far; part of the Stripe key
    sa.Column("off_session", sa.Boolean, nullable=False, default=False),  # autopay
    sa.Column("stripe_account", sa.String(64), nullable=True),
    sa.Column("payment_intent_id", sa.String(64), nullable=True, unique=True),
    sa.Column("client_secret", sa.String(200), nullable=True),
    sa.Column("payment_method_id", sa.String(64), nullable=True),
    sa.Column("failure_message", sa.Text, nullable=False, default=""),
    sa.Column("refunded", sa.BigInteger, nullable=False, default=0),
    sa.Column("dispute_status", sa.String(30), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("succeeded_at", UtcDateTime, nullable=True),
    sa.Column("collect_at", UtcDateTime, nullable=True),  # an automatic debit: not before its pre-notice ends
    sa.UniqueConstraint("workspace_id", "client_id", "request_key", name="uq_attempts_request"),
    sa.Index("ix_attempts_client", "workspace_id", "client_id"),
    sa.Index("ix_attempts_status", "status"),
)

card_setups = sa.Table(
    "card_setups",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Column("attempt_id", sa.String(36), nullable=True),  # set when the card is entered to pay an attempt
    sa.Column("setup_intent_id", sa.String(64), nullable=False, unique=True),
    sa.Column("client_secret", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

stripe_events = sa.Table(
    "stripe_events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # Stripe's evt_ id: a redelivery is a no-op
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("processed_at", UtcDateTime, nullable=True),
    sa.Column("outcome", sa.String(200), nullable=False, default=""),
    # A failing event is retried with growing delays, then parked in dead_letters (see handlers/webhook_events.py).
    sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),  # the webhook's: processing later logs under it
    sa.Index("ix_stripe_events_pending", "processed_at", "received_at"),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("attempt_id", sa.String(36), sa.ForeignKey("attempts.id"), nullable=False, index=True),
    sa.Column("request_key", sa.String(100), nullable=False),
    sa.Column("stripe_refund_id", sa.String(64), nullable=True, unique=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False, default=""),
    sa.Column("status", sa.String(20), nullable=False),  # pending | succeeded | failed
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("attempt_id", "request_key", name="uq_refunds_request"),
)

disputes = sa.Table(
    "disputes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # Stripe's dp_ id
    sa.Column("attempt_id", sa.String(36), sa.ForeignKey("attempts.id"), nullable=False, index=True),
    sa.Column("workspace_id", sa.String(36), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("reason", sa.String(100), nullable=False, default=""),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
