"""Auth service entrypoints: translate RPC calls and events into handler calls, nothing more."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import eventlet.semaphore
import eventlet.tpool
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

from chassis import credentials, nameko_patches, settings
from chassis.errors import EXPECTED
from chassis.nameko_ext import Database, ServiceBase, consumes
from chassis.rpc import TimedRpcProxy
from chassis.scope import CALLER, SYSTEM_WIDE, runs_in
from services.auth import domain, handlers, passkeys, password_handlers, passwords

# `nameko run` loads this module to start the service: nameko is patched before it builds the container.
nameko_patches.apply()


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


def password_policy_from_env() -> passwords.PasswordPolicy:
    return passwords.PasswordPolicy(
        failures_per_account=settings.env_int("AUTH_PASSWORD_FAILURES_PER_ACCOUNT", 10),
        failures_per_ip=settings.env_int("AUTH_PASSWORD_FAILURES_PER_IP", 50),
        reset_ttl=timedelta(minutes=settings.env_int("AUTH_PASSWORD_RESET_TTL_MINUTES", 60)),
    )


class PasswordHashing(DependencyProvider):
    """argon2id off the eventlet hub: each hash runs in eventlet's thread pool (argon2's C code releases
    the GIL), at most AUTH_HASH_CONCURRENCY at once, so a burst of sign-ins neither freezes the other
    RPCs and the AMQP heartbeats nor takes 19 MiB per waiting request."""

    def setup(self):
        self.slots = eventlet.semaphore.Semaphore(settings.env_int("AUTH_HASH_CONCURRENCY", 4))
        self.hasher = passwords.Hasher(run=self.off_the_loop)

    def off_the_loop(self, fn, *args):
        with self.slots:
            return eventlet.tpool.execute(fn, *args)

    def get_dependency(self, worker_ctx) -> passwords.Hasher:
        return self.hasher


class AuthService(ServiceBase):
    name = "auth"
    db = Database("auth", Path(__file__).parent / "migrations")
    documents = TimedRpcProxy("documents")
    policy = policy_from_env()
    keys = SigningKeys()
    password_policy = password_policy_from_env()
    hasher = PasswordHashing()

    @runs_in(SYSTEM_WIDE)  # sign-in: the contact is looked up by email in every workspace
    @rpc(expected_exceptions=EXPECTED)
    def request_link(self, email: str, client_ip: str, portal_url: str, user_agent: str | None = None) -> dict:
        links = self._tx(lambda uow, now: handlers.request_links(uow, email, client_ip, now, self.policy, user_agent))
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
                    # the device that asked, and a link that ends everything if it was not the contact
                    device={"browser": link["browser"], "os": link["os"], "ip": link["ip"]},
                    report_url=f"{portal_url.rstrip('/')}/not-me?token={link['report_token']}",
                )
        return {"accepted": True}

    @runs_in(SYSTEM_WIDE)  # a sign-in link's token, before anyone is known
    @rpc(expected_exceptions=EXPECTED)
    def link_state(self, token: str, client_ip: str | None = None) -> str:
        with self.db.uow() as uow:  # a read: the handler commits only a guessed token it counts
            return handlers.link_state(uow, token, self.clock(), client_ip, self.policy)

    @runs_in(SYSTEM_WIDE)
    @rpc(expected_exceptions=EXPECTED)
    def consume_link(
        self,
        token: str,
        previous_session_id: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        session = self._tx(
            lambda uow, now: handlers.consume_link(
                uow, token, previous_session_id, now, client_ip, self.policy, self.keys, user_agent
            )
        )
        notice = session.pop("new_device", None)
        if notice:  # a browser and OS this contact never signed in from: tell them (essential email)
            with self.scope.workspace(session["workspace_id"], session["client_id"]):
                self.documents.send_new_device_notice.call_async(
                    to=notice["email"],
                    name=notice["name"],
                    workspace_id=session["workspace_id"],
                    client_id=session["client_id"],
                    contact_id=session["contact_id"],
                    device={"browser": notice["browser"], "os": notice["os"], "ip": notice["ip"]},
                    signed_in_at=session["created_at"],
                    locale=notice["locale"],
                    idempotency_key=f"new-device:{session['workspace_id']}:{session['session_id']}",
                )
        return session

    @runs_in(CALLER)  # the gateway read the session's credential: the call acts for its client
    @rpc
    def end_session(self, session_id: str, everywhere: bool = False) -> int:
        return self._tx(handlers.end_session, session_id, everywhere, self.policy)

    @runs_in(CALLER)  # the gateway's signed-in contact: only its own sessions and links are listed
    @rpc
    def list_devices(self, contact_id: str, current_session_id: str | None = None) -> dict:
        with self.db.uow() as uow:
            return handlers.list_devices(uow, self.clock(), contact_id, current_session_id, self.policy)

    @runs_in(CALLER)
    @rpc
    def end_contact_session(self, contact_id: str, session_id: str) -> int:
        return self._tx(handlers.end_contact_session, contact_id, session_id, self.policy)

    @runs_in(CALLER)
    @rpc
    def end_other_sessions(self, contact_id: str, current_session_id: str) -> int:
        return self._tx(handlers.end_other_sessions, contact_id, current_session_id, self.policy)

    @runs_in(CALLER)
    @rpc
    def end_sign_in_link(self, contact_id: str, link_id: str) -> int:
        return self._tx(handlers.end_sign_in_link, contact_id, link_id)

    @runs_in(CALLER)
    @rpc
    def end_document_link(self, contact_id: str, link_id: str) -> int:
        return self._tx(handlers.end_document_link, contact_id, link_id)

    @runs_in(SYSTEM_WIDE)  # a "this wasn't me" token, before anyone is known
    @rpc
    def report_state(self, token: str) -> dict:
        with self.db.uow() as uow:
            return handlers.report_state(uow, self.clock(), token)

    @runs_in(SYSTEM_WIDE)  # the token names the contact, in whichever workspace
    @rpc(expected_exceptions=EXPECTED)
    def report_not_me(self, token: str) -> dict:
        return self._tx(handlers.report_not_me, token, self.policy)

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
        return self._tx(handlers.sessions_seen, seen)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def issue_document_link(
        self, workspace_id: str, client_id: str, kind: str, document_id: str, contact_id: str | None = None
    ) -> dict:
        ttl = timedelta(days=settings.env_int("AUTH_DOCUMENT_LINK_TTL_DAYS", 60))
        return self._tx(handlers.issue_document_link, workspace_id, client_id, kind, document_id, ttl, contact_id)

    @runs_in(SYSTEM_WIDE)  # a document link's token, before anyone is known
    @rpc(expected_exceptions=EXPECTED)
    def resolve_document_link(self, token: str) -> dict:
        with self.db.uow() as uow:
            return handlers.resolve_document_link(uow, self.clock(), token)

    @runs_in(CALLER)
    @rpc
    def revoke_document_links(self, workspace_id: str, document_id: str) -> int:
        return self._tx(handlers.revoke_document_links, workspace_id, document_id)

    # Passkeys (services/auth/passkeys.py). `portal_url` is the gateway's own address: the passkey's
    # relying party and the origin its answers must come from.
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def passkey_registration_options(self, contact_id: str, portal_url: str, business: str = "") -> dict:
        return self._tx(passkeys.registration_options, contact_id, portal_url, business)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def register_passkey(self, contact_id: str, credential: dict, name: str | None, portal_url: str) -> dict:
        return self._tx(passkeys.register, contact_id, credential, name, portal_url)

    @runs_in(SYSTEM_WIDE)  # passkey sign-in: nobody is known until the passkey answers
    @rpc(expected_exceptions=EXPECTED)
    def passkey_sign_in_options(self, portal_url: str, client_ip: str | None = None) -> dict:
        return self._tx(passkeys.sign_in_options, portal_url, client_ip, self.policy)

    @runs_in(SYSTEM_WIDE)
    @rpc(expected_exceptions=EXPECTED)
    def passkey_sign_in(
        self,
        credential: dict,
        portal_url: str,
        previous_session_id: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        session = self._tx(
            passkeys.sign_in, credential, portal_url, previous_session_id, client_ip, self.policy, self.keys, user_agent
        )
        session.pop("new_device", None)  # the passkey was registered from a signed-in device already
        return session

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def passkey_step_up_options(self, contact_id: str, session_id: str, portal_url: str) -> dict:
        return self._tx(passkeys.step_up_options, contact_id, session_id, portal_url)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def passkey_step_up(self, contact_id: str, session_id: str, credential: dict, portal_url: str) -> dict:
        return self._tx(passkeys.step_up, contact_id, session_id, credential, portal_url)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_passkeys(self, contact_id: str) -> list[dict]:
        with self.db.uow() as uow:
            return passkeys.list_passkeys(uow, self.clock(), contact_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def rename_passkey(self, contact_id: str, passkey_id: str, name: str) -> dict:
        return self._tx(passkeys.rename_passkey, contact_id, passkey_id, name)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def remove_passkey(self, contact_id: str, passkey_id: str) -> list[dict]:
        return self._tx(passkeys.remove_passkey, contact_id, passkey_id)

    @runs_in(SYSTEM_WIDE)  # whether any workspace allows passwords, before anyone is known
    @rpc
    def passwords_offered(self) -> bool:
        with self.db.uow() as uow:
            return password_handlers.passwords_offered(uow)

    @runs_in(SYSTEM_WIDE)  # sign-in: the contact is looked up by email in every workspace
    @rpc(expected_exceptions=EXPECTED)
    def sign_in_with_password(
        self,
        email: str,
        password: str,
        client_ip: str,
        previous_session_id: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        session = self._tx(
            lambda uow, now: password_handlers.sign_in(
                uow,
                email,
                password,
                client_ip,
                previous_session_id,
                now,
                self.policy,
                self.password_policy,
                self.hasher,
                self.keys,
                user_agent,
            )
        )
        return self._tell_of_new_device(session)

    def _tell_of_new_device(self, session: dict) -> dict:
        """A password opens sessions like a link does: a browser and OS the contact never signed in from
        gets the same new-device notice (an essential email)."""
        notice = session.pop("new_device", None)
        if notice:
            with self.scope.workspace(session["workspace_id"], session["client_id"]):
                self.documents.send_new_device_notice.call_async(
                    to=notice["email"],
                    name=notice["name"],
                    workspace_id=session["workspace_id"],
                    client_id=session["client_id"],
                    contact_id=session["contact_id"],
                    device={"browser": notice["browser"], "os": notice["os"], "ip": notice["ip"]},
                    signed_in_at=session["created_at"],
                    locale=notice["locale"],
                    idempotency_key=f"new-device:{session['workspace_id']}:{session['session_id']}",
                )
        return session

    @runs_in(SYSTEM_WIDE)  # "Forgot your password?": the contact is looked up by email in every workspace
    @rpc(expected_exceptions=EXPECTED)
    def request_password_reset(self, email: str, client_ip: str, portal_url: str) -> dict:
        links = self._tx(
            lambda uow, now: password_handlers.request_reset(
                uow, email, client_ip, now, self.policy, self.password_policy
            )
        )
        for link in links:  # queued, not awaited: the answer takes the same time for any address
            with self.scope.workspace(link["workspace_id"], link["client_id"]):
                self.documents.send_password_reset_link.call_async(
                    to=link["email"],
                    name=link["name"],
                    workspace_id=link["workspace_id"],
                    client_id=link["client_id"],
                    url=f"{portal_url.rstrip('/')}/password/reset?token={link['token']}",
                    expires_at=link["expires_at"],
                    locale=link["locale"],
                    idempotency_key=f"password-reset:{domain.hash_secret(link['token'])}",
                )
        return {"accepted": True}

    @runs_in(SYSTEM_WIDE)  # a reset link's token, before anyone is known
    @rpc(expected_exceptions=EXPECTED)
    def password_reset_state(self, token: str, client_ip: str | None = None) -> str:
        with self.db.uow() as uow:  # a read: the handler commits only a guessed token it counts
            return password_handlers.reset_state(uow, token, self.clock(), client_ip, self.policy)

    @runs_in(SYSTEM_WIDE)
    @rpc(expected_exceptions=EXPECTED)
    def reset_password(
        self,
        token: str,
        new_password: str,
        previous_session_id: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        session = self._tx(
            lambda uow, now: password_handlers.reset_password(
                uow,
                token,
                new_password,
                previous_session_id,
                client_ip,
                now,
                self.policy,
                self.hasher,
                self.keys,
                user_agent,
            )
        )
        return self._tell_of_new_device(session)

    @runs_in(CALLER)
    @rpc
    def password_status(self, contact_id: str) -> dict:
        with self.db.uow() as uow:
            return password_handlers.password_status(uow, contact_id)

    @runs_in(CALLER)  # the signed-in contact, from its session
    @rpc(expected_exceptions=EXPECTED)
    def set_password(self, session_id: str, contact_id: str, current_password: str | None, new_password: str) -> dict:
        return self._tx(
            password_handlers.set_password,
            session_id,
            contact_id,
            current_password,
            new_password,
            self.policy,
            self.password_policy,
            self.hasher,
        )

    @consumes("billing", "workspace.created")
    def on_workspace_created_passwords(self, uow, now, event):
        """Whether the workspace allows passwords (billing's setting `passwords_enabled`)."""
        password_handlers.apply_workspace(uow, event["data"], now)

    @consumes("billing", "workspace.updated")
    def on_workspace_updated_passwords(self, uow, now, event):
        password_handlers.apply_workspace(uow, event["data"], now)

    @consumes("billing", "invoice.voided")
    def on_invoice_voided(self, uow, now, event):
        """A void invoice's email links stop working."""
        handlers.revoke_document_links(uow, now, event["workspace_id"], event["data"]["id"])

    @consumes("billing", "contact.created")
    def on_contact_created(self, uow, now, event):
        handlers.apply_contact(uow, event["data"], now, self.policy)
        self._invite(uow, now, event["data"])

    @consumes("billing", "contact.updated")
    def on_contact_updated(self, uow, now, event):
        handlers.apply_contact(uow, event["data"], now, self.policy)
        self._invite(uow, now, event["data"])

    def _invite(self, uow, now, data: dict) -> None:
        """An owner invited this contact from the portal: its invitation is a sign-in link, by email."""
        if data.get("invited") is not True:
            return
        link = handlers.invitation_link(uow, data["id"], now, self.policy)
        if link is None:
            return
        portal_url = settings.env("PORTAL_URL", "http://localhost:8000").rstrip("/")
        with self.scope.workspace(link["workspace_id"], link["client_id"]):
            self.documents.send_magic_link.call_async(
                to=link["email"],
                name=link["name"],
                workspace_id=link["workspace_id"],
                client_id=link["client_id"],
                url=f"{portal_url}/login/verify?token={link['token']}",
                expires_at=link["expires_at"],
                locale=link["locale"],
                idempotency_key=f"magic-link:{domain.hash_secret(link['token'])}",
            )
