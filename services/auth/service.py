"""Auth service entrypoints: translate RPC calls and events into handler calls, nothing more."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

from chassis import credentials, settings
from chassis.errors import EXPECTED
from chassis.nameko_ext import Database, ServiceBase, consumes
from chassis.rpc import TimedRpcProxy
from chassis.scope import CALLER, SYSTEM_WIDE, runs_in
from services.auth import domain, handlers


def policy_from_env() -> domain.Policy:
    return domain.Policy(
        link_ttl=timedelta(minutes=settings.env_int("AUTH_LINK_TTL_MINUTES", 24 * 60)),
        session_idle=timedelta(minutes=settings.env_int("AUTH_SESSION_IDLE_MINUTES", 30)),
        session_absolute=timedelta(minutes=settings.env_int("AUTH_SESSION_ABSOLUTE_MINUTES", 12 * 60)),
        links_per_email=settings.env_int("AUTH_LINKS_PER_EMAIL", 5),
        links_per_ip=settings.env_int("AUTH_LINKS_PER_IP", 20),
        verify_failures_per_ip=settings.env_int("AUTH_VERIFY_FAILURES_PER_IP", 30),
        rate_window=timedelta(minutes=settings.env_int("AUTH_RATE_WINDOW_MINUTES", 15)),
    )


class SigningKeys(DependencyProvider):
    """The keys session credentials are signed with (SESSION_KEYS), read once as the service starts."""

    def setup(self):
        self.keys = credentials.Keys.from_env()

    def get_dependency(self, worker_ctx) -> credentials.Keys:
        return self.keys


class AuthService(ServiceBase):
    name = "auth"
    db = Database("auth", Path(__file__).parent / "migrations")
    documents = TimedRpcProxy("documents")
    policy = policy_from_env()
    keys = SigningKeys()

    @runs_in(SYSTEM_WIDE)  # sign-in: the contact is looked up by email in every workspace
    @rpc(expected_exceptions=EXPECTED)
    def request_link(self, email: str, client_ip: str, portal_url: str) -> dict:
        with self.db.uow() as uow:
            links = handlers.request_links(uow, email, client_ip, self.clock(), self.policy)
        for link in links:
            # Queued on documents' durable RPC queue; we don't wait, so the answer takes the same
            # time whether or not the address exists. Documents acts for the contact's client only.
            with self.scope.workspace(link["workspace_id"], link["client_id"]):
                self.documents.send_magic_link.call_async(
                    to=link["email"],
                    name=link["name"],
                    workspace_id=link["workspace_id"],
                    client_id=link["client_id"],
                    url=f"{portal_url.rstrip('/')}/login/verify?token={link['token']}",
                    expires_at=link["expires_at"],
                    locale=link["locale"],
                    idempotency_key=f"magic-link:{domain.hash_secret(link['token'])}",
                )
        return {"accepted": True}

    @runs_in(SYSTEM_WIDE)  # a sign-in link's token, before anyone is known
    @rpc(expected_exceptions=EXPECTED)
    def link_state(self, token: str, client_ip: str | None = None) -> str:
        with self.db.uow() as uow:
            return handlers.link_state(uow, token, self.clock(), client_ip, self.policy)

    @runs_in(SYSTEM_WIDE)
    @rpc(expected_exceptions=EXPECTED)
    def consume_link(self, token: str, previous_session_id: str | None = None, client_ip: str | None = None) -> dict:
        with self.db.uow() as uow:
            return handlers.consume_link(
                uow, token, previous_session_id, self.clock(), client_ip, self.policy, self.keys
            )

    @runs_in(CALLER)  # the gateway read the session's credential: the call acts for its client
    @rpc
    def end_session(self, session_id: str, everywhere: bool = False) -> int:
        with self.db.uow() as uow:
            return handlers.end_session(uow, self.clock(), session_id, everywhere, self.policy)

    @runs_in(CALLER)
    @rpc
    def check_session(self, session_id: str) -> str:
        with self.db.uow() as uow:
            return handlers.check_session(uow, self.clock(), session_id)

    @runs_in(SYSTEM_WIDE)  # a gateway's list of what to refuse, in every workspace
    @rpc
    def revocations(self) -> dict:
        with self.db.uow() as uow:
            return handlers.revocations(uow, self.clock(), self.policy)

    @runs_in(CALLER)
    @rpc
    def sessions_seen(self, seen: dict) -> int:
        with self.db.uow() as uow:
            return handlers.sessions_seen(uow, self.clock(), seen)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def issue_document_link(self, workspace_id: str, client_id: str, kind: str, document_id: str) -> dict:
        ttl = timedelta(days=settings.env_int("AUTH_DOCUMENT_LINK_TTL_DAYS", 60))
        with self.db.uow() as uow:
            return handlers.issue_document_link(uow, self.clock(), workspace_id, client_id, kind, document_id, ttl)

    @runs_in(SYSTEM_WIDE)  # a document link's token, before anyone is known
    @rpc(expected_exceptions=EXPECTED)
    def resolve_document_link(self, token: str) -> dict:
        with self.db.uow() as uow:
            return handlers.resolve_document_link(uow, self.clock(), token)

    @runs_in(CALLER)
    @rpc
    def revoke_document_links(self, workspace_id: str, document_id: str) -> int:
        with self.db.uow() as uow:
            return handlers.revoke_document_links(uow, self.clock(), workspace_id, document_id)

    @consumes("billing", "invoice.voided")
    def on_invoice_voided(self, uow, now, event):
        """A void invoice's email links stop working."""
        handlers.revoke_document_links(uow, now, event["workspace_id"], event["data"]["id"])

    @consumes("billing", "contact.created")
    def on_contact_created(self, uow, now, event):
        handlers.apply_contact(uow, event["data"], now, self.policy)

    @consumes("billing", "contact.updated")
    def on_contact_updated(self, uow, now, event):
        handlers.apply_contact(uow, event["data"], now, self.policy)
