"""The billing service's own tables. Money columns are integer minor units beside a currency."""

import sqlalchemy as sa

from chassis.db import UtcDateTime
from chassis.events import define_tables

metadata = sa.MetaData()
define_tables(metadata)


def money(name: str, **kw) -> sa.Column:
    return sa.Column(name, sa.BigInteger, nullable=False, default=0, server_default="0", **kw)


# An invoice still open for payment (domain.OPEN_STATUSES), as the partial index's condition.
OPEN_INVOICE = "status IN ('partially_paid', 'sent', 'viewed')"
# Text compared byte by byte (SQLite's default), so that a prefix is a range on PostgreSQL too.
SUFFIX = sa.String(50).with_variant(sa.String(50, collation="C"), "postgresql")


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
    sa.Column("tax_id", sa.String(50), nullable=False, default="", server_default=""),
    sa.Column("logo_url", sa.Text, nullable=False, default="", server_default=""),  # a data: URI
    sa.Column("brand_color", sa.String(7), nullable=False, default="#1d4ed8", server_default="#1d4ed8"),
    sa.Column("accent_color", sa.String(7), nullable=False, default="#0f766e", server_default="#0f766e"),
    # portal, numbering, reminder and payment settings; validated by the domain, see handlers
    sa.Column("settings", sa.JSON, nullable=False, default=dict, server_default="{}"),
    sa.Column("version", sa.Integer, nullable=False, default=1, server_default="1"),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("prefix", sa.String(12), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # only the SHA-256 of the key
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)

# Gapless numbering: one row per workspace, document kind and period, incremented in the same
# transaction as the document it numbers.
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
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
    sa.Column("tax_id", sa.String(50), nullable=False, default="", server_default=""),
    sa.Column("country", sa.String(2), nullable=False, default="", server_default=""),  # ISO 3166 alpha-2
    sa.Column("vat_id", sa.String(20), nullable=False, default="", server_default=""),
    sa.Column("buyer_reference", sa.String(100), nullable=False, default="", server_default=""),  # Leitweg-ID
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
    sa.Column("locale", sa.String(20), nullable=True),
    sa.Column("is_primary", sa.Boolean, nullable=False, default=False),
    sa.Column("portal_access", sa.Boolean, nullable=False, default=False),
    sa.Column("version", sa.Integer, nullable=False, default=1),  # orders contact events for consumers
    sa.Column("role", sa.String(20), nullable=False),  # owner, payer, approver or viewer (chassis/scope.py)
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
    sa.Column("kind", sa.String(20), nullable=False, default="standard", server_default="standard"),  # or retainer
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("payment_terms_days", sa.Integer, nullable=True),
    money("subtotal"),
    money("discount_total"),
    money("tax_total"),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("amount_paid", sa.BigInteger, nullable=False, default=0),
    money("amount_credited"),  # credits and retainer applied
    sa.Column("notes", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("terms", sa.Text, nullable=False, default="", server_default=""),
    # what the law asks an invoice to state: when the goods or service were supplied, and why a
    # line carries no tax (for exempt lines)
    sa.Column("supply_date", sa.Date, nullable=True),
    sa.Column("service_period_start", sa.Date, nullable=True),
    sa.Column("service_period_end", sa.Date, nullable=True),
    sa.Column("tax_exemption_reason", sa.Text, nullable=False, default="", server_default=""),
    # the client's details as they were when the invoice was issued: later edits do not rewrite it
    sa.Column("client_snapshot", sa.JSON, nullable=True),
    sa.Column("quote_id", sa.String(36), nullable=True),
    sa.Column("recurring_id", sa.String(36), nullable=True),
    sa.Column("recurring_period", sa.Date, nullable=True),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    sa.Column("viewed_at", UtcDateTime, nullable=True),
    sa.Column("voided_at", UtcDateTime, nullable=True),
    sa.Column("archived_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("workspace_id", "number", name="uq_invoices_workspace_number"),
    # with two billing replicas, each recurring period still makes exactly one invoice
    sa.UniqueConstraint("recurring_id", "recurring_period", name="uq_invoices_recurring_period"),
    # the listings' order (newest first), for a page after any other by its key (list_invoices)
    sa.Index("ix_invoices_client_listing", "workspace_id", "client_id", "issue_date", "number"),
    sa.Index("ix_invoices_listing", "workspace_id", "issue_date", "number"),
    # open invoices by due date: overdue figures, the unpaid and overdue filters, reminders
    sa.Index(
        "ix_invoices_open",
        "workspace_id",
        "client_id",
        "due_date",
        postgresql_where=sa.text(OPEN_INVOICE),
        sqlite_where=sa.text(OPEN_INVOICE),
    ),
)

# A retainer invoice: the condition of the partial index below and of the client summary's retainer
# figure (handlers/summaries.py), which then reads a client's retainers without its other invoices.
# A literal, not a bound value: a bound value could not select the index on SQLite, nor in
# PostgreSQL's generic plans.
RETAINER_INVOICE = invoices.c.kind == sa.literal_column("'retainer'")
sa.Index(
    "ix_invoices_retainers",
    invoices.c.client_id,
    invoices.c.currency,
    postgresql_where=RETAINER_INVOICE,
    sqlite_where=RETAINER_INVOICE,
)

# Every ending of every invoice number, lower-cased: "part of a number" is a range of this index
# (suffix >= term and < term + U+10FFFF). A pattern (ILIKE) on invoices could use no index under
# row-level security, whose policies must run before any function that is not leakproof.
invoice_number_suffixes = sa.Table(
    "invoice_number_suffixes",
    metadata,
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), primary_key=True),
    sa.Column("suffix", SUFFIX, primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False),
    sa.Index("ix_invoice_number_suffixes_search", "workspace_id", "suffix"),
)

quotes = sa.Table(
    "quotes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("number", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("expiry_date", sa.Date, nullable=True),
    money("subtotal"),
    money("discount_total"),
    money("tax_total"),
    money("total"),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("terms", sa.Text, nullable=False, default=""),
    sa.Column("client_snapshot", sa.JSON, nullable=True),
    sa.Column("accepted_at", UtcDateTime, nullable=True),
    sa.Column("accepted_by", sa.String(254), nullable=True),
    sa.Column("accepted_ip", sa.String(64), nullable=True),
    sa.Column("signature_name", sa.String(200), nullable=True),
    sa.Column("rejected_at", UtcDateTime, nullable=True),
    sa.Column("rejected_by", sa.String(254), nullable=True),
    sa.Column("rejection_reason", sa.Text, nullable=True),
    sa.Column("invoice_id", sa.String(36), nullable=True),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    sa.Column("archived_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Revisions: the row is always the newest version; earlier ones are frozen in quote_versions.
    sa.Column("version", sa.Integer, nullable=False, default=1, server_default="1"),
    sa.Column("changes_requested_at", UtcDateTime, nullable=True),  # since the newest version was issued
    sa.Column("accepted_version", sa.Integer, nullable=True),
    sa.Column("rejected_version", sa.Integer, nullable=True),
    sa.UniqueConstraint("workspace_id", "number", name="uq_quotes_workspace_number"),
)

# An earlier version of a quote, read-only: what the client was shown (number, dates, texts, lines and
# totals as issued), kept when a revision replaced it.
quote_versions = sa.Table(
    "quote_versions",
    metadata,
    sa.Column("quote_id", sa.String(36), sa.ForeignKey("quotes.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("number", sa.String(50), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("expiry_date", sa.Date, nullable=True),
    money("subtotal"),
    money("discount_total"),
    money("tax_total"),
    money("total"),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("terms", sa.Text, nullable=False, default=""),
    sa.Column("lines", sa.JSON, nullable=False),  # as load_lines shows them
    sa.Column("tax_breakdown", sa.JSON, nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=True),
    sa.Column("changes_requested_at", UtcDateTime, nullable=True),
    sa.Column("superseded_at", UtcDateTime, nullable=False),
)

# Lines of invoices, quotes and credit notes alike: (document_kind, document_id).
line_items = sa.Table(
    "line_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("document_kind", sa.String(20), nullable=False),
    sa.Column("document_id", sa.String(36), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("quantity", sa.Numeric(12, 4), nullable=False),
    sa.Column("unit_price", sa.BigInteger, nullable=False),
    sa.Column("tax_rate", sa.Numeric(7, 4), nullable=False),
    sa.Column("discount_percent", sa.Numeric(7, 4), nullable=False),
    sa.Column("subtotal", sa.BigInteger, nullable=False),
    sa.Column("tax", sa.BigInteger, nullable=False),
    sa.Column("line_total", sa.BigInteger, nullable=False),
    sa.Column("tax_category", sa.String(2), nullable=True),  # NULL on older lines: the rate's default
    sa.Index("ix_line_items_document", "document_kind", "document_id"),
)

credit_notes = sa.Table(
    "credit_notes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("number", sa.String(50), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    money("subtotal"),
    money("tax_total"),
    money("total"),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("invoice_id", sa.String(36), nullable=True),  # the invoice it relates to, if any
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("workspace_id", "number", name="uq_credit_notes_workspace_number"),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the payment's own id: applying it twice is a no-op
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False, default="invoice", server_default="invoice"),  # or retainer
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("method", sa.String(30), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False, default="", server_default=""),
    # Stripe's PaymentIntent id of a payment through Stripe, for looking it up there; the client sees
    # `reference`, the card or bank account it was paid with
    sa.Column("stripe_reference", sa.String(64), nullable=False, default="", server_default=""),
    sa.Column("source", sa.String(20), nullable=False, default="offline", server_default="offline"),
    sa.Column("received_at", UtcDateTime, nullable=False),
    # money charged beyond what the invoices still owed (they were paid meanwhile): the client's credit
    money("unapplied"),
    sa.Column("dispute_status", sa.String(30), nullable=True),  # as the card network reports it
    # a client's latest payment (its summary, on every payment) without reading all of them
    sa.Index("ix_payments_client_latest", "workspace_id", "client_id", "received_at", "id"),
)

# A payment with money left unapplied (the client's credit), as RETAINER_INVOICE: the credit figure
# reads these, not every payment the client made.
UNAPPLIED_PAYMENT = payments.c.unapplied != sa.literal_column("0")
sa.Index(
    "ix_payments_unapplied",
    payments.c.client_id,
    payments.c.currency,
    postgresql_where=UNAPPLIED_PAYMENT,
    sqlite_where=UNAPPLIED_PAYMENT,
)

payment_allocations = sa.Table(
    "payment_allocations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("payment_id", sa.String(64), sa.ForeignKey("payments.id"), nullable=False, index=True),
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
)

# Card refunds of payments; the id is the refund's own (e.g. Stripe's): recording it twice is a no-op.
refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("payment_id", sa.String(64), sa.ForeignKey("payments.id"), nullable=False, index=True),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("policy", sa.String(10), nullable=False),  # reopen | credit, the workspace's setting at the time
    sa.Column("reason", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# What each card refund took back from each invoice the payment paid (a refund of a payment that paid
# several invoices reverses the newest first), so an invoice shows the payment and its refund apart.
refund_reversals = sa.Table(
    "refund_reversals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("refund_id", sa.String(64), sa.ForeignKey("refunds.id"), nullable=False, index=True),
    sa.Column("payment_id", sa.String(64), sa.ForeignKey("payments.id"), nullable=False),
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Credit notes and retainer balances applied to invoices, and retainer money refunded.
credit_applications = sa.Table(
    "credit_applications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    # credit | retainer | refund (a card refund turned into credit on the invoice: not spendable credit)
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False, default="applied"),  # applied | refunded
    sa.Column("reference", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

recurring_invoices = sa.Table(
    "recurring_invoices",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("frequency", sa.String(10), nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("end_date", sa.Date, nullable=True),
    sa.Column("next_run", sa.Date, nullable=True, index=True),  # None once the schedule has ended
    sa.Column("runs", sa.Integer, nullable=False, default=0),
    sa.Column("payment_terms_days", sa.Integer, nullable=False),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("autopay", sa.Boolean, nullable=False, default=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

comments = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("document_kind", sa.String(20), nullable=False),
    sa.Column("document_id", sa.String(36), nullable=False),
    sa.Column("author_kind", sa.String(20), nullable=False),  # client | business
    sa.Column("author_name", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # a step the portal took in the thread (an invoice dispute raised or resolved), for a page to word
    # in its reader's language: {"kind": ..., and its figures}; `body` is the English. Null: a comment.
    sa.Column("notice", sa.JSON, nullable=True),
    sa.Index("ix_comments_document", "document_kind", "document_id"),
)

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(36), nullable=False, index=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("summary", sa.String(300), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
)

reminders_sent = sa.Table(
    "reminders_sent",
    metadata,
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("sent_at", UtcDateTime, nullable=False),
)

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False, index=True),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("contact_id", sa.String(36), nullable=False),
    sa.Column("author_name", sa.String(200), nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_reviews_rating"),
)

bookings = sa.Table(
    "bookings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("contact_id", sa.String(36), nullable=False),
    sa.Column("link_id", sa.String(50), nullable=False),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # confirmed | cancelled
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("cancelled_at", UtcDateTime, nullable=True),
)

# One row per 5-minute cell a confirmed booking holds: the primary key makes double booking
# impossible, whatever the interleaving of concurrent requests (see availability.py).
booking_cells = sa.Table(
    "booking_cells",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("starts_at", UtcDateTime, primary_key=True),
    sa.Column("booking_id", sa.String(36), sa.ForeignKey("bookings.id"), nullable=False, index=True),
)

# Collection signals per client, kept up to date by the events that carry them (see engagement.py):
# counters and latest times, so the admin API reads one row instead of scanning the timeline.
client_engagement = sa.Table(
    "client_engagement",
    metadata,
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), primary_key=True),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), primary_key=True),
    sa.Column("portal_views", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("last_viewed_at", UtcDateTime, nullable=True),
    sa.Column("last_signed_in_at", UtcDateTime, nullable=True),
    sa.Column("payment_attempts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("failed_payments", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("last_failed_at", UtcDateTime, nullable=True),
    sa.Column("previous_failed_at", UtcDateTime, nullable=True),
    sa.Column("successful_payments", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("last_paid_at", UtcDateTime, nullable=True),
    sa.Column("reminders_sent", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("last_reminder_at", UtcDateTime, nullable=True),
    sa.Column("unanswered_reminder_since", UtcDateTime, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# What the portal's dashboard shows of a client's money, one row per client in the client's currency,
# recomputed from the ledger in the same transaction as every change to it (handlers/summaries.py):
# read, never summed on read. Overdue figures change with the date, not with the ledger: not here.
client_summaries = sa.Table(
    "client_summaries",
    metadata,
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), primary_key=True),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    money("outstanding"),
    money("credit_available"),  # below zero when refunded card money was already spent as credit
    money("retainer_available"),
    money("processing"),  # paid but not settled yet (bank debits on their way): none are taken yet
    sa.Column("last_payment_amount", sa.BigInteger, nullable=True),
    sa.Column("last_payment_currency", sa.String(3), nullable=True),
    sa.Column("last_payment_received_at", UtcDateTime, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# The code printed on each invoice, quote, credit note and receipt (clients/verification.py), issued with
# the document. The code is the key: a lookup by it, across every workspace, is one index probe.
verification_codes = sa.Table(
    "verification_codes",
    metadata,
    sa.Column("code", sa.String(28), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("document_kind", sa.String(20), nullable=False),  # invoice | quote | credit_note | receipt
    sa.Column("document_id", sa.String(64), nullable=False),  # a receipt's is its payment's id
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("document_kind", "document_id", name="uq_verification_codes_document"),
)

# A client's dispute of an owed invoice, as a whole or some of its lines (`lines`: their positions;
# empty for the whole invoice), and how the business resolved it. At most one is open per invoice
# (a partial unique index); while it is, the invoice gets no reminders and no automatic payment.
invoice_disputes = sa.Table(
    "invoice_disputes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # open | adjusted | rejected
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("contact_id", sa.String(36), nullable=True),
    sa.Column("raised_by", sa.String(254), nullable=False),
    sa.Column("raised_at", UtcDateTime, nullable=False),
    sa.Column("resolution_message", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("credit_note_id", sa.String(36), nullable=True),
    sa.Column("credit_amount", sa.BigInteger, nullable=True),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.Index("ix_invoice_disputes_invoice", "invoice_id"),
    sa.Index("ix_invoice_disputes_listing", "workspace_id", "status", "raised_at"),
    sa.Index(
        "uq_invoice_disputes_open",
        "invoice_id",
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
        sqlite_where=sa.text("status = 'open'"),
    ),
)

# What each contact wants emailed (services/billing/notifications.py). No row: the defaults, which is
# what every contact had before the choice existed. Documents keeps a copy from billing's events.
notification_preferences = sa.Table(
    "notification_preferences",
    metadata,
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("invoices", sa.Boolean, nullable=False, default=True),
    sa.Column("quotes", sa.Boolean, nullable=False, default=True),
    sa.Column("reminders", sa.Boolean, nullable=False, default=True),
    sa.Column("receipts", sa.Boolean, nullable=False, default=True),
    sa.Column("monthly_statement", sa.Boolean, nullable=False, default=False),
    sa.Column("comment_replies", sa.Boolean, nullable=False, default=True),
    sa.Column("bookings", sa.Boolean, nullable=False, default=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),  # orders the copies consumers keep
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_notification_preferences_statement", "workspace_id", "monthly_statement"),
)

# One row per contact and month whose statement was announced: the primary key makes the monthly send
# happen once, whatever the retries, restarts or replicas racing for it.
monthly_statements = sa.Table(
    "monthly_statements",
    metadata,
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),  # YYYY-MM, in the workspace's calendar
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Which contact started a card payment from the portal, noted by the gateway before the card is
# charged; the payment's id is the payments service's attempt id. Its receipt is then the payer's own.
payment_payers = sa.Table(
    "payment_payers",
    metadata,
    sa.Column("payment_id", sa.String(36), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id"), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Debits in flight: a bank debit is "processing" from payments' payment.processing until its
# payment.succeeded or payment.failed, which may come days later; one row per try and invoice it pays.
# A failed try's row stays (settled_at set), so a late or repeated payment.processing never brings it back.
processing_payments = sa.Table(
    "processing_payments",
    metadata,
    sa.Column("payment_id", sa.String(36), primary_key=True),
    sa.Column("try_number", sa.Integer, primary_key=True),  # payments' try: a failed one may be tried again
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("client_id", sa.String(36), sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("method", sa.String(20), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("settled_at", UtcDateTime, nullable=True),
    sa.Index("ix_processing_payments_client", "workspace_id", "client_id", "settled_at"),
    sa.Index("ix_processing_payments_invoice", "invoice_id", "settled_at"),
)
