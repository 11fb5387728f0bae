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

    def consume_link(
        self,
        token: str,
        previous_session_id: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        return self._call(
            "auth",
            "consume_link",
            token,
            previous_session_id=previous_session_id,
            client_ip=client_ip,
            user_agent=user_agent,
        )

    def end_contact_session(self, contact_id: str, session_id: str) -> int:
        return self._call("auth", "end_contact_session", contact_id, session_id)

    def end_document_link(self, contact_id: str, link_id: str) -> int:
        return self._call("auth", "end_document_link", contact_id, link_id)

    def end_other_sessions(self, contact_id: str, current_session_id: str) -> int:
        return self._call("auth", "end_other_sessions", contact_id, current_session_id)

    def end_session(self, session_id: str, everywhere: bool = False) -> int:
        return self._call("auth", "end_session", session_id, everywhere=everywhere)

    def end_sign_in_link(self, contact_id: str, link_id: str) -> int:
        return self._call("auth", "end_sign_in_link", contact_id, link_id)

    def issue_document_link(
        self, workspace_id: str, client_id: str, kind: str, document_id: str, contact_id: str | None = None
    ) -> dict:
        return self._call(
            "auth", "issue_document_link", workspace_id, client_id, kind, document_id, contact_id=contact_id
        )

    def link_state(self, token: str, client_ip: str | None = None) -> str:
        return self._call("auth", "link_state", token, client_ip=client_ip)

    def list_devices(self, contact_id: str, current_session_id: str | None = None) -> dict:
        return self._call("auth", "list_devices", contact_id, current_session_id=current_session_id)

    def report_not_me(self, token: str) -> dict:
        return self._call("auth", "report_not_me", token)

    def report_state(self, token: str) -> dict:
        return self._call("auth", "report_state", token)

    def passkey_registration_options(self, contact_id: str, portal_url: str, business: str = "") -> dict:
        return self._call("auth", "passkey_registration_options", contact_id, portal_url, business=business)

    def passkey_sign_in(
        self,
        credential: dict,
        portal_url: str,
        previous_session_id: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        return self._call(
            "auth",
            "passkey_sign_in",
            credential,
            portal_url,
            previous_session_id=previous_session_id,
            client_ip=client_ip,
            user_agent=user_agent,
        )

    def passkey_sign_in_options(self, portal_url: str, client_ip: str | None = None) -> dict:
        return self._call("auth", "passkey_sign_in_options", portal_url, client_ip=client_ip)

    def passkey_step_up(self, contact_id: str, session_id: str, credential: dict, portal_url: str) -> dict:
        return self._call("auth", "passkey_step_up", contact_id, session_id, credential, portal_url)

    def passkey_step_up_options(self, contact_id: str, session_id: str, portal_url: str) -> dict:
        return self._call("auth", "passkey_step_up_options", contact_id, session_id, portal_url)

    def list_passkeys(self, contact_id: str) -> list[dict]:
        return self._call("auth", "list_passkeys", contact_id)

    def register_passkey(self, contact_id: str, credential: dict, name: str | None, portal_url: str) -> dict:
        return self._call("auth", "register_passkey", contact_id, credential, name, portal_url)

    def remove_passkey(self, contact_id: str, passkey_id: str) -> list[dict]:
        return self._call("auth", "remove_passkey", contact_id, passkey_id)

    def rename_passkey(self, contact_id: str, passkey_id: str, name: str) -> dict:
        return self._call("auth", "rename_passkey", contact_id, passkey_id, name)

    def request_link(self, email: str, client_ip: str, portal_url: str, user_agent: str | None = None) -> dict:
        return self._call("auth", "request_link", email, client_ip, portal_url, user_agent=user_agent)

    def resolve_document_link(self, token: str) -> dict:
        return self._call("auth", "resolve_document_link", token)

    def revocations(self) -> dict:
        return self._call("auth", "revocations")

    def revoke_document_links(self, workspace_id: str, document_id: str) -> int:
        return self._call("auth", "revoke_document_links", workspace_id, document_id)

    def sessions_seen(self, seen: dict) -> int:
        return self._call("auth", "sessions_seen", seen)

    # passwords, for workspaces that allow them
    def passwords_offered(self) -> bool:
        return self._call("auth", "passwords_offered")

    def sign_in_with_password(
        self,
        email: str,
        password: str,
        client_ip: str,
        previous_session_id: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        return self._call(
            "auth",
            "sign_in_with_password",
            email,
            password,
            client_ip,
            previous_session_id=previous_session_id,
            user_agent=user_agent,
        )

    def request_password_reset(self, email: str, client_ip: str, portal_url: str) -> dict:
        return self._call("auth", "request_password_reset", email, client_ip, portal_url)

    def password_reset_state(self, token: str, client_ip: str | None = None) -> str:
        return self._call("auth", "password_reset_state", token, client_ip=client_ip)

    def reset_password(
        self,
        token: str,
        new_password: str,
        previous_session_id: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        return self._call(
            "auth",
            "reset_password",
            token,
            new_password,
            previous_session_id=previous_session_id,
            client_ip=client_ip,
            user_agent=user_agent,
        )

    def password_status(self, contact_id: str) -> dict:
        return self._call("auth", "password_status", contact_id)

    def set_password(self, session_id: str, contact_id: str, current_password: str | None, new_password: str) -> dict:
        return self._call("auth", "set_password", session_id, contact_id, current_password, new_password)
