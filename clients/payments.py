"""Payments' RPCs, typed."""

from __future__ import annotations

from clients.base import ServiceClient


class PaymentsClient(ServiceClient):
    """payments"s RPCs, with their real signatures (tests/unit/test_clients.py keeps them equal to the
    service"s). `PaymentsClient(call)` where `call(service, method, *args, **kwargs)` makes the call: the
    gateway"s RpcPool.call, portalctl"s and the tests" proxies."""

    service = "payments"

    def add_bank_account(
        self,
        workspace_id: str,
        client_id: str,
        details: dict,
        acceptance: dict,
        attempt_id: str | None = None,
        save: bool = True,
        idempotency_key: str | None = None,
    ) -> dict:
        return self._call(
            "payments",
            "add_bank_account",
            workspace_id,
            client_id,
            details,
            acceptance,
            attempt_id=attempt_id,
            save=save,
            idempotency_key=idempotency_key,
        )

    def card_setup(
        self, workspace_id: str, client_id: str, attempt_id: str | None = None, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "payments", "card_setup", workspace_id, client_id, attempt_id=attempt_id, idempotency_key=idempotency_key
        )

    def confirm_attempt(
        self,
        workspace_id: str,
        client_id: str,
        attempt_id: str,
        setup_intent_id: str | None = None,
        payment_method_id: str | None = None,
        save: bool = False,
    ) -> dict:
        return self._call(
            "payments",
            "confirm_attempt",
            workspace_id,
            client_id,
            attempt_id,
            setup_intent_id=setup_intent_id,
            payment_method_id=payment_method_id,
            save=save,
        )

    def get_attempt(self, workspace_id: str, attempt_id: str, client_id: str | None = None) -> dict:
        return self._call("payments", "get_attempt", workspace_id, attempt_id, client_id=client_id)

    def list_cards(self, workspace_id: str, client_id: str) -> list[dict]:
        return self._call("payments", "list_cards", workspace_id, client_id)

    def list_disputes(self, workspace_id: str) -> list[dict]:
        return self._call("payments", "list_disputes", workspace_id)

    def list_mandates(self, workspace_id: str, client_id: str) -> list[dict]:
        return self._call("payments", "list_mandates", workspace_id, client_id)

    def list_refunds(self, workspace_id: str, payment_id: str) -> list[dict]:
        return self._call("payments", "list_refunds", workspace_id, payment_id)

    def receive_stripe_event(self, event: dict) -> bool:
        return self._call("payments", "receive_stripe_event", event)

    def refresh_attempt(self, workspace_id: str, client_id: str, attempt_id: str) -> dict:
        return self._call("payments", "refresh_attempt", workspace_id, client_id, attempt_id)

    def refund_payment(
        self, workspace_id: str, payment_id: str, amount=None, reason: str = "", request_key: str = ""
    ) -> dict:
        return self._call(
            "payments",
            "refund_payment",
            workspace_id,
            payment_id,
            amount=amount,
            reason=reason,
            request_key=request_key,
        )

    def remove_card(
        self, workspace_id: str, client_id: str, payment_method_id: str, idempotency_key: str | None = None
    ) -> list[dict]:
        return self._call(
            "payments", "remove_card", workspace_id, client_id, payment_method_id, idempotency_key=idempotency_key
        )

    def save_card(
        self, workspace_id: str, client_id: str, setup_intent_id: str, idempotency_key: str | None = None
    ) -> dict:
        return self._call(
            "payments", "save_card", workspace_id, client_id, setup_intent_id, idempotency_key=idempotency_key
        )

    def set_default_card(
        self, workspace_id: str, client_id: str, payment_method_id: str, idempotency_key: str | None = None
    ) -> list[dict]:
        return self._call(
            "payments", "set_default_card", workspace_id, client_id, payment_method_id, idempotency_key=idempotency_key
        )

    def start_payment(self, workspace_id: str, client_id: str, request: dict, request_key: str) -> dict:
        return self._call("payments", "start_payment", workspace_id, client_id, request, request_key)
