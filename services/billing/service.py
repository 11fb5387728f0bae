"""Billing service entrypoints: each translates an RPC call or an event into one handler call in
one transaction. Every call but create_workspace, authenticate_api_key and verify_document (a printed
document's code) is scoped by workspace."""

from __future__ import annotations

import logging
from pathlib import Path

from nameko.rpc import rpc
from nameko.timer import timer

from chassis import metrics, nameko_patches, settings
from chassis.errors import EXPECTED
from chassis.nameko_ext import Database, ServiceBase, consumes
from chassis.scope import CALLER, OWN, SYSTEM_WIDE, runs_in
from services.billing.handlers import (
    activity,
    balances,
    bookings,
    card_disputes,
    clients,
    credit_notes,
    dashboard,
    disputes,
    documents,
    engagement,
    invoice_listing,
    notifications,
    payment_plans,
    payments,
    processing,
    refunds,
    schedules,
    statements,
    summaries,
    verification,
    workspaces,
)
from services.billing.handlers.common import occurred, record_activity
from services.billing.handlers.engagement import record_signal

# `nameko run` loads this module to start the service: nameko is patched before it builds the container.
nameko_patches.apply()


log = logging.getLogger(__name__)


def _payer(event: dict) -> str:
    """Whose payments are handled together: a client's; a payment naming none, alone."""
    data = event.get("data")
    return str((data.get("client_id") if isinstance(data, dict) else None) or event.get("id"))


class BillingService(ServiceBase):
    name = "billing"
    db = Database("billing", Path(__file__).parent / "migrations")

    # workspaces and keys
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def create_workspace(self, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(workspaces.create_workspace, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_workspace(self, workspace_id: str) -> dict:
        return self._tx(workspaces.get_workspace, workspace_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_workspace(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(workspaces.update_workspace, workspace_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def create_api_key(self, workspace_id: str, name: str, *, idempotency_key: str | None = None) -> dict:
        return self._tx(workspaces.create_api_key, workspace_id, name, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_api_keys(self, workspace_id: str) -> list[dict]:
        return self._tx(workspaces.list_api_keys, workspace_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def revoke_api_key(self, workspace_id: str, key_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._tx(workspaces.revoke_api_key, workspace_id, key_id, idempotency_key=idempotency_key)

    @runs_in(SYSTEM_WIDE)  # which workspace a key belongs to
    @rpc(expected_exceptions=EXPECTED)
    def authenticate_api_key(self, key: str) -> str:
        return self._tx(workspaces.authenticate_api_key, key)

    @runs_in(SYSTEM_WIDE)  # a printed document's code: whoever holds the paper, in whichever workspace
    @rpc(expected_exceptions=EXPECTED)
    def verify_document(self, code: str) -> dict:
        return self._tx(verification.verify_document, code)

    # clients and contacts
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def create_client(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(clients.create_client, workspace_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_client(
        self,
        workspace_id: str,
        client_id: str,
        data: dict,
        from_portal: bool = False,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            clients.update_client, workspace_id, client_id, data, from_portal, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_profile(
        self, workspace_id: str, client_id: str, contact_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            clients.update_profile, workspace_id, client_id, contact_id, data, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_client(self, workspace_id: str, client_id: str) -> dict:
        return self._tx(clients.get_client, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_clients(self, workspace_id: str, limit: int = 100, offset: int = 0) -> list[dict]:
        return self._tx(clients.list_clients, workspace_id, limit, offset)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def add_contact(self, workspace_id: str, client_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(clients.add_contact, workspace_id, client_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_contact(
        self, workspace_id: str, contact_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(clients.update_contact, workspace_id, contact_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def set_portal_access(
        self, workspace_id: str, contact_id: str, enabled: bool, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(clients.set_portal_access, workspace_id, contact_id, enabled, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def republish_contacts(self, workspace_id: str, *, idempotency_key: str | None = None) -> int:
        return self._tx(clients.republish_contacts, workspace_id, idempotency_key=idempotency_key)

    # the organisation's contacts, managed by its owners from the portal (roles: chassis/scope.py)
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_team(self, workspace_id: str, client_id: str, actor_id: str) -> list[dict]:
        return self._tx(clients.list_team, workspace_id, client_id, actor_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def invite_contact(
        self, workspace_id: str, client_id: str, actor_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            clients.invite_contact, workspace_id, client_id, actor_id, data, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def change_contact_role(
        self,
        workspace_id: str,
        client_id: str,
        actor_id: str,
        contact_id: str,
        role: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            clients.change_contact_role,
            workspace_id,
            client_id,
            actor_id,
            contact_id,
            role,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def remove_contact(
        self, workspace_id: str, client_id: str, actor_id: str, contact_id: str, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            clients.remove_contact, workspace_id, client_id, actor_id, contact_id, idempotency_key=idempotency_key
        )

    # notification preferences (services/billing/notifications.py)
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_notification_preferences(self, workspace_id: str, contact_id: str, client_id: str | None = None) -> dict:
        return self._tx(notifications.get_notification_preferences, workspace_id, contact_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_notification_preferences(self, workspace_id: str, client_id: str) -> list[dict]:
        return self._tx(notifications.list_notification_preferences, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_notification_preferences(
        self,
        workspace_id: str,
        contact_id: str,
        data: dict,
        client_id: str | None = None,
        via: str = "portal",
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            notifications.update_notification_preferences,
            workspace_id,
            contact_id,
            data,
            client_id,
            via,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def note_payment_payer(self, workspace_id: str, client_id: str, payment_id: str, contact_id: str) -> dict:
        return self._tx(notifications.note_payment_payer, workspace_id, client_id, payment_id, contact_id)

    # invoices, quotes, credit notes, comments
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def create_invoice(
        self, workspace_id: str, data: dict, recurring: dict | None = None, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(documents.create_invoice, workspace_id, data, recurring, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_invoice(
        self, workspace_id: str, invoice_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(documents.update_invoice, workspace_id, invoice_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def send_invoice(
        self, workspace_id: str, invoice_id: str, autopay: bool = False, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(documents.send_invoice, workspace_id, invoice_id, autopay, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def void_invoice(self, workspace_id: str, invoice_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._tx(documents.void_invoice, workspace_id, invoice_id, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def archive_invoice(
        self, workspace_id: str, invoice_id: str, archived: bool = True, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(documents.archive_invoice, workspace_id, invoice_id, archived, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def mark_invoice_viewed(
        self, workspace_id: str, client_id: str, invoice_id: str, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            documents.mark_invoice_viewed, workspace_id, client_id, invoice_id, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def view_invoice(
        self, workspace_id: str, client_id: str, invoice_id: str, *, idempotency_key: str | None = None
    ) -> dict:
        """The portal's invoice page in one call: {"invoice", "comments"}, the view recorded."""
        return self._tx(documents.view_invoice, workspace_id, client_id, invoice_id, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_invoice(self, workspace_id: str, invoice_id: str, client_id: str | None = None) -> dict:
        return self._tx(documents.get_invoice, workspace_id, invoice_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_invoices(self, workspace_id: str, filters: dict | None = None) -> dict:
        return self._tx(invoice_listing.list_invoices, workspace_id, filters)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def document_numbers(self, workspace_id: str, client_id: str, invoice_ids: list[str], quote_ids: list[str]) -> dict:
        """The numbers of some of the client's invoices and quotes, and whether the portal shows each."""
        return self._tx(documents.document_numbers, workspace_id, client_id, invoice_ids, quote_ids)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def create_quote(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(documents.create_quote, workspace_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_quote(self, workspace_id: str, quote_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(documents.update_quote, workspace_id, quote_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def send_quote(self, workspace_id: str, quote_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._tx(documents.send_quote, workspace_id, quote_id, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def accept_quote(
        self,
        workspace_id: str,
        quote_id: str,
        by: str,
        ip: str = "",
        signature_name: str = "",
        client_id: str | None = None,
        version: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            documents.accept_quote,
            workspace_id,
            quote_id,
            by,
            ip,
            signature_name,
            client_id,
            version,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def reject_quote(
        self,
        workspace_id: str,
        quote_id: str,
        by: str,
        reason: str = "",
        client_id: str | None = None,
        version: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            documents.reject_quote,
            workspace_id,
            quote_id,
            by,
            reason,
            client_id,
            version,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def request_quote_changes(
        self,
        workspace_id: str,
        client_id: str,
        contact_id: str,
        quote_id: str,
        message: str,
        version: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            documents.request_quote_changes,
            workspace_id,
            client_id,
            contact_id,
            quote_id,
            message,
            version,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def revise_quote(self, workspace_id: str, quote_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(documents.revise_quote, workspace_id, quote_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_quote_versions(self, workspace_id: str, quote_id: str, client_id: str | None = None) -> dict:
        return self._tx(documents.list_quote_versions, workspace_id, quote_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def convert_quote(self, workspace_id: str, quote_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._tx(documents.convert_quote, workspace_id, quote_id, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_quote(self, workspace_id: str, quote_id: str, client_id: str | None = None) -> dict:
        return self._tx(documents.get_quote, workspace_id, quote_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def view_quote(self, workspace_id: str, client_id: str, quote_id: str) -> dict:
        """The portal's quote page in one call: {"quote", "comments"}."""
        return self._tx(documents.view_quote, workspace_id, client_id, quote_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_quotes(self, workspace_id: str, filters: dict | None = None) -> dict:
        return self._tx(documents.list_quotes, workspace_id, filters)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def issue_credit_note(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(documents.issue_credit_note, workspace_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_credit_notes(self, workspace_id: str, client_id: str | None = None) -> list[dict]:
        return self._tx(documents.list_credit_notes, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_credit_note(self, workspace_id: str, credit_note_id: str, client_id: str | None = None) -> dict:
        """One credit note with its lines; given a client (the portal), only one of that client's."""
        return self._tx(credit_notes.get_credit_note, workspace_id, credit_note_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_client_credit_notes(self, workspace_id: str, client_id: str, filters: dict | None = None) -> dict:
        """The portal's credit notes: one client's, paged, with its credit not yet applied."""
        return self._tx(credit_notes.list_client_credit_notes, workspace_id, client_id, filters)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def add_comment(
        self,
        workspace_id: str,
        document_kind: str,
        document_id: str,
        author_kind: str,
        author_name: str,
        body: str,
        client_id: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            documents.add_comment,
            workspace_id,
            document_kind,
            document_id,
            author_kind,
            author_name,
            body,
            client_id,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_comments(
        self, workspace_id: str, document_kind: str, document_id: str, client_id: str | None = None
    ) -> list[dict]:
        return self._tx(documents.list_comments, workspace_id, document_kind, document_id, client_id)

    # invoice disputes (a client's objection to an invoice; card chargebacks are record_dispute's)
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def raise_invoice_dispute(
        self,
        workspace_id: str,
        client_id: str,
        contact_id: str,
        author_name: str,
        invoice_id: str,
        reason: str,
        lines: list | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            disputes.raise_invoice_dispute,
            workspace_id,
            client_id,
            contact_id,
            author_name,
            invoice_id,
            reason,
            lines,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def resolve_invoice_dispute(
        self, workspace_id: str, dispute_id: str, outcome: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            disputes.resolve_invoice_dispute, workspace_id, dispute_id, outcome, data, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_invoice_dispute(self, workspace_id: str, dispute_id: str, client_id: str | None = None) -> dict:
        return self._tx(disputes.get_invoice_dispute, workspace_id, dispute_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_invoice_disputes(self, workspace_id: str, filters: dict | None = None) -> dict:
        return self._tx(disputes.list_invoice_disputes, workspace_id, filters)

    # money: payments, credits and retainers, refunds, statements, the dashboard and activity
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def record_payment(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(payments.record_payment, workspace_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_payment(self, workspace_id: str, payment_id: str, client_id: str | None = None) -> dict:
        return self._tx(payments.get_payment, workspace_id, payment_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_payments(
        self, workspace_id: str, client_id: str | None = None, kind: str | None = None, sort: str = "-date"
    ) -> list[dict]:
        return self._tx(payments.list_payments, workspace_id, client_id, kind, sort)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def apply_credit(
        self, workspace_id: str, invoice_id: str, amount: int, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(balances.apply_credit, workspace_id, invoice_id, amount, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def apply_retainer(
        self, workspace_id: str, invoice_id: str, amount: int, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(balances.apply_retainer, workspace_id, invoice_id, amount, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def refund_retainer(
        self, workspace_id: str, client_id: str, amount: int, reference: str = "", *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            balances.refund_retainer, workspace_id, client_id, amount, reference, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def client_balances(self, workspace_id: str, client_id: str) -> dict:
        return self._tx(balances.client_balances, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def statement(self, workspace_id: str, client_id: str, start, end, currency: str | None = None) -> dict:
        return self._tx(statements.statement, workspace_id, client_id, start, end, currency)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def client_dashboard(self, workspace_id: str, client_id: str, fields: str = "all") -> dict:
        return self._tx(dashboard.client_dashboard, workspace_id, client_id, fields)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_processing_payments(self, workspace_id: str, client_id: str) -> list[dict]:
        """The client's bank debits still with the bank (payments' payment.processing, not yet settled)."""
        return self._tx(processing.list_processing, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def repair_client_summaries(self, workspace_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._tx(summaries.repair_client_summaries, workspace_id, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_activity(self, workspace_id: str, client_id: str, limit: int = 50) -> list[dict]:
        return self._tx(activity.list_activity, workspace_id, client_id, limit)

    # collection signals
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def client_engagement(self, workspace_id: str, client_id: str) -> dict:
        return self._tx(engagement.client_engagement, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_engagement(self, workspace_id: str, risk: str | None = None, limit: int = 100, offset: int = 0) -> dict:
        return self._tx(engagement.list_engagement, workspace_id, risk, limit, offset)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def plan_payment(
        self, workspace_id: str, client_id: str, request: dict | None, commit: bool = False, key: str | None = None
    ) -> dict:
        return self._tx(payment_plans.plan_payment, workspace_id, client_id, request, commit, key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_refunds(
        self, workspace_id: str, payment_id: str | None = None, client_id: str | None = None
    ) -> list[dict]:
        return self._tx(refunds.list_refunds, workspace_id, payment_id, client_id)

    # bookings and reviews
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def booking_options(self, workspace_id: str, link_id: str | None = None) -> dict:
        return self._tx(bookings.booking_options, workspace_id, link_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def book_slot(
        self,
        workspace_id: str,
        client_id: str,
        contact_id: str,
        link_id: str,
        start: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            bookings.book_slot, workspace_id, client_id, contact_id, link_id, start, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_bookings(self, workspace_id: str, client_id: str | None = None, upcoming: bool = True) -> list[dict]:
        return self._tx(bookings.list_bookings, workspace_id, client_id, upcoming)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def cancel_booking(
        self, workspace_id: str, booking_id: str, client_id: str | None = None, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(bookings.cancel_booking, workspace_id, booking_id, client_id, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def add_review(
        self,
        workspace_id: str,
        client_id: str,
        contact_id: str,
        author_name: str,
        rating,
        message: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._tx(
            bookings.add_review,
            workspace_id,
            client_id,
            contact_id,
            author_name,
            rating,
            message,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_reviews(self, workspace_id: str, client_id: str | None = None, limit=50, offset=0) -> dict:
        return self._tx(bookings.list_reviews, workspace_id, client_id, limit, offset)

    # recurring
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def create_recurring(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._tx(schedules.create_recurring, workspace_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_recurring(
        self, workspace_id: str, recurring_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(schedules.update_recurring, workspace_id, recurring_id, data, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_recurring(self, workspace_id: str, recurring_id: str) -> dict:
        return self._tx(schedules.get_recurring, workspace_id, recurring_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_recurring(self, workspace_id: str, client_id: str | None = None) -> list[dict]:
        return self._tx(schedules.list_recurring, workspace_id, client_id)

    SWEEP_JOBS = (
        (schedules.workspaces_due_recurring, schedules.run_due_recurring),
        (schedules.workspaces_with_open_invoices, schedules.run_reminders),
        (notifications.workspaces_with_statements_wanted, notifications.run_monthly_statements),
    )

    @runs_in(OWN)
    @timer(interval=float(settings.env("BILLING_SWEEP_INTERVAL", "60")))
    def sweep(self):
        """Recurring invoices, reminders and monthly statements; safe to run on every replica at once. Which workspaces
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
        record_signal(uow, now, event["workspace_id"], data["client_id"], "sign_in", occurred(event, now))

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

    @consumes("payments", "payment.succeeded", together_by=_payer, read_together=payments.read_stripe_payments_together)
    def on_payment_succeeded(self, uow, now, event):
        """A burst of one client's payments is handled together: one transaction, one read of what its
        payments lock and check, one refresh of its summary, one commit; other clients' run beside it."""
        payments.record_stripe_payment(uow, now, event)

    @consumes("payments", "payment.processing")
    def on_payment_processing(self, uow, now, event):
        """A bank debit is with the bank: its invoices show it as processing until it settles."""
        data = event["data"]
        if processing.payment_processing(uow, now, event["workspace_id"], data):
            documents.invoices_changed(uow, event["workspace_id"], _allocated_invoices(data))
            record_activity(
                uow,
                now,
                event["workspace_id"],
                data["client_id"],
                "payment.processing",
                "Payment processing",
                {"payment_id": data.get("payment_id")},
            )

    @consumes("payments", "payment.refunded")
    def on_payment_refunded(self, uow, now, event):
        data = event["data"]
        refunds.record_refund(
            uow,
            now,
            event["workspace_id"],
            {key: data.get(key) for key in ("refund_id", "payment_id", "amount", "currency", "client_id", "reason")},
        )

    @consumes("payments", "payment.disputed")
    def on_payment_disputed(self, uow, now, event):
        data = event["data"]
        card_disputes.record_dispute(
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
        record_signal(uow, now, event["workspace_id"], data["client_id"], "attempt", occurred(event, now))

    @consumes("payments", "payment.failed")
    def on_payment_failed(self, uow, now, event):
        data = event["data"]
        processing.payment_failed(uow, now, event["workspace_id"], data)  # the invoice is open again
        documents.invoices_changed(uow, event["workspace_id"], _allocated_invoices(data))
        record_activity(
            uow,
            now,
            event["workspace_id"],
            data["client_id"],
            "payment.failed",
            "Payment failed",
            {"payment_id": data.get("payment_id"), "reason": data.get("reason", "")},
        )
        record_signal(uow, now, event["workspace_id"], data["client_id"], "failure", occurred(event, now))


def _allocated_invoices(data: dict) -> list[str]:
    return [a["invoice_id"] for a in data.get("allocations") or [] if isinstance(a, dict) and a.get("invoice_id")]
