"""Documents' contract types: the events a workspace's webhooks can subscribe to, by the service that
publishes them (the admin API validates subscriptions against them); and what the gateway's grants
for a client's current PDF render say (services/documents/renders.py)."""

from __future__ import annotations

from clients.base import ServiceClient

# A grant the gateway signs for a client's current render says it is one (a file reference never does),
# and names one of these kinds: a statement is for a period the client picks, so it is always rendered.
CURRENT_PDF_GRANT = "client_pdf"
CURRENT_PDF_KINDS = ("invoice", "quote", "credit_note", "receipt")

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
        "contact.notification_preferences_changed",
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
        "invoice.disputed",
        "invoice.dispute_resolved",
        "quote.created",
        "quote.updated",
        "quote.sent",
        "quote.accepted",
        "quote.rejected",
        "quote.converted",
        "quote.changes_requested",
        "quote.revised",
        "credit.issued",
        "credit.applied",
        "retainer.applied",
        "statement.monthly",
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
    "payments": (
        "payment.attempted",
        "payment.processing",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "payment.disputed",
        "payment.debit_scheduled",
        "mandate.accepted",
    ),
    # without the device's IP and user agent, unless the workspace opts in (services/documents/webhooks.py)
    "auth": ("session.started", "session.ended", "password.set", "password.reset"),
}
EVENT_TYPES = frozenset(t for types in EVENTS.values() for t in types)


class DocumentsClient(ServiceClient):
    """documents"s RPCs, with their real signatures (tests/unit/test_clients.py keeps them equal to the
    service"s). `DocumentsClient(call)` where `call(service, method, *args, **kwargs)` makes the call: the
    gateway"s RpcPool.call, portalctl"s and the tests" proxies."""

    service = "documents"

    def create_webhook(self, workspace_id: str, data: dict, idempotency_key: str | None = None) -> dict:
        return self._call("documents", "create_webhook", workspace_id, data, idempotency_key=idempotency_key)

    def delete_webhook(self, workspace_id: str, subscription_id: str, idempotency_key: str | None = None) -> None:
        return self._call("documents", "delete_webhook", workspace_id, subscription_id, idempotency_key=idempotency_key)

    def forward_invoice(
        self,
        workspace_id: str,
        client_id: str,
        invoice_id: str,
        to: str,
        forwarded_by: str,
        note: str = "",
        idempotency_key: str = "",
    ) -> str:
        return self._call(
            "documents",
            "forward_invoice",
            workspace_id,
            client_id,
            invoice_id,
            to,
            forwarded_by,
            note=note,
            idempotency_key=idempotency_key,
        )

    def get_webhook(self, workspace_id: str, subscription_id: str) -> dict:
        return self._call("documents", "get_webhook", workspace_id, subscription_id)

    def list_emails(self, workspace_id: str, client_id: str | None = None, limit: int = 100) -> list[dict]:
        return self._call("documents", "list_emails", workspace_id, client_id=client_id, limit=limit)

    def list_webhook_deliveries(self, workspace_id: str, subscription_id: str, limit=50) -> list[dict]:
        return self._call("documents", "list_webhook_deliveries", workspace_id, subscription_id, limit=limit)

    def list_webhooks(self, workspace_id: str) -> list[dict]:
        return self._call("documents", "list_webhooks", workspace_id)

    def recent_emails(self, limit: int = 50) -> list[dict]:
        return self._call("documents", "recent_emails", limit=limit)

    def render_document(
        self,
        kind: str,
        workspace_id: str,
        data: dict,
        locale: str | None = None,
        timezone: str | None = None,
        purpose: str = "download",
        by_reference: bool = False,
        for_client: str | None = None,
        read_at: str | None = None,
    ) -> dict:
        return self._call(
            "documents",
            "render_document",
            kind,
            workspace_id,
            data,
            locale=locale,
            timezone=timezone,
            purpose=purpose,
            by_reference=by_reference,
            for_client=for_client,
            read_at=read_at,
        )

    def einvoice(self, kind: str, workspace_id: str, data: dict) -> dict:
        return self._call("documents", "einvoice", kind, workspace_id, data)

    def replay_webhook_delivery(self, workspace_id: str, delivery_id: str, idempotency_key: str | None = None) -> dict:
        return self._call(
            "documents", "replay_webhook_delivery", workspace_id, delivery_id, idempotency_key=idempotency_key
        )

    def send_business_message(
        self,
        workspace_id: str,
        client_id: str,
        client_name: str,
        from_name: str,
        from_email: str,
        subject: str,
        message: str,
        idempotency_key: str,
    ) -> str:
        return self._call(
            "documents",
            "send_business_message",
            workspace_id,
            client_id,
            client_name,
            from_name,
            from_email,
            subject,
            message,
            idempotency_key,
        )

    def send_password_reset_link(
        self, *, to, name, workspace_id, client_id, url, expires_at, idempotency_key, locale=None
    ) -> str:
        return self._call(
            "documents",
            "send_password_reset_link",
            to=to,
            name=name,
            workspace_id=workspace_id,
            client_id=client_id,
            url=url,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
            locale=locale,
        )

    def send_magic_link(
        self,
        *,
        to,
        name,
        workspace_id,
        client_id,
        url,
        expires_at,
        idempotency_key,
        locale=None,
        device=None,
        report_url=None,
    ) -> str:
        return self._call(
            "documents",
            "send_magic_link",
            to=to,
            name=name,
            workspace_id=workspace_id,
            client_id=client_id,
            url=url,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
            locale=locale,
            device=device,
            report_url=report_url,
        )

    def send_new_device_notice(
        self, *, to, name, workspace_id, client_id, contact_id, device, signed_in_at, idempotency_key, locale=None
    ) -> str:
        return self._call(
            "documents",
            "send_new_device_notice",
            to=to,
            name=name,
            workspace_id=workspace_id,
            client_id=client_id,
            contact_id=contact_id,
            device=device,
            signed_in_at=signed_in_at,
            idempotency_key=idempotency_key,
            locale=locale,
        )

    def send_statement(
        self, workspace_id: str, client_id: str, recipient: dict, statement: dict, idempotency_key: str
    ) -> str:
        return self._call("documents", "send_statement", workspace_id, client_id, recipient, statement, idempotency_key)

    def update_webhook(
        self, workspace_id: str, subscription_id: str, data: dict, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "documents", "update_webhook", workspace_id, subscription_id, data, idempotency_key=idempotency_key
        )
