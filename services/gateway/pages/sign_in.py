"""Signing in with an emailed link, signing out, and (in development) the mail the system sent."""

from __future__ import annotations

from urllib.parse import urlsplit

import falcon
from email_validator import EmailNotValidError, validate_email

from chassis.errors import Invalid, RateLimited, Unauthorized
from services.gateway.forms import field
from services.gateway.pages.base import Base
from services.gateway.sessions import previous_session_id, take_return

LINK_PROBLEMS = {
    "used": ("This link has already been used", "Each sign-in link works once. Ask for a new one below."),
    "expired": ("This link has expired", "Sign-in links work for a limited time. Ask for a new one below."),
    "unknown": ("This link is not valid", "The link may be incomplete. Ask for a new one below."),
    "no_access": ("Portal access is turned off", "Contact the business to have portal access enabled."),
}


class Root(Base):
    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPSeeOther("/dashboard" if self.has_session_cookie(req) else "/login")


class Login(Base):
    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        notice = {"expired": "Your session has ended. Sign in again to continue.", "signed_out": "You are signed out."}
        message = next((text for key, text in notice.items() if req.get_param(key)), None)
        # the password form only where some workspace allows passwords (pages/passwords.py)
        self.render(
            resp,
            "login.html",
            notice=message,
            email="",
            passwords=self._passwords_offered(req),
            locale=self.visitor_locale(req),
        )

    def _passwords_offered(self, req: falcon.Request) -> bool:
        try:
            return bool(self.auth(req).passwords_offered())
        except Exception:  # noqa: BLE001 - without an answer the page still offers the emailed link
            return False

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        email = field(self.form(req), "email", 1000).strip()
        try:
            validate_email(email, check_deliverability=False)
        except EmailNotValidError:
            return self.render(
                resp,
                "login.html",
                status=400,
                email=email[:254],
                error="Enter a valid email address, like name@example.com.",
                locale=self.visitor_locale(req),
            )
        try:
            self.auth(req).request_link(email, self.client_ip(req), self.config.portal_url, user_agent=req.user_agent)
        except Invalid:
            return self.render(
                resp,
                "login.html",
                status=400,
                email=email[:254],
                error="Enter a valid email address, like name@example.com.",
                locale=self.visitor_locale(req),
            )
        except RateLimited as exc:
            resp.set_header("Retry-After", "900")
            return self.render(
                resp,
                "error.html",
                status=429,
                title="Too many sign-in requests",
                detail=exc.detail,
                retry=True,
                locale=self.visitor_locale(req),
            )
        # The same answer whether or not the address has portal access: addresses cannot be probed.
        self.render(resp, "check_email.html", locale=self.visitor_locale(req))


class Verify(Base):
    public = True

    # auth answers a link's state alone, not its contact's locale: these pages speak the browser's language
    def _problem(self, req: falcon.Request, resp: falcon.Response, state: str) -> None:
        title, detail = LINK_PROBLEMS.get(state, LINK_PROBLEMS["unknown"])
        status = 400 if state == "unknown" else 410
        self.render(
            resp, "error.html", status=status, title=title, detail=detail, retry=True, locale=self.visitor_locale(req)
        )

    def _limited(self, req: falcon.Request, resp: falcon.Response, exc: RateLimited) -> None:
        resp.set_header("Retry-After", "900")
        title = "Too many sign-in attempts"
        self.render(
            resp, "error.html", status=429, title=title, detail=exc.detail, retry=True, locale=self.visitor_locale(req)
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Consumes nothing: mail scanners prefetch links. The button POSTs the token.
        token = req.get_param("token") or ""
        try:  # auth counts tokens it never issued against the address (guessing is rate-limited)
            state = self.auth(req).link_state(token, self.client_ip(req)) if token else "unknown"
        except RateLimited as exc:
            return self._limited(req, resp, exc)
        if state != "valid":
            return self._problem(req, resp, state)
        self.render(resp, "verify.html", token=token, locale=self.visitor_locale(req))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = field(self.form(req), "token", 200)
        previous = previous_session_id(req, self.config.cookie_name, req.context.sessions.guard.keys)
        try:  # a new session every time: the one this browser had (fixation) ends, never kept
            session = self.auth(req).consume_link(token, previous, self.client_ip(req), user_agent=req.user_agent)
        except Unauthorized as exc:
            return self._problem(req, resp, exc.detail)
        except RateLimited as exc:
            return self._limited(req, resp, exc)
        self.set_session_cookie(resp, session["credential"])
        raise falcon.HTTPSeeOther(take_return(req, resp))


class Logout(Base):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # "everywhere" (from the profile page) ends the contact's sessions on all devices
        self.end_session(req, everywhere=self.form(req).get("everywhere") == "1")
        self.clear_session_cookie(resp)
        raise falcon.HTTPSeeOther("/login?signed_out=1")


class DevMail(Base):
    """Development only: the mail the system sent, so a newcomer can sign in without a mail server."""

    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        emails = self.documents(req).recent_emails(50)
        for email in emails:  # each link named by where it leads: a sign-in email's two look alike otherwise
            email["links"] = [{"url": url, "path": urlsplit(url).path} for url in email["links"]]
        self.render(resp, "dev_mail.html", emails=emails)
