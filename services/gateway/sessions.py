"""Signed-in clients, checked at the gateway without asking auth.

Every route needs a signed-in client unless its resource says it is public: `SessionMiddleware`
runs before every responder, so a new page cannot forget it. A resource opts out with
`public = True` (sign-in pages, token links, health, the admin API with its own keys, Stripe's
webhook) or, when it serves public and private methods on one path, with `public_for(req)`.

The session is the signed credential auth issued at sign-in (chassis/credentials.py), sent as the
cookie or, to the JSON API, as a bearer token. The gateway checks its signature, the idle and the
absolute limits with its own clock, and the revocation list auth and billing keep current
(services/gateway/revocations.py). While a client is active the gateway gives it a fresh credential
once a minute (a new cookie, or an `X-Session-Token` header for bearer clients), which slides the
idle limit, and tells auth when each session was last seen, in batches, off the request path.
Responders read the session from `req.context.session` and the scope the services' databases
enforce from `req.context.scope`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote, unquote

import falcon
from falcon.routing import StaticRoute

from chassis import credentials
from chassis.credentials import Refused
from chassis.scope import Scope
from services.gateway.revocations import RevocationList
from services.gateway.rpc import ServiceUnavailable

log = logging.getLogger(__name__)
API_PREFIX = "/api/"
REFRESHED_TOKEN_HEADER = "X-Session-Token"


def session_token(req, cookie_name: str) -> tuple[str | None, bool]:
    """(the credential, whether it came as the cookie): the portal's JSON API also takes a bearer token."""
    if req.path.startswith("/api/portal/"):
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip(), False
    values = req.get_cookie_values(cookie_name)
    return (values[0], True) if values else (None, False)


def is_public(resource, req) -> bool:
    """Whether a route may be used without signing in (see the module docstring)."""
    if isinstance(resource, StaticRoute):
        return True
    public_for = getattr(resource, "public_for", None)
    if public_for is not None:
        return bool(public_for(req))
    return getattr(resource, "public", False) is True


class SeenReports:
    """When sessions were last active, sent to auth in batches by one thread, per workspace (each batch
    acts for its workspace). Best effort: a lost batch only makes a sessions list a minute staler."""

    def __init__(self, rpc, interval: float = 30.0):
        self.rpc = rpc
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, str]] = {}
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def seen(self, session: credentials.Session) -> None:
        with self._lock:
            self._pending.setdefault(session.workspace_id, {})[session.session_id] = session.seen_at.isoformat()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="seen-reports", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for workspace_id, seen in pending.items():
            try:
                self.rpc.call("auth", "sessions_seen", seen, scope=Scope(workspace_id))
            except Exception as exc:  # noqa: BLE001 - best effort, see the class docstring
                log.warning("last-seen report not sent", extra={"error": repr(exc), "sessions": len(seen)})

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()


class SessionGuard:
    """Whether a credential is a live session of this portal, with no call to auth on the hot path."""

    def __init__(
        self,
        keys: credentials.Keys,
        limits: credentials.Limits,
        revocations: RevocationList,
        clock: Callable[[], datetime],
        rpc,
        workspaces: frozenset[str] | None = None,
    ):
        self.keys = keys
        self.limits = limits
        self.revocations = revocations
        self.clock = clock
        self.rpc = rpc
        self.workspaces = workspaces  # None: every workspace; else the ones this gateway serves

    def check(self, token: str, request_id: str | None = None) -> credentials.Session:
        """The session, or Refused(forged | workspace | idle | expired | revoked | no_access | unknown)."""
        session = self._checked_here(token)
        if not self.revocations.ready:  # starting, or the broker was lost: ask auth until the list is back
            answer = self.rpc.call(
                "auth",
                "check_session",
                session.session_id,
                request_id=request_id,
                scope=Scope(session.workspace_id, session.client_id),
            )
            if answer != "active":
                raise Refused(answer)
        return session

    def check_here(self, token: str) -> credentials.Session:
        """The session as far as this gateway knows without asking auth, for what only dresses an answer
        (the language of a refusal); Refused as `check`, and Refused("unknown") while the revocation
        list is not ready, when only auth could tell. Never a way in: that is `check`."""
        session = self._checked_here(token)
        if not self.revocations.ready:
            raise Refused("unknown")
        return session

    def _checked_here(self, token: str) -> credentials.Session:
        """The credential's session, checked against everything this gateway holds: its signature, the
        workspaces served here, the idle and absolute limits, and the revocation list."""
        session = credentials.read(token, self.keys)
        if self.workspaces is not None and session.workspace_id not in self.workspaces:
            raise Refused("workspace")
        state = session.state(self.clock(), self.limits)
        if state != "active":
            raise Refused(state)
        refused = self.revocations.refuses(session)
        if refused:
            raise Refused(refused)
        return session

    def refreshed(self, session: credentials.Session) -> credentials.Session | None:
        """The session seen now, when its credential is old enough to replace (once a minute at most)."""
        now = self.clock()
        if now - session.seen_at < self.limits.refresh_after:
            return None
        return session.seen(now)

    def issue(self, session: credentials.Session) -> str:
        return credentials.issue(session, self.keys)


class SessionMiddleware:
    def __init__(self, guard: SessionGuard, cookie_name: str, secure: bool, reports: SeenReports | None = None):
        self.guard = guard
        self.cookie_name = cookie_name
        self.secure = secure
        self.reports = reports

    def process_resource(self, req, resp, resource, params):
        req.context.sessions = self  # sign-in, sign-out and a new name need the keys and the revocation list
        if resource is None or is_public(resource, req):
            return
        token, from_cookie = session_token(req, self.cookie_name)
        try:
            if not token:
                raise Refused("missing")
            session = self.guard.check(token, req.context.get("request_id"))
        except Refused:
            if from_cookie:
                resp.unset_cookie(self.cookie_name, path="/")
            if req.path.startswith(API_PREFIX):
                raise falcon.HTTPUnauthorized(
                    title="Not signed in", description="Sign in with a magic link first."
                ) from None
            if req.method == "GET":  # a link followed signed out (an email's, say) leads back there after sign-in
                remember_return(resp, req.relative_uri, self.secure)
            raise falcon.HTTPSeeOther("/login?expired=1" if token else "/login") from None
        fresh = self.guard.refreshed(session)
        if fresh is not None:
            session, token = fresh, self.guard.issue(fresh)
            if from_cookie:
                set_session_cookie(resp, self.cookie_name, token, self.secure)
            else:
                resp.set_header(REFRESHED_TOKEN_HEADER, token)
            if self.reports is not None:
                self.reports.seen(session)
        self._keep(req, session, from_cookie)

    def keep_if_signed_in(self, req) -> None:
        """The request's session, if it carries a live one, for a page no route answers (Falcon calls
        no process_resource then): its 404 page shows a signed-in contact its header, in its language.
        Nothing is refused or refreshed; without a session (or with auth not answering) the page is
        the signed-out one."""
        token, from_cookie = session_token(req, self.cookie_name)
        if not token:
            return
        try:
            session = self.guard.check(token, req.context.get("request_id"))
        except (Refused, ServiceUnavailable):
            return
        self._keep(req, session, from_cookie)

    def credential_locale(self, req) -> str | None:
        """The locale of the live session the request's credential names, without asking auth and
        without keeping the session (SessionGuard.check_here): the language of an answer given before
        the session was read (a refusal at the door). None without one, or with one refused."""
        token, _ = session_token(req, self.cookie_name)
        if not token:
            return None
        try:
            return self.guard.check_here(token).locale
        except Refused:
            return None

    def renew(self, req, resp, **changes) -> None:
        """The contact changed what its credential says (its own name or language): a new credential
        from now on, for this session; its others say it from their next sign-in."""
        session = replace(req.context.credential, **changes)
        token = self.guard.issue(session)
        if req.context.from_cookie:
            set_session_cookie(resp, self.cookie_name, token, self.secure)
        else:
            resp.set_header(REFRESHED_TOKEN_HEADER, token)
        self._keep(req, session, req.context.from_cookie)

    def _keep(self, req, session: credentials.Session, from_cookie: bool) -> None:
        req.context.credential, req.context.from_cookie = session, from_cookie
        req.context.session = session.view(self.guard.limits)
        req.context.session_id = session.session_id
        req.context.scope = Scope(
            session.workspace_id,
            session.client_id,
            role=session.role,
            proved_at=session.proved_at.isoformat() if session.proved_at else None,
        )


def set_session_cookie(resp, cookie_name: str, token: str, secure: bool) -> None:
    resp.set_cookie(cookie_name, token, http_only=True, same_site="Lax", secure=secure, path="/")


# The page a visitor asked for before signing in, for an hour: sign-in by a link opened from an
# email in the same browser lands there instead of on the dashboard.
RETURN_COOKIE = "portal_return_to"
RETURN_SECONDS = 3600


def remember_return(resp, path: str, secure: bool) -> None:
    resp.set_cookie(
        RETURN_COOKIE,
        quote(path, safe=""),
        max_age=RETURN_SECONDS,
        http_only=True,
        same_site="Lax",
        secure=secure,
        path="/",
    )


def safe_next(value: str | None, default: str = "/dashboard") -> str:
    """Only a path on this portal: never another site (an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 500:
        return default
    return value


def take_return(req, resp) -> str:
    """Where a sign-in leads: the page remembered before it (once), else the dashboard."""
    remembered = req.cookies.get(RETURN_COOKIE)
    if remembered is None:
        return "/dashboard"
    resp.unset_cookie(RETURN_COOKIE, path="/")
    return safe_next(unquote(remembered))


def previous_session_id(req, cookie_name: str, keys: credentials.Keys) -> str | None:
    """The session a browser signs in over (it ends: a new session every sign-in), if its credential
    is genuine; anything else is ignored."""
    token, _ = session_token(req, cookie_name)
    if not token:
        return None
    try:
        return credentials.read(token, keys).session_id
    except Refused:
        return None
