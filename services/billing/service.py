"""Billing service entrypoints: each translates an RPC call or an event into one handler call in
one transaction. Every call but create_workspace and authenticate_api_key is scoped by workspace."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from nameko.rpc import rpc
from nameko.timer import timer

from chassis import metrics, settings
from chassis.errors import EXPECTED
from chassis.nameko_ext import Database, ServiceBase, consumes
from chassis.scope import CALLER, OWN, SYSTEM_WIDE, runs_in
from services.billing import handlers
from services.billing.handlers.common import record_activity
from services.billing.handlers.engagement import record_signal


def _admin(name: str, scope: str = CALLER):
    """An RPC method `name(workspace_id, *args)` running handlers.<name> in one committed transaction,
    in the caller's scope unless `scope` says otherwise."""
    handler = getattr(handlers, name)

    def method(self, *args, **kwargs):
        return self._tx(handler, *args, **kwargs)

    method.__name__ = name
    return runs_in(scope)(rpc(expected_exceptions=EXPECTED)(method))


log = logging.getLogger(__name__)


def _occurred(event: dict, now: datetime):
    """When the event happened (its envelope), not when it reached us: retries and a backlog must
    not make a failure look recent. Falls back to now for an envelope without a usable time."""
    try:
        at = datetime.fromisoformat(event["occurred_at"])
    except (KeyError, TypeError, ValueError):
        return now
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


class BillingService(ServiceBase):
    name = "billing"
    db = Database("billing", Path(__file__).parent / "migrations")

    # workspaces and keys
    create_workspace = _admin("create_workspace")
    get_workspace = _admin("get_workspace")
    update_workspace = _admin("update_workspace")
    create_api_key = _admin("create_api_key")
    list_api_keys = _admin("list_api_keys")
    revoke_api_key = _admin("revoke_api_key")
    authenticate_api_key = _admin("authenticate_api_key", SYSTEM_WIDE)  # which workspace a key belongs to
    # clients and contacts
    create_client = _admin("create_client")
    update_client = _admin("update_client")
    update_profile = _admin("update_profile")
    get_client = _admin("get_client")
    list_clients = _admin("list_clients")
    add_contact = _admin("add_contact")
    update_contact = _admin("update_contact")
    set_portal_access = _admin("set_portal_access")
    republish_contacts = _admin("republish_contacts")
    # invoices, quotes, credit notes, comments
    create_invoice = _admin("create_invoice")
    update_invoice = _admin("update_invoice")
    send_invoice = _admin("send_invoice")
    void_invoice = _admin("void_invoice")
    archive_invoice = _admin("archive_invoice")
    mark_invoice_viewed = _admin("mark_invoice_viewed")
    get_invoice = _admin("get_invoice")
    list_invoices = _admin("list_invoices")
    create_quote = _admin("create_quote")
    update_quote = _admin("update_quote")
    send_quote = _admin("send_quote")
    accept_quote = _admin("accept_quote")
    reject_quote = _admin("reject_quote")
    convert_quote = _admin("convert_quote")
    get_quote = _admin("get_quote")
    list_quotes = _admin("list_quotes")
    issue_credit_note = _admin("issue_credit_note")
    list_credit_notes = _admin("list_credit_notes")
    add_comment = _admin("add_comment")
    list_comments = _admin("list_comments")
    # ledger
    record_payment = _admin("record_payment")
    get_payment = _admin("get_payment")
    list_payments = _admin("list_payments")
    apply_credit = _admin("apply_credit")
    apply_retainer = _admin("apply_retainer")
    refund_retainer = _admin("refund_retainer")
    client_balances = _admin("client_balances")
    statement = _admin("statement")
    client_dashboard = _admin("client_dashboard")
    repair_client_summaries = _admin("repair_client_summaries")  # one workspace's, as its caller acts for it
    list_activity = _admin("list_activity")
    # collection signals
    client_engagement = _admin("client_engagement")
    list_engagement = _admin("list_engagement")
    plan_payment = _admin("plan_payment")
    list_refunds = _admin("list_refunds")
    # bookings and reviews
    booking_options = _admin("booking_options")
    book_slot = _admin("book_slot")
    list_bookings = _admin("list_bookings")
    cancel_booking = _admin("cancel_booking")
    add_review = _admin("add_review")
    list_reviews = _admin("list_reviews")
    # recurring
    create_recurring = _admin("create_recurring")
    update_recurring = _admin("update_recurring")
    get_recurring = _admin("get_recurring")
    list_recurring = _admin("list_recurring")

    SWEEP_JOBS = (
        (handlers.workspaces_due_recurring, handlers.run_due_recurring),
        (handlers.workspaces_with_open_invoices, handlers.run_reminders),
    )

    @runs_in(OWN)
    @timer(interval=float(settings.env("BILLING_SWEEP_INTERVAL", "60")))
    def sweep(self):
        """Recurring invoices and reminders; safe to run on every replica at once. Which workspaces
        have work is looked up across them all; the work is done in each workspace's own scope."""
        now = self.clock()
        for find, job in self.SWEEP_JOBS:
            try:  # one failing job must not stop the other
                with self.scope.system(), self.db.uow() as uow:
                    due = find(uow, now)
                for workspace_id in due:
                    with self.scope.workspace(workspace_id), self.db.uow() as uow:
                        job(uow, now, workspace_id)
                metrics.TIMER_JOBS.labels(self.name, job.__name__, metrics.OK).inc()
            except Exception:  # noqa: BLE001 - logged; the next sweep tries again
                metrics.TIMER_JOBS.labels(self.name, job.__name__, metrics.ERROR).inc()
                log.exception("sweep job failed", extra={"job": job.__name__})

    @consumes("auth", "auth.signed_in")
    def on_signed_in(self, uow, now, event):
        data = event["data"]
        record_activity(
            uow,
            now,
            event["workspace_id"],
            data["client_id"],
            "portal.signed_in",
            "Signed in to the portal",
            {"contact_id": data["contact_id"]},
        )
        record_signal(uow, now, event["workspace_id"], data["client_id"], "sign_in", _occurred(event, now))

    @consumes("documents", "document.downloaded")
    def on_document_downloaded(self, uow, now, event):
        data = event["data"]
        label = {
            "invoice": "Invoice",
            "quote": "Quote",
            "receipt": "Receipt",
            "statement": "Statement",
            "credit_note": "Credit note",
        }.get(data["kind"], "Document")
        record_activity(
            uow,
            now,
            event["workspace_id"],
            data["client_id"],
            "document.downloaded",
            f"{label} PDF downloaded{' (' + data['number'] + ')' if data.get('number') else ''}",
            {"kind": data["kind"], "document_id": data.get("document_id")},
        )

    @consumes("documents", "message.sent")
    def on_message_sent(self, uow, now, event):
        data = event["data"]
        record_activity(
            uow,
            now,
            event["workspace_id"],
            data["client_id"],
            "message.sent",
            f"Message sent from the portal: {data['subject']}",
            {"subject": data["subject"]},
        )

    @consumes("payments", "payment.succeeded")
    def on_payment_succeeded(self, uow, now, event):
        """Stripe payments reach the ledger here; the payment id makes a replay harmless. The card was
        charged already, so what the invoices no longer owe becomes the client's credit (allow_unapplied)
        instead of refusing the payment."""
        data = event["data"]
        known = handlers.payment_known(uow, data["payment_id"])  # a payment counts once as a signal too
        handlers.record_payment(
            uow,
            now,
            event["workspace_id"],
            {
                "payment_id": data["payment_id"],
                "allocations": data["allocations"],
                "amount": data["amount"],
                "currency": data["currency"],
                "client_id": data.get("client_id"),
                "method": "card",
                "reference": data.get("reference", ""),
                "source": "stripe",
                "received_at": data.get("received_at"),
            },
            allow_unapplied=True,
        )
        if data.get("client_id") and not known:
            record_signal(uow, now, event["workspace_id"], data["client_id"], "payment", _occurred(event, now))

    @consumes("payments", "payment.refunded")
    def on_payment_refunded(self, uow, now, event):
        data = event["data"]
        handlers.record_refund(
            uow,
            now,
            event["workspace_id"],
            {key: data.get(key) for key in ("refund_id", "payment_id", "amount", "currency", "client_id", "reason")},
        )

    @consumes("payments", "payment.disputed")
    def on_payment_disputed(self, uow, now, event):
        data = event["data"]
        handlers.record_dispute(
            uow,
            now,
            event["workspace_id"],
            {
                key: data.get(key)
                for key in ("dispute_id", "payment_id", "amount", "currency", "client_id", "reason", "status")
            },
        )

    @consumes("payments", "payment.attempted")
    def on_payment_attempted(self, uow, now, event):
        data = event["data"]
        record_activity(
            uow,
            now,
            event["workspace_id"],
            data["client_id"],
            "payment.attempted",
            "Payment attempted",
            {"payment_id": data.get("payment_id")},
        )
        record_signal(uow, now, event["workspace_id"], data["client_id"], "attempt", _occurred(event, now))

    @consumes("payments", "payment.failed")
    def on_payment_failed(self, uow, now, event):
        data = event["data"]
        record_activity(
            uow,
            now,
            event["workspace_id"],
            data["client_id"],
            "payment.failed",
            "Payment failed",
            {"payment_id": data.get("payment_id"), "reason": data.get("reason", "")},
        )
        record_signal(uow, now, event["workspace_id"], data["client_id"], "failure", _occurred(event, now))
