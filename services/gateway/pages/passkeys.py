"""Passkeys in the portal: sign in with one (no email), add, name and remove them from the profile,
and confirm presence before money moves (step-up). The browser's WebAuthn calls run in
static/passkeys.js; auth owns the credentials and challenges (services/auth/passkeys.py).

Step-up: when the workspace asks for it, payments refuses a payment or a card change unless the
session proved presence in the last 10 minutes. The gateway then sends the contact to `/step-up`,
where a passkey (or a new sign-in link) proves it; the time goes into the session credential.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import falcon

from chassis.errors import Invalid, RateLimited, Unauthorized
from services.gateway.forms import field
from services.gateway.pages.base import Base, Portal
from services.gateway.sessions import previous_session_id, safe_next, take_return
from services.gateway.usecases import PASSKEY_REFUSALS as REFUSALS


def json_body(req) -> dict:
    body = req.get_media(default_when_empty={}) if (req.content_type or "").startswith("application/json") else None
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(title="Send a JSON object", description="This address takes a JSON object.")
    return body


def credential_of(body: dict) -> dict:
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise Invalid("Send the passkey's answer as `credential`.", credential="required")
    return credential


def refused(exc: Unauthorized) -> falcon.HTTPError:
    return falcon.HTTPUnauthorized(
        title="Passkey not accepted", description=REFUSALS.get(exc.detail, REFUSALS["passkey"])
    )


class PasskeySignIn(Base):
    """`POST /login/passkey/options`, then `POST /login/passkey` with the browser's answer."""

    public = True

    def on_post_options(self, req, resp):
        resp.media = self.auth(req).passkey_sign_in_options(self.config.portal_url, self.client_ip(req))

    def on_post(self, req, resp):
        body = json_body(req)
        previous = previous_session_id(req, self.config.cookie_name, req.context.sessions.guard.keys)
        try:
            session = self.auth(req).passkey_sign_in(
                credential_of(body),
                self.config.portal_url,
                previous,
                self.client_ip(req),
                (req.user_agent or "")[:500] or None,
            )
        except Unauthorized as exc:
            raise refused(exc) from None
        self.set_session_cookie(resp, session["credential"])
        resp.media = {"next": take_return(req, resp)}


class PasskeysPage(Portal):
    """The contact's passkeys: add one (the browser creates it), rename, remove."""

    NOTICES = {
        "added": "Your passkey is saved. Next time, choose “Sign in with a passkey”.",
        "renamed": "The passkey's name is saved.",
        "removed": "The passkey is removed. It no longer signs you in.",
    }

    def _show(self, req, resp, session, status: int = 200, error: str | None = None):
        self.page(
            req,
            resp,
            "passkeys.html",
            session,
            status=status,
            passkeys=self.auth(req).list_passkeys(session["contact_id"]),
            notice=self.NOTICES.get(req.get_param("notice") or ""),
            error=error,
        )

    def on_get(self, req, resp):
        self._show(req, resp, self.session(req, resp))

    def on_post_options(self, req, resp):
        session = self.session(req, resp)
        business = self.brand(session["workspace_id"])["name"]
        resp.media = self.auth(req).passkey_registration_options(
            session["contact_id"], self.config.portal_url, business
        )

    def on_post(self, req, resp):
        session = self.session(req, resp)
        body = json_body(req)
        name = body.get("name")
        try:
            passkey = self.auth(req).register_passkey(
                session["contact_id"], credential_of(body), name, self.config.portal_url
            )
        except Unauthorized as exc:
            raise refused(exc) from None
        resp.status = 201
        resp.media = {**passkey, "next": "/profile/passkeys?notice=added"}

    def on_post_rename(self, req, resp, passkey_id: str):
        session = self.session(req, resp)
        name = field(self.form(req), "name", 1000, label="The passkey's name")
        try:
            self.auth(req).rename_passkey(session["contact_id"], passkey_id, name)
        except Invalid as exc:
            return self._show(req, resp, session, status=422, error=exc.detail)
        raise falcon.HTTPSeeOther("/profile/passkeys?notice=renamed")

    def on_post_remove(self, req, resp, passkey_id: str):
        session = self.session(req, resp)
        self.auth(req).remove_passkey(session["contact_id"], passkey_id)
        raise falcon.HTTPSeeOther("/profile/passkeys?notice=removed")


class StepUp(Portal):
    """Confirm it is you: a passkey now, or a new sign-in link by email."""

    def on_get(self, req, resp):
        session = self.session(req, resp)
        self.page(
            req,
            resp,
            "step_up.html",
            session,
            next=safe_next(req.get_param("next")),
            has_passkey=bool(self.auth(req).list_passkeys(session["contact_id"])),
        )

    def on_post_options(self, req, resp):
        session = self.session(req, resp)
        resp.media = self.auth(req).passkey_step_up_options(
            session["contact_id"], session["session_id"], self.config.portal_url
        )

    def on_post(self, req, resp):
        session = self.session(req, resp)
        body = json_body(req)
        try:
            proved = self.auth(req).passkey_step_up(
                session["contact_id"], session["session_id"], credential_of(body), self.config.portal_url
            )
        except Unauthorized as exc:
            raise refused(exc) from None
        # the gateway holds the signing keys: the session's credential now says when presence was proved
        req.context.sessions.renew(req, resp, proved_at=datetime.fromisoformat(proved["proved_at"]))
        next_path = body.get("next") if isinstance(body.get("next"), str) else None
        resp.media = {"proved_at": proved["proved_at"], "next": safe_next(next_path)}

    def on_post_link(self, req, resp):
        """The recovery path: a sign-in link to the contact's own address; its session counts as proof."""
        session = self.session(req, resp)
        try:
            self.auth(req).request_link(session["email"], self.client_ip(req), self.config.portal_url)
        except RateLimited as exc:
            resp.set_header("Retry-After", "900")
            return self.render(
                resp, "error.html", status=429, title="Too many sign-in requests", detail=exc.detail, session=session
            )
        self.render(resp, "check_email.html", session=session)


def step_up_location(req, portal_url: str) -> str:
    """Where a refused payment sends the browser: the step-up page, then back to the page it came from
    (a form's own page, from the same-origin Referer)."""
    back = req.relative_uri if req.method == "GET" else None
    referer = req.get_header("Referer") or ""
    for origin in {portal_url.rstrip("/"), req.prefix.rstrip("/")}:
        if back is None and referer.startswith(origin + "/"):
            back = referer[len(origin) :]
    return "/step-up?" + urlencode({"next": safe_next(back)})


def add_passkey_routes(app: falcon.App, rpc, config) -> None:
    sign_in = PasskeySignIn(rpc, config)
    app.add_route("/login/passkey", sign_in)
    app.add_route("/login/passkey/options", sign_in, suffix="options")
    page = PasskeysPage(rpc, config)
    app.add_route("/profile/passkeys", page)
    app.add_route("/profile/passkeys/options", page, suffix="options")
    app.add_route("/profile/passkeys/{passkey_id}/rename", page, suffix="rename")
    app.add_route("/profile/passkeys/{passkey_id}/remove", page, suffix="remove")
    step_up = StepUp(rpc, config)
    app.add_route("/step-up", step_up)
    app.add_route("/step-up/options", step_up, suffix="options")
    app.add_route("/step-up/link", step_up, suffix="link")
