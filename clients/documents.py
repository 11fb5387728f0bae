"""Documents' contract types: the events a workspace's webhooks can subscribe to, by the service that
publishes them (the admin API validates subscriptions against them)."""

from __future__ import annotations

# The public events a subscription may ask for, by the service that publishes them. The documents
# service consumes each of them; tests/unit/test_webhooks.py checks this list against every
# `uow.publish(...)` in billing and payments, so a new event type is not forgotten silently.
# Not offered: `workspace.created` (no subscription can exist before its workspace does).
EVENTS: dict[str, tuple[str, ...]] = {
    "billing": (
        "workspace.updated",
        "client.created",
        "client.updated",
        "contact.created",
        "contact.updated",
        "invoice.created",
        "invoice.updated",
        "invoice.sent",
        "invoice.viewed",
        "invoice.voided",
        "invoice.archived",
        "invoice.unarchived",
        "invoice.payment_applied",
        "invoice.paid",
        "invoice.overdue",
        "invoice.reminder",
        "quote.created",
        "quote.updated",
        "quote.sent",
        "quote.accepted",
        "quote.rejected",
        "quote.converted",
        "credit.issued",
        "credit.applied",
        "retainer.applied",
        "retainer.refunded",
        "payment.recorded",
        "refund.recorded",
        "payment.dispute_recorded",
        "comment.added",
        "booking.confirmed",
        "booking.cancelled",
        "review.submitted",
        "recurring.created",
        "recurring.updated",
        "recurring.paused",
    ),
    "payments": ("payment.attempted", "payment.succeeded", "payment.failed", "payment.refunded", "payment.disputed"),
}
EVENT_TYPES = frozenset(t for types in EVENTS.values() for t in types)
