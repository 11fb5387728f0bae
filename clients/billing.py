"""Billing's contract types that other parts of the portal validate against (the admin API)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clients.base import ServiceClient


class BookingLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=50, pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1, max_length=100)
    duration_minutes: int = Field(ge=5, le=480, multiple_of=5)


# How many ids of each kind (invoices, quotes) one `document_numbers` call takes.
DOCUMENT_NUMBERS_MAX = 500


class BillingClient(ServiceClient):
    """billing"s RPCs, with their real signatures (tests/unit/test_clients.py keeps them equal to the
    service"s). `BillingClient(call)` where `call(service, method, *args, **kwargs)` makes the call: the
    gateway"s RpcPool.call, portalctl"s and the tests" proxies."""

    service = "billing"

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
        return self._call(
            "billing",
            "accept_quote",
            workspace_id,
            quote_id,
            by,
            ip=ip,
            signature_name=signature_name,
            client_id=client_id,
            version=version,
            idempotency_key=idempotency_key,
        )

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
        return self._call(
            "billing",
            "add_comment",
            workspace_id,
            document_kind,
            document_id,
            author_kind,
            author_name,
            body,
            client_id=client_id,
            idempotency_key=idempotency_key,
        )

    def add_contact(self, workspace_id: str, client_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "add_contact", workspace_id, client_id, data, idempotency_key=idempotency_key)

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
        return self._call(
            "billing",
            "add_review",
            workspace_id,
            client_id,
            contact_id,
            author_name,
            rating,
            message,
            idempotency_key=idempotency_key,
        )

    def apply_credit(
        self, workspace_id: str, invoice_id: str, amount: int, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call("billing", "apply_credit", workspace_id, invoice_id, amount, idempotency_key=idempotency_key)

    def apply_retainer(
        self, workspace_id: str, invoice_id: str, amount: int, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "apply_retainer", workspace_id, invoice_id, amount, idempotency_key=idempotency_key
        )

    def archive_invoice(
        self, workspace_id: str, invoice_id: str, archived: bool = True, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "archive_invoice", workspace_id, invoice_id, archived=archived, idempotency_key=idempotency_key
        )

    def authenticate_api_key(self, key: str) -> str:
        return self._call("billing", "authenticate_api_key", key)

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
        return self._call(
            "billing", "book_slot", workspace_id, client_id, contact_id, link_id, start, idempotency_key=idempotency_key
        )

    def booking_options(self, workspace_id: str, link_id: str | None = None) -> dict:
        return self._call("billing", "booking_options", workspace_id, link_id=link_id)

    def cancel_booking(
        self, workspace_id: str, booking_id: str, client_id: str | None = None, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "cancel_booking", workspace_id, booking_id, client_id=client_id, idempotency_key=idempotency_key
        )

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
        return self._call(
            "billing",
            "change_contact_role",
            workspace_id,
            client_id,
            actor_id,
            contact_id,
            role,
            idempotency_key=idempotency_key,
        )

    def client_balances(self, workspace_id: str, client_id: str) -> dict:
        return self._call("billing", "client_balances", workspace_id, client_id)

    def client_dashboard(self, workspace_id: str, client_id: str, fields: str = "all") -> dict:
        # sent only when asked for, so that a billing older than its callers answers the default
        more = {} if fields == "all" else {"fields": fields}
        return self._call("billing", "client_dashboard", workspace_id, client_id, **more)

    def client_engagement(self, workspace_id: str, client_id: str) -> dict:
        return self._call("billing", "client_engagement", workspace_id, client_id)

    def convert_quote(self, workspace_id: str, quote_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "convert_quote", workspace_id, quote_id, idempotency_key=idempotency_key)

    def create_api_key(self, workspace_id: str, name: str, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "create_api_key", workspace_id, name, idempotency_key=idempotency_key)

    def create_client(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "create_client", workspace_id, data, idempotency_key=idempotency_key)

    def create_invoice(
        self, workspace_id: str, data: dict, recurring: dict | None = None, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "create_invoice", workspace_id, data, recurring=recurring, idempotency_key=idempotency_key
        )

    def create_quote(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "create_quote", workspace_id, data, idempotency_key=idempotency_key)

    def create_recurring(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "create_recurring", workspace_id, data, idempotency_key=idempotency_key)

    def create_workspace(self, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "create_workspace", data, idempotency_key=idempotency_key)

    def document_numbers(self, workspace_id: str, client_id: str, invoice_ids: list[str], quote_ids: list[str]) -> dict:
        return self._call("billing", "document_numbers", workspace_id, client_id, invoice_ids, quote_ids)

    def get_client(self, workspace_id: str, client_id: str) -> dict:
        return self._call("billing", "get_client", workspace_id, client_id)

    def get_credit_note(self, workspace_id: str, credit_note_id: str, client_id: str | None = None) -> dict:
        return self._call("billing", "get_credit_note", workspace_id, credit_note_id, client_id=client_id)

    def get_invoice(self, workspace_id: str, invoice_id: str, client_id: str | None = None) -> dict:
        return self._call("billing", "get_invoice", workspace_id, invoice_id, client_id=client_id)

    def get_invoice_dispute(self, workspace_id: str, dispute_id: str, client_id: str | None = None) -> dict:
        return self._call("billing", "get_invoice_dispute", workspace_id, dispute_id, client_id=client_id)

    def get_notification_preferences(self, workspace_id: str, contact_id: str, client_id: str | None = None) -> dict:
        return self._call("billing", "get_notification_preferences", workspace_id, contact_id, client_id=client_id)

    def get_payment(self, workspace_id: str, payment_id: str, client_id: str | None = None) -> dict:
        return self._call("billing", "get_payment", workspace_id, payment_id, client_id=client_id)

    def get_quote(self, workspace_id: str, quote_id: str, client_id: str | None = None) -> dict:
        return self._call("billing", "get_quote", workspace_id, quote_id, client_id=client_id)

    def get_recurring(self, workspace_id: str, recurring_id: str) -> dict:
        return self._call("billing", "get_recurring", workspace_id, recurring_id)

    def get_workspace(self, workspace_id: str) -> dict:
        return self._call("billing", "get_workspace", workspace_id)

    def invite_contact(
        self, workspace_id: str, client_id: str, actor_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "invite_contact", workspace_id, client_id, actor_id, data, idempotency_key=idempotency_key
        )

    def issue_credit_note(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "issue_credit_note", workspace_id, data, idempotency_key=idempotency_key)

    def list_activity(self, workspace_id: str, client_id: str, limit: int = 50) -> list[dict]:
        return self._call("billing", "list_activity", workspace_id, client_id, limit=limit)

    def list_api_keys(self, workspace_id: str) -> list[dict]:
        return self._call("billing", "list_api_keys", workspace_id)

    def list_bookings(self, workspace_id: str, client_id: str | None = None, upcoming: bool = True) -> list[dict]:
        return self._call("billing", "list_bookings", workspace_id, client_id=client_id, upcoming=upcoming)

    def list_clients(self, workspace_id: str, limit: int = 100, offset: int = 0) -> list[dict]:
        return self._call("billing", "list_clients", workspace_id, limit=limit, offset=offset)

    def list_client_credit_notes(self, workspace_id: str, client_id: str, filters: dict | None = None) -> dict:
        return self._call("billing", "list_client_credit_notes", workspace_id, client_id, filters=filters)

    def list_comments(
        self, workspace_id: str, document_kind: str, document_id: str, client_id: str | None = None
    ) -> list[dict]:
        return self._call("billing", "list_comments", workspace_id, document_kind, document_id, client_id=client_id)

    def list_credit_notes(self, workspace_id: str, client_id: str | None = None) -> list[dict]:
        return self._call("billing", "list_credit_notes", workspace_id, client_id=client_id)

    def list_engagement(self, workspace_id: str, risk: str | None = None, limit: int = 100, offset: int = 0) -> dict:
        return self._call("billing", "list_engagement", workspace_id, risk=risk, limit=limit, offset=offset)

    def list_invoice_disputes(self, workspace_id: str, filters: dict | None = None) -> dict:
        return self._call("billing", "list_invoice_disputes", workspace_id, filters=filters)

    def list_invoices(self, workspace_id: str, filters: dict | None = None) -> dict:
        return self._call("billing", "list_invoices", workspace_id, filters=filters)

    def list_notification_preferences(self, workspace_id: str, client_id: str) -> list[dict]:
        return self._call("billing", "list_notification_preferences", workspace_id, client_id)

    def list_processing_payments(self, workspace_id: str, client_id: str) -> list[dict]:
        return self._call("billing", "list_processing_payments", workspace_id, client_id)

    def list_payments(
        self, workspace_id: str, client_id: str | None = None, kind: str | None = None, sort: str = "-date"
    ) -> list[dict]:
        return self._call("billing", "list_payments", workspace_id, client_id=client_id, kind=kind, sort=sort)

    def list_quote_versions(self, workspace_id: str, quote_id: str, client_id: str | None = None) -> dict:
        return self._call("billing", "list_quote_versions", workspace_id, quote_id, client_id=client_id)

    def list_quotes(self, workspace_id: str, filters: dict | None = None) -> dict:
        return self._call("billing", "list_quotes", workspace_id, filters=filters)

    def list_recurring(self, workspace_id: str, client_id: str | None = None) -> list[dict]:
        return self._call("billing", "list_recurring", workspace_id, client_id=client_id)

    def list_refunds(
        self, workspace_id: str, payment_id: str | None = None, client_id: str | None = None
    ) -> list[dict]:
        return self._call("billing", "list_refunds", workspace_id, payment_id=payment_id, client_id=client_id)

    def list_reviews(self, workspace_id: str, client_id: str | None = None, limit=50, offset=0) -> dict:
        return self._call("billing", "list_reviews", workspace_id, client_id=client_id, limit=limit, offset=offset)

    def list_team(self, workspace_id: str, client_id: str, actor_id: str) -> list[dict]:
        return self._call("billing", "list_team", workspace_id, client_id, actor_id)

    def mark_invoice_viewed(
        self, workspace_id: str, client_id: str, invoice_id: str, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "mark_invoice_viewed", workspace_id, client_id, invoice_id, idempotency_key=idempotency_key
        )

    def note_payment_payer(self, workspace_id: str, client_id: str, payment_id: str, contact_id: str) -> dict:
        return self._call("billing", "note_payment_payer", workspace_id, client_id, payment_id, contact_id)

    def plan_payment(
        self, workspace_id: str, client_id: str, request: dict | None, commit: bool = False, key: str | None = None
    ) -> dict:
        return self._call("billing", "plan_payment", workspace_id, client_id, request, commit=commit, key=key)

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
        return self._call(
            "billing",
            "raise_invoice_dispute",
            workspace_id,
            client_id,
            contact_id,
            author_name,
            invoice_id,
            reason,
            lines=lines,
            idempotency_key=idempotency_key,
        )

    def record_payment(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "record_payment", workspace_id, data, idempotency_key=idempotency_key)

    def refund_retainer(
        self, workspace_id: str, client_id: str, amount: int, reference: str = "", *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing",
            "refund_retainer",
            workspace_id,
            client_id,
            amount,
            reference=reference,
            idempotency_key=idempotency_key,
        )

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
        return self._call(
            "billing",
            "reject_quote",
            workspace_id,
            quote_id,
            by,
            reason=reason,
            client_id=client_id,
            version=version,
            idempotency_key=idempotency_key,
        )

    def resolve_invoice_dispute(
        self, workspace_id: str, dispute_id: str, outcome: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing",
            "resolve_invoice_dispute",
            workspace_id,
            dispute_id,
            outcome,
            data,
            idempotency_key=idempotency_key,
        )

    def remove_contact(
        self, workspace_id: str, client_id: str, actor_id: str, contact_id: str, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "remove_contact", workspace_id, client_id, actor_id, contact_id, idempotency_key=idempotency_key
        )

    def repair_client_summaries(self, workspace_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "repair_client_summaries", workspace_id, idempotency_key=idempotency_key)

    def republish_contacts(self, workspace_id: str, *, idempotency_key: str | None = None) -> int:
        return self._call("billing", "republish_contacts", workspace_id, idempotency_key=idempotency_key)

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
        return self._call(
            "billing",
            "request_quote_changes",
            workspace_id,
            client_id,
            contact_id,
            quote_id,
            message,
            version=version,
            idempotency_key=idempotency_key,
        )

    def revise_quote(self, workspace_id: str, quote_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "revise_quote", workspace_id, quote_id, data, idempotency_key=idempotency_key)

    def revoke_api_key(self, workspace_id: str, key_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "revoke_api_key", workspace_id, key_id, idempotency_key=idempotency_key)

    def send_invoice(
        self, workspace_id: str, invoice_id: str, autopay: bool = False, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "send_invoice", workspace_id, invoice_id, autopay=autopay, idempotency_key=idempotency_key
        )

    def send_quote(self, workspace_id: str, quote_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "send_quote", workspace_id, quote_id, idempotency_key=idempotency_key)

    def set_portal_access(
        self, workspace_id: str, contact_id: str, enabled: bool, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "set_portal_access", workspace_id, contact_id, enabled, idempotency_key=idempotency_key
        )

    def statement(self, workspace_id: str, client_id: str, start, end, currency: str | None = None) -> dict:
        return self._call("billing", "statement", workspace_id, client_id, start, end, currency=currency)

    def update_client(
        self,
        workspace_id: str,
        client_id: str,
        data: dict,
        from_portal: bool = False,
        *,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._call(
            "billing",
            "update_client",
            workspace_id,
            client_id,
            data,
            from_portal=from_portal,
            idempotency_key=idempotency_key,
        )

    def update_contact(
        self, workspace_id: str, contact_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call("billing", "update_contact", workspace_id, contact_id, data, idempotency_key=idempotency_key)

    def update_invoice(
        self, workspace_id: str, invoice_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call("billing", "update_invoice", workspace_id, invoice_id, data, idempotency_key=idempotency_key)

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
        return self._call(
            "billing",
            "update_notification_preferences",
            workspace_id,
            contact_id,
            data,
            client_id=client_id,
            via=via,
            idempotency_key=idempotency_key,
        )

    def update_profile(
        self, workspace_id: str, client_id: str, contact_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "update_profile", workspace_id, client_id, contact_id, data, idempotency_key=idempotency_key
        )

    def update_quote(self, workspace_id: str, quote_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "update_quote", workspace_id, quote_id, data, idempotency_key=idempotency_key)

    def update_recurring(
        self, workspace_id: str, recurring_id: str, data: dict, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "update_recurring", workspace_id, recurring_id, data, idempotency_key=idempotency_key
        )

    def update_workspace(self, workspace_id: str, data: dict, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "update_workspace", workspace_id, data, idempotency_key=idempotency_key)

    def verify_document(self, code: str) -> dict:
        return self._call("billing", "verify_document", code)

    def view_invoice(
        self, workspace_id: str, client_id: str, invoice_id: str, *, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "billing", "view_invoice", workspace_id, client_id, invoice_id, idempotency_key=idempotency_key
        )

    def view_quote(self, workspace_id: str, client_id: str, quote_id: str) -> dict:
        return self._call("billing", "view_quote", workspace_id, client_id, quote_id)

    def void_invoice(self, workspace_id: str, invoice_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._call("billing", "void_invoice", workspace_id, invoice_id, idempotency_key=idempotency_key)
