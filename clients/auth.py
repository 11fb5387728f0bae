"""Auth's RPCs, typed."""

from __future__ import annotations

from clients.base import ServiceClient


class AuthClient(ServiceClient):
    """auth"s RPCs, with their real signatures (tests/unit/test_clients.py keeps them equal to the
    service"s). `AuthClient(call)` where `call(service, method, *args, **kwargs)` makes the call: the
    gateway"s RpcPool.call, portalctl"s and the tests" proxies."""

    service = "auth"

    def check_session(self, session_id: str) -> str:
        return self._call("auth", "check_session", session_id)

    def consume_link(self, token: str, previous_session_id: str | None = None, client_ip: str | None = None) -> dict:
        return self._call("auth", "consume_link", token, previous_session_id=previous_session_id, client_ip=client_ip)

    def end_session(self, session_id: str, everywhere: bool = False) -> int:
        return self._call("auth", "end_session", session_id, everywhere=everywhere)

    def issue_document_link(self, workspace_id: str, client_id: str, kind: str, document_id: str) -> dict:
        return self._call("auth", "issue_document_link", workspace_id, client_id, kind, document_id)

    def link_state(self, token: str, client_ip: str | None = None) -> str:
        return self._call("auth", "link_state", token, client_ip=client_ip)

    def request_link(self, email: str, client_ip: str, portal_url: str) -> dict:
        return self._call("auth", "request_link", email, client_ip, portal_url)

    def resolve_document_link(self, token: str) -> dict:
        return self._call("auth", "resolve_document_link", token)

    def revocations(self) -> dict:
        return self._call("auth", "revocations")

    def revoke_document_links(self, workspace_id: str, document_id: str) -> int:
        return self._call("auth", "revoke_document_links", workspace_id, document_id)

    def sessions_seen(self, seen: dict) -> int:
        return self._call("auth", "sessions_seen", seen)
