"""Password pages, for workspaces that allow passwords: signing in with one, "Forgot your password?" and
its emailed link, and setting or changing one from the profile. Auth decides everything; these pages only
ask it and explain its refusals. Nothing they say tells whether an email has an account."""

from __future__ import annotations

import falcon
from email_validator import EmailNotValidError, validate_email

from chassis.errors import Conflict, Invalid, RateLimited, Unauthorized
from services.gateway.forms import field
from services.gateway.pages.base import Base, Portal
from services.gateway.sessions import previous_session_id, take_return
from services.gateway.usecases import PASSWORD_REFUSALS, RESET_LINK_PROBLEMS

PASSWORD_LIMIT = 512  # longer than any password auth accepts (128): auth explains the limit
MISMATCH = "The two passwords are not the same. Type the new password twice."


def _valid_email(email: str) -> bool:
    try:
        validate_email(email, check_deliverability=False)
        return True
    except EmailNotValidError:
        return False


class PasswordSignIn(Base):
    public = True

    def _again(self, req, resp, status: int, email: str, error: str):
        self.render(
            resp,
            "login.html",
            status=status,
            email=email[:254],
            passwords=True,
            password_error=error,
            locale=self.visitor_locale(req),
        )

    def on_post(self, req, resp):
        form = self.form(req)
        email = field(form, "email", 1000).strip()
        password = field(form, "password", PASSWORD_LIMIT)
        if not _valid_email(email):
            return self._again(req, resp, 400, email, "Enter a valid email address, like name@example.com.")
        if not password:
            return self._again(req, resp, 400, email, "Enter your password.")
        previous = previous_session_id(req, self.config.cookie_name, req.context.sessions.guard.keys)
        try:
            session = self.auth(req).sign_in_with_password(
                email, password, self.client_ip(req), previous, req.user_agent
            )
        except Invalid:
            return self._again(req, resp, 400, email, "Enter a valid email address, like name@example.com.")
        except Unauthorized as exc:
            return self._again(
                req, resp, 401, email, PASSWORD_REFUSALS.get(exc.detail, PASSWORD_REFUSALS["wrong_password"])
            )
        except RateLimited as exc:
            resp.set_header("Retry-After", "900")
            return self.render(
                resp,
                "error.html",
                status=429,
                title="Too many sign-in attempts",
                detail=exc.detail,
                retry=True,
                locale=self.visitor_locale(req),
            )
        self.set_session_cookie(resp, session["credential"])
        raise falcon.HTTPSeeOther(take_return(req, resp))


class PasswordForgot(Base):
    public = True

    def on_get(self, req, resp):
        self.render(resp, "password_forgot.html", email=req.get_param("email") or "", locale=self.visitor_locale(req))

    def on_post(self, req, resp):
        email = field(self.form(req), "email", 1000).strip()

        def refused():
            return self.render(
                resp,
                "password_forgot.html",
                status=400,
                email=email[:254],
                error="Enter a valid email address, like name@example.com.",
                locale=self.visitor_locale(req),
            )

        if not _valid_email(email):
            return refused()
        try:
            self.auth(req).request_password_reset(email, self.client_ip(req), self.config.portal_url)
        except Invalid:
            return refused()
        except RateLimited as exc:
            resp.set_header("Retry-After", "900")
            return self.render(
                resp,
                "error.html",
                status=429,
                title="Too many requests",
                detail=exc.detail,
                retry=True,
                locale=self.visitor_locale(req),
            )
        # the same answer whether or not the address has an account that may use a password
        self.render(resp, "password_forgot.html", sent=True, email="", locale=self.visitor_locale(req))


class PasswordReset(Base):
    public = True

    def _problem(self, req, resp, state: str):
        title, detail = RESET_LINK_PROBLEMS.get(state, RESET_LINK_PROBLEMS["unknown"])
        status = 400 if state == "unknown" else 410
        self.render(resp, "error.html", status=status, title=title, detail=detail, locale=self.visitor_locale(req))

    def _limited(self, req, resp, exc: RateLimited):
        resp.set_header("Retry-After", "900")
        title = "Too many sign-in attempts"
        self.render(
            resp, "error.html", status=429, title=title, detail=exc.detail, retry=True, locale=self.visitor_locale(req)
        )

    def on_get(self, req, resp):
        # Consumes nothing: mail scanners open links. The form POSTs the token with the new password.
        token = req.get_param("token") or ""
        try:
            state = self.auth(req).password_reset_state(token, self.client_ip(req)) if token else "unknown"
        except RateLimited as exc:
            return self._limited(req, resp, exc)
        if state != "valid":
            return self._problem(req, resp, state)
        self.render(resp, "password_reset.html", token=token, locale=self.visitor_locale(req))

    def on_post(self, req, resp):
        form = self.form(req)
        token = field(form, "token", 200)
        password, confirm = field(form, "password", PASSWORD_LIMIT), field(form, "confirm", PASSWORD_LIMIT)
        if password != confirm:
            return self.render(
                resp, "password_reset.html", status=400, token=token, error=MISMATCH, locale=self.visitor_locale(req)
            )
        previous = previous_session_id(req, self.config.cookie_name, req.context.sessions.guard.keys)
        try:
            session = self.auth(req).reset_password(token, password, previous, self.client_ip(req), req.user_agent)
        except Invalid as exc:  # the link stays unused: choose another password
            return self.render(
                resp, "password_reset.html", status=400, token=token, error=exc.detail, locale=self.visitor_locale(req)
            )
        except Unauthorized as exc:
            return self._problem(req, resp, exc.detail)
        except RateLimited as exc:
            return self._limited(req, resp, exc)
        self.set_session_cookie(resp, session["credential"])
        raise falcon.HTTPSeeOther("/profile/password?saved=reset")


class ProfilePassword(Portal):
    def _show(self, req, resp, session: dict, status: int = 200, error: str | None = None):
        self.page(
            req,
            resp,
            "profile_password.html",
            session,
            status=status,
            password=self.auth(req).password_status(session["contact_id"]),
            saved=req.get_param("saved"),
            error=error,
        )

    def on_get(self, req, resp):
        self._show(req, resp, self.session(req, resp))

    def on_post(self, req, resp):
        session = self.session(req, resp)
        form = self.form(req)
        current = field(form, "current_password", PASSWORD_LIMIT)
        password, confirm = field(form, "password", PASSWORD_LIMIT), field(form, "confirm", PASSWORD_LIMIT)
        if password != confirm:
            return self._show(req, resp, session, status=400, error=MISMATCH)
        try:
            self.auth(req).set_password(session["session_id"], session["contact_id"], current or None, password)
        except Invalid as exc:
            return self._show(req, resp, session, status=400, error=exc.detail)
        except Conflict as exc:
            return self._show(req, resp, session, status=409, error=exc.detail)
        except RateLimited as exc:
            resp.set_header("Retry-After", "900")
            return self._show(req, resp, session, status=429, error=exc.detail)
        raise falcon.HTTPSeeOther("/profile/password?saved=set")


def add_password_routes(app: falcon.App, rpc, config) -> None:
    app.add_route("/login/password", PasswordSignIn(rpc, config))
    app.add_route("/password/forgot", PasswordForgot(rpc, config))
    app.add_route("/password/reset", PasswordReset(rpc, config))
    app.add_route("/profile/password", ProfilePassword(rpc, config))
